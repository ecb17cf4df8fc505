"""One writer per output: a second process writing the same sample file or run folder
stops with one line naming the first one's PID and changes nothing; a writer killed
with -9 leaves a lock file that does not block the next run."""

import contextlib
import os
import subprocess
import sys

import pytest

from aows.cli import main
from aows.lock import OutputLocked, hold_lock, lock_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fcntl locks there")

# a writer holding the lock of argv[1] (a folder with argv[2] == "folder") until killed
HOLD = """
import sys, time
from aows.lock import hold_lock
with hold_lock(sys.argv[1], "test output", folder=sys.argv[2] == "folder"):
    print("held", flush=True)
    time.sleep(300)
"""
# exits 0 when it could take the lock of folder argv[1], 3 when another process holds it
PROBE = """
import sys
from aows.lock import OutputLocked, hold_lock
try:
    with hold_lock(sys.argv[1], "test output", folder=True):
        pass
except OutputLocked:
    sys.exit(3)
"""
TRAIN = ["train", "--space", "mobilenet_v1", "--resolution", "32", "--data", "fake",
         "--epochs", "1", "--batch-size", "16", "--no-progress", "--no-val", "--levels", "2",
         "--max-width", "0.3"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def holder(path, folder: bool):
    """A live process holding the lock of ``path``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path),
                             "folder" if folder else "file"], stdout=subprocess.PIPE,
                            text=True, env=ENV)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def kill9(proc) -> None:
    proc.kill()  # SIGKILL: no clean-up of its own runs
    assert proc.wait() == -9


def aows(*argv):
    """The `aows` command in its own process."""
    return subprocess.run([sys.executable, "-m", "aows.cli", *map(str, argv)],
                          capture_output=True, text=True, timeout=120, env=ENV)


def assert_refused(res, pid: int) -> None:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"PID {pid}" in lines[0] and "another process" in lines[0]


def probe(folder) -> int:
    return subprocess.run([sys.executable, "-c", PROBE, str(folder)], env=ENV).returncode


@pytest.mark.slow
def test_a_second_generate_on_a_sample_file_is_refused_until_the_first_dies(
        tmp_path, fast_protocol_args):
    out = tmp_path / "same.jsonl"
    gen = ["latency", "generate", "--space", "mobilenet_v1", "--resolution", "32",
           "--threads", "1", "-q", "-o", str(out), *fast_protocol_args]
    assert main([*gen, "--count", "2"]) == 0
    before = out.read_bytes()
    with holder(out, folder=False) as first:
        assert_refused(aows(*gen, "--count", "4"), first.pid)
        assert out.read_bytes() == before
        kill9(first)
        assert lock_path(out, folder=False).read_text().strip() == str(first.pid)  # stale
        assert main([*gen, "--count", "4"]) == 0  # ... and it does not block
    from aows.latency.store import read_samples
    assert len(read_samples(out)) == 4  # every network once
    assert out.read_bytes().startswith(before)  # appended to
    assert not lock_path(out, folder=False).exists()  # released: removed


@pytest.mark.slow
def test_a_second_training_into_a_run_folder_is_refused_until_the_first_dies(tmp_path):
    out = tmp_path / "run"
    with holder(out, folder=True) as first:
        assert_refused(aows(*TRAIN, "--out", out), first.pid)
        assert [p.name for p in out.iterdir()] == [".lock"]  # nothing written
        kill9(first)
        assert main([*TRAIN, "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "unaries.json",
                                               "metrics.jsonl"}


def test_every_writer_takes_the_lock_of_its_output(tmp_path, tiny_space, capsys):
    """The library's writers (what `latency generate/retest/lut`, `latency refine`,
    `aows run` and fine-tuning call) refuse a held output before writing anything."""
    from aows.latency.backends import Target
    from aows.latency.measure import collect, collect_interleaved
    from aows.latency.protocol import Protocol
    from aows.pipeline import run_pipeline
    from aows.refine import refine
    from aows.train.finetune import finetune
    proto = Protocol(warmup=1, rounds=1, runs=1, chunk=2)
    target = Target("torch-cpu", threads=1)
    files = tmp_path / "s.jsonl", tmp_path / "m.json"
    folders = tmp_path / "refine", tmp_path / "run", tmp_path / "finetune"
    with contextlib.ExitStack() as stack:
        pids = [stack.enter_context(holder(p, folder=False)).pid for p in files]
        pids += [stack.enter_context(holder(p, folder=True)).pid for p in folders]
        calls = [
            lambda: collect(tiny_space, target, proto, files[0], 2, "uniform", progress=False),
            lambda: collect_interleaved(tiny_space, target, proto,
                                        [(files[0], 2, "uniform", {})], 1, progress=False),
            lambda: refine(tiny_space, None, folders[0]),
            lambda: run_pipeline(None, folders[1]),
            lambda: finetune(None, None, None, None, folders[2], steps_per_epoch=1),
        ]
        for call, pid in zip(calls, [pids[0], pids[0], *pids[2:]]):
            with pytest.raises(OutputLocked, match=f"PID {pid}"):
                call()
        capsys.readouterr()
        assert main(["latency", "lut", "--space", "mobilenet_v1", "--resolution", "32",
                     "-o", str(files[1])]) == 2
        assert f"PID {pids[1]}" in capsys.readouterr().err
        assert not files[0].exists() and not files[1].exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [".s.jsonl.lock", ".m.json.lock", "refine", "run", "finetune"])


@pytest.mark.slow  # a training run
def test_the_lock_nests_in_a_process_and_is_left_as_found(tmp_path, monkeypatch):
    """A stage taking its run folder's lock inside `aows run`'s does not block itself;
    the lock is released on the way out, also by an exception or Ctrl-C."""
    from aows.spaces import mobilenet_v1
    from aows.train.config import TrainConfig
    from aows.train.data import fake_data
    from aows.train.loop import train_supernet
    run = tmp_path / "run"
    with hold_lock(run, "run folder", folder=True):
        with hold_lock(run, "run folder", folder=True):
            pass
        assert probe(run) == 3  # still held by the outer hold
        space = mobilenet_v1(resolution=32, levels=2, max_width=0.3, classes=4)
        data = fake_data(32, 16)
        train_supernet(space, data.train, TrainConfig(epochs=1, batch_size=16,
                                                      progress=False, device="cpu"),
                       run, steps_per_epoch=data.steps_per_epoch)  # same folder, nested
        assert (run / "checkpoint.pt").exists() and probe(run) == 3
    assert not (run / ".lock").exists() and probe(run) == 0
    for exc in (KeyboardInterrupt, ValueError):
        with pytest.raises(exc):
            with hold_lock(run, "run folder", folder=True):
                raise exc()
        assert probe(run) == 0
    import aows.lock
    monkeypatch.setattr(aows.lock, "fcntl", None)  # no fcntl (Windows): no lock, no error
    with hold_lock(run, "run folder", folder=True):
        assert probe(run) == 0
