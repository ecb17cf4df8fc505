"""Timing on another machine through ``--remote CMD``, with local stand-ins for the
transport: ``env`` (runs the runner on this machine through a real pipe) and small shell
wrappers that die, hang or answer something else, the way a dropped ssh connection, a
hung board or a login banner would."""

from __future__ import annotations

import json
import os
import stat
import sys

import numpy as np
import pytest

from aows.cli import main
from aows.latency.store import read_samples

pytest.importorskip("onnxruntime")

SPACE = ["--space", "mobilenet_v1", "--resolution", "32", "--levels", "3", "--max-width",
         "0.5", "--backend", "onnxruntime", "--threads", "1"]
PROTO = ["--warmup", "1", "--rounds", "2", "--runs", "1", "--chunk", "4"]
PY = ["--remote-python", sys.executable]  # the target's Python: one with onnxruntime


def generate(out, count, *extra, sampler=("--uniform",)):
    return main(["latency", "generate", *SPACE, *PROTO, *sampler, "--count", str(count),
                 "-o", str(out), "-q", *extra])


def wrapper(tmp_path, name, body):
    """A transport: a shell script run as ``CMD program args...``; ``$N`` counts its
    calls (0 on the first)."""
    path = tmp_path / name
    path.write_text("#!/bin/sh\n"
                    f'count="{tmp_path}/{name}.calls"\n'
                    'N=$(cat "$count" 2>/dev/null || echo 0); echo $((N + 1)) > "$count"\n'
                    + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.mark.slow
def test_remote_collection_agrees_with_local_and_fits(tmp_path, capsys):
    configs = tmp_path / "local.jsonl"
    assert generate(configs, 12, sampler=()) == 0
    remote = tmp_path / "remote.jsonl"
    assert generate(remote, 12, "--remote", "env", *PY, sampler=()) == 0
    loc, rem = read_samples(configs), read_samples(remote)
    assert loc.configs == rem.configs  # the same networks (same sampler and seed)
    target = rem.header["target"]
    assert target["remote"] and target["host"] and target["runtime"] == "onnxruntime"
    assert "env" not in json.dumps(target)  # the command is never recorded
    a = loc.normalised(loc.anchor_reference())
    b = rem.normalised(rem.anchor_reference())
    # same runtime, same machine: the same scale, and the widest network (the sampler's
    # first) clearly slower than the narrowest (its second) in both; the agreement within
    # the noise floor is measured in benchmarks/remote.py
    assert 0.5 < np.median(b / a) < 2.0
    assert a[0] > 1.3 * a[1] and b[0] > 1.3 * b[1]
    assert main(["latency", "fit", str(remote), "-o", str(tmp_path / "lat.json")]) == 0
    # mixing targets is refused: a local file and a remote one
    capsys.readouterr()
    assert main(["latency", "fit", str(configs), str(remote), "-o",
                 str(tmp_path / "mixed.json")]) == 2
    assert "fit one target at a time" in capsys.readouterr().err
    # more networks of the remote file need --remote again, never a local timing
    assert main(["latency", "retest", str(remote), "--count", "4", "-o",
                 str(tmp_path / "re.jsonl")]) == 2
    assert "--remote" in capsys.readouterr().err


@pytest.mark.slow
def test_a_dropped_connection_is_retried_and_a_hung_one_times_out(tmp_path, capsys):
    # dies half a second into its first call (mid-chunk), then works
    dies = wrapper(tmp_path, "dies", 'if [ "$N" = 0 ]; then (sleep 0.5; kill -9 $$) & fi\n'
                   'exec "$@"')
    whole = tmp_path / "whole.jsonl"
    assert generate(whole, 8) == 0
    out = tmp_path / "dies.jsonl"
    assert generate(out, 8, "--remote", dies, *PY) == 0
    assert "on a fresh connection" in capsys.readouterr().err
    assert read_samples(out).configs == read_samples(whole).configs
    # hangs on its first call: the chunk times out, then is retried
    hangs = wrapper(tmp_path, "hangs", 'if [ "$N" = 0 ]; then exec sleep 600; fi\nexec "$@"')
    out = tmp_path / "hangs.jsonl"
    assert generate(out, 8, "--remote", hangs, *PY, "--remote-timeout", "3") == 0
    assert "no answer within 3 s" in capsys.readouterr().err
    assert read_samples(out).configs == read_samples(whole).configs
    # a target lost for good after a first chunk: one clear error, that chunk kept, and a
    # rerun resumes to the uninterrupted result
    out = tmp_path / "lost.jsonl"
    assert generate(out, 4, "--remote", "env", *PY) == 0
    gone = wrapper(tmp_path, "gone", "exit 255")
    assert generate(out, 8, "--remote", gone, *PY, "--remote-retries", "1") == 2
    err = capsys.readouterr().err
    assert err.count("aows: error") == 1 and "gave up after 2 attempts" in err
    assert "run the same command again to resume" in err and len(read_samples(out)) == 4
    assert generate(out, 8, "--remote", "env", *PY) == 0
    assert read_samples(out).configs == read_samples(whole).configs


@pytest.mark.slow
def test_a_fleet_times_chunks_on_every_device_and_reports_their_offsets(tmp_path, capsys):
    out = tmp_path / "fleet.jsonl"
    assert generate(out, 16, "--remote", "env", "--remote", "env DEVICE=2", *PY) == 0
    s = read_samples(out)
    assert sorted(set(s.devices)) == [0, 1] and len(set(s.configs)) == 16
    assert len(s.header["target"]["fleet"]) == 2
    whole = tmp_path / "whole.jsonl"
    assert generate(whole, 16) == 0
    assert s.configs == read_samples(whole).configs  # one device or two: the same networks
    capsys.readouterr()
    assert main(["latency", "fit", str(out), "-o", str(tmp_path / "lat.json")]) == 0
    printed = capsys.readouterr().out
    assert "fleet of 2 devices" in printed and "device 2" in printed and "spread" in printed


def test_bad_targets_are_one_clear_error(tmp_path, capsys):
    banner = wrapper(tmp_path, "banner", 'echo "Welcome to the board"; exec "$@"')
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "onnxruntime.py").write_text("raise ImportError('not here')\n")
    cases = [
        (["--remote", banner, *PY], "not the aows runner's protocol"),
        (["--remote", f"env PYTHONPATH={fake}", *PY], "pip install onnxruntime there"),
        (["--remote", "env", "--remote-python", "/no/such/python"], "/no/such/python"),
        (["--remote", "/no/such/command"], "cannot run /no/such/command"),
    ]
    for extra, message in cases:
        out = tmp_path / "x.jsonl"
        assert generate(out, 4, *extra, "--remote-retries", "0") == 2, extra
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not out.exists() or len(read_samples(out)) == 0
    args = [a if a != "onnxruntime" else "torch-cpu" for a in SPACE]
    assert main(["latency", "generate", *args, *PROTO, "--count", "4", "-o",
                 str(tmp_path / "t.jsonl"), "--remote", "env", *PY]) == 2
    assert "torch is not needed on the target" in capsys.readouterr().err


@pytest.mark.slow
def test_no_runner_is_left_behind(tmp_path):
    """A library call that timed on a remote target stops its runners when it ends."""
    import subprocess

    def children():
        out = subprocess.run(["ps", "-o", "pid=,stat=,comm=", "--ppid", str(os.getpid())],
                             capture_output=True, text=True).stdout.split("\n")
        rows = [line.split() for line in out if line.strip()]
        return {int(r[0]) for r in rows if not r[1].startswith("Z") and r[2] != "ps"}
    before = children()
    assert generate(tmp_path / "s.jsonl", 4, "--remote", "env", *PY) == 0
    assert children() <= before


@pytest.mark.slow
def test_refine_and_measure_time_on_the_remote_target(tmp_path, capsys):
    """A latency model of a remote target is refined and checked there: `--remote`
    again; without it, one clear error (never a local timing)."""
    samples = tmp_path / "s.jsonl"
    assert generate(samples, 12, "--remote", "env", *PY, sampler=()) == 0
    lat = tmp_path / "lat.json"
    assert main(["latency", "fit", str(samples), "-o", str(lat)]) == 0
    refine = ["latency", "refine", str(samples), "--latency", str(lat), "--rounds", "1",
              "--n-budgets", "2", "-o", str(tmp_path / "ref"), "-q"]
    capsys.readouterr()
    assert main(refine) == 2 and "--remote" in capsys.readouterr().err
    assert main([*refine, "--remote", "env", *PY]) == 0
    refined = read_samples(tmp_path / "ref" / "refine.jsonl")
    assert refined.header["target"]["remote"] and len(refined) >= 2
    from aows.final import save_final
    from aows.latency.model import LatencyModel
    from aows.nn import build_network
    space = LatencyModel.load(lat).space
    save_final(tmp_path / "net", build_network(space, space.narrowest()), space,
               space.narrowest())
    measure = ["measure", str(tmp_path / "net"), "--latency", str(lat), "--repeats", "1",
               "--json"]
    capsys.readouterr()
    assert main(measure) == 2 and "--remote" in capsys.readouterr().err
    assert main([*measure, "--remote", "env", *PY]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["target"]["remote"] and res["networks"]["net"]["measured_latency_ms"] > 0


@pytest.mark.slow
def test_the_target_frees_the_networks_of_timed_chunks(tmp_path):
    """Networks dropped here are dropped on the target: after several chunks it holds the
    anchor and the last chunk's networks, not every network it was sent."""
    from aows.catalogue import get_space
    from aows.latency.backends import Target
    from aows.latency.measure import Timer
    from aows.latency.protocol import Protocol
    from aows.latency.remote import Remote, connected, devices
    space = get_space("mobilenet_v1", resolution=32, levels=3, max_width=0.5)
    target = Target("onnxruntime", threads=1,
                    remote=Remote.parse(["env"], python=sys.executable))
    rng = np.random.default_rng(0)
    with connected(target):
        timer = Timer(space, target, Protocol(warmup=0, rounds=1, runs=1, chunk=4))
        for _ in range(4):
            timer.time(space.uniform_sample(rng, 4), rng)
        assert devices(target)[0].held() <= 1 + 2 * 4  # anchor, last chunk, one in flight


@pytest.mark.slow
def test_through_a_remote_shell_as_ssh_runs_it(tmp_path):
    """ssh joins its arguments into one command line for the remote shell: the runner's
    command is quoted for it (a stand-in `ssh HOST CMD...` that runs `sh -c "CMD..."`)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    ssh = bin_ / "ssh"
    ssh.write_text('#!/bin/sh\nshift\nexec sh -c "$*"\n')
    ssh.chmod(0o755)
    assert generate(tmp_path / "s.jsonl", 4, "--remote", f"{ssh} board", *PY) == 0
    assert len(read_samples(tmp_path / "s.jsonl")) == 4


@pytest.mark.slow
def test_openvino_on_a_remote_target(tmp_path):
    pytest.importorskip("openvino")
    args = [a if a != "onnxruntime" else "openvino" for a in SPACE]
    out = tmp_path / "ov.jsonl"
    assert main(["latency", "generate", *args, *PROTO, "--count", "4", "-o", str(out), "-q",
                 "--remote", "env", *PY]) == 0
    target = read_samples(out).header["target"]
    assert target["runtime"] == "openvino" and target["precision"] == "f32"
    assert target["threads"] == 1 and len(read_samples(out)) == 4
