"""What a new user hits on their own model (issue #21, item 6): one resolution and one
number of classes per command, the space read from the samples, the width defaults in
--help, a readable held list, predict's ends, and a fit that says when not to trust it."""

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aows.catalogue import get_space
from aows.cli import main
from aows.defaults import MODEL_WIDTH_RULE, SPACE_WIDTH_RULE
from aows.latency.fit import design_matrix, flops_vector
from aows.latency.model import LatencyModel

ZOO = str(Path(__file__).with_name("zoo.py"))
TINY = ["--space", "mobilenet_v1", "--resolution", "32", "--levels", "2", "--max-width", "0.3",
        "--classes", "4"]


def _rc(argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own checks
        return e.code


@pytest.fixture
def seen_by_training(monkeypatch):
    """`aows train` up to the training loop: what the loop would be given (the space, the
    first batch's shape, torch's thread count inside)."""
    import aows.train.loop
    seen = {}

    def fake_train(space, batches, cfg, out, latency=None, **kw):
        x, y = next(iter(batches(0)))
        seen.update(space=space, shape=tuple(x.shape), threads=torch.get_num_threads(),
                    latency=latency)

    monkeypatch.setattr(aows.train.loop, "train_supernet", fake_train)
    return seen


def _train(tmp_path, *extra):
    return _rc(["train", "--data", "fake", "--epochs", "1", "--batch-size", "8",
                "--no-progress", "--no-val", "--out", str(tmp_path / "run"), *extra])


def test_one_resolution_per_command_from_either_flag(tmp_path, seen_by_training, capsys):
    before = torch.get_num_threads()
    threads = 1 if before != 1 else 2
    assert _train(tmp_path, "--model", f"{ZOO}:res_cat", "--input-shape", "3,32,32",
                  "--threads", str(threads)) == 0
    # the data comes at the space's resolution, not upsampled to 224
    assert seen_by_training["shape"][1:] == (3, 32, 32)
    assert seen_by_training["space"].params["resolution"] == 32
    # --threads applies to the training and is restored after
    assert seen_by_training["threads"] == threads and torch.get_num_threads() == before
    for argv in (["train", "--data", "fake", "--epochs", "1", "--out", str(tmp_path / "r2")],
                 ["space", "show"], ["latency", "generate", "--count", "1", "-o", "x"]):
        capsys.readouterr()
        assert _rc([*argv, "--model", f"{ZOO}:res_cat", "--input-shape", "3,32,32",
                    "--resolution", "64"]) == 2
        err = capsys.readouterr().err
        assert "--resolution 64 and --input-shape 3,32,32 disagree" in err
        assert len(err.strip().splitlines()) == 1


def test_train_takes_the_data_classes_and_checks_the_latency_model(tmp_path, seen_by_training,
                                                                  capsys):
    model = ["--model", f"{ZOO}:res_cat", "--resolution", "32"]
    assert _train(tmp_path, *model, "--classes", "4") == 0  # fake data: 4 classes
    assert seen_by_training["space"].classes == 4
    assert _train(tmp_path, *model, "--classes", "10") == 2
    assert "--classes 10 but --data fake has 4 classes" in capsys.readouterr().err
    # a latency model of the model as it comes (its 10 classes, no --classes given)
    space = get_space(f"{ZOO}:res_cat", resolution=32)
    assert space.classes == 10
    x = flops_vector(space) * 1e-6 + 0.01
    LatencyModel.from_unknowns(space, x, "blackbox", {}).save(tmp_path / "lat.json")
    argv = [*model, "--latency", str(tmp_path / "lat.json"), "--method", "aows",
            "--budget", "1"]
    assert _train(tmp_path, *argv) == 2
    err = capsys.readouterr().err
    assert "with classes 10, but this training has classes 4 (those of --data fake)" in err
    assert f"aows latency generate --model {ZOO}:res_cat --classes 4 --resolution 32" in err
    # one of this training's space is taken
    space4 = get_space(f"{ZOO}:res_cat", resolution=32, classes=4)
    LatencyModel.from_unknowns(space4, flops_vector(space4) * 1e-6 + 0.01, "blackbox",
                               {}).save(tmp_path / "lat.json")
    assert _train(tmp_path, *argv) == 0
    assert seen_by_training["latency"] is not None


def test_latency_fit_reads_the_space_from_the_samples_header(tmp_path, capsys):
    samples, out = str(tmp_path / "s.jsonl"), str(tmp_path / "m.json")
    assert main(["latency", "generate", *TINY, "--count", "4", "--warmup", "1", "--rounds",
                 "1", "--runs", "1", "--chunk", "2", "--threads", "1", "-q",
                 "-o", samples]) == 0
    header = json.loads(Path(samples).read_text().splitlines()[0])
    assert main(["latency", "fit", samples, "-o", out]) == 0  # no space options
    assert json.loads(Path(out).read_text())["space"] == header["space"]
    capsys.readouterr()
    assert main(["latency", "fit", samples, "--resolution", "64", "--classes", "4",
                 "-o", out]) == 2
    err = capsys.readouterr().err
    assert "--resolution 64 (header: 32)" in err and "--classes 4" not in err
    assert main(["latency", "fit", samples, "--space", "resnet18", "-o", out]) == 2
    assert "--space resnet18 (header: mobilenet_v1)" in capsys.readouterr().err
    assert main(["latency", "fit", samples, *TINY, "-o", out]) == 0  # agreeing options


def _reference_samples(path, space, configs, ms):
    """A sample file in the reference layout ([[widths], ms] per line, no header)."""
    Path(path).write_text("".join(json.dumps([list(map(int, c)), float(m)]) + "\n"
                                  for c, m in zip(configs, ms)))


def test_latency_fit_warns_with_what_the_model_knows(tmp_path, capsys):
    space = get_space("mobilenet_v1", resolution=32, levels=2, max_width=0.3, classes=4)
    rng = np.random.default_rng(0)
    configs = [space.narrowest(), space.widest()] + [
        tuple(int(rng.choice(c)) for c in space.searchable_choices) for _ in range(150)]
    ms = design_matrix(space, configs) @ flops_vector(space) * 1e-6 + 0.2
    path, out = tmp_path / "good.jsonl", str(tmp_path / "m.json")
    _reference_samples(path, space, configs, ms)
    assert main(["latency", "fit", str(path), *TINY, "-o", out]) == 0
    assert "warning" not in capsys.readouterr().err  # a model of its timings: no warning
    # a few networks, the widest timed faster than the narrowest
    _reference_samples(path, space, configs[:4], [2.0, 0.5, 1.0, 1.2])
    assert main(["latency", "fit", str(path), *TINY, "-o", out]) == 0
    err = capsys.readouterr().err
    warning = next(line for line in err.splitlines() if line.startswith("warning"))
    assert "it misses the" in warning or "faster than" in warning
    assert f"--count 200 -o {path}" in warning and "aows latency generate" in warning
    assert "--cover" not in warning  # the default already


def test_every_model_command_states_both_width_defaults(capsys):
    from aows.extract import model_space
    from aows.spaces import mobilenet_v1
    space_rule = ", ".join(map(str, SPACE_WIDTH_RULE.values()))
    model_rule = ", ".join(map(str, MODEL_WIDTH_RULE.values()))
    for argv in (["space", "show"], ["latency", "generate"], ["train"], ["export"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert f"defaults {space_rule} for a space, {model_rule} for --model" in out
    # the numbers are those the spaces use
    for fn, rule in ((mobilenet_v1, SPACE_WIDTH_RULE), (model_space, MODEL_WIDTH_RULE)):
        sig = inspect.signature(fn).parameters
        assert {k: sig[k].default for k in rule} == rule


def test_space_show_counts_the_held_widths_by_reason(capsys):
    argv = ["space", "show", "--model", f"{ZOO}:cat_add", "--resolution", "32"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "held fixed: 5 widths" in out
    assert ("3 concatenated: a concatenation combined with other channels (or of held "
            "parts)") in out
    assert "concatenated at" not in out  # the details are under -v / --json
    assert main([*argv, "-v"]) == 0
    assert "a = 16: concatenated at cat at 'cat', whose channels are then combined" in \
        capsys.readouterr().out
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["held_summary"]
    assert {r["kind"]: r["count"] for r in summary} == {"concatenated": 3, "input": 1,
                                                         "output": 1}


@pytest.mark.parametrize("argv,command", [
    (["space", "show", "mobilenet_v1", "--resolutoin", "32"], "aows space show"),
    (["latency", "fit", "s.jsonl", "-o", "m.json", "--ridgee", "1"], "aows latency fit"),
    (["search", "--latency", "l.json", "--unaries", "u.json", "--budgte", "2"], "aows search"),
])
def test_a_mistyped_option_shows_the_usage_of_its_command(argv, command, capsys):
    assert _rc(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {command} ") and "unrecognized arguments: --" in err


def test_latency_predict_widest_and_narrowest(tmp_path, capsys):
    space = get_space("mobilenet_v1", resolution=32, levels=2, max_width=0.3, classes=4)
    LatencyModel.from_unknowns(space, flops_vector(space) * 1e-6 + 0.01, "blackbox",
                               {}).save(tmp_path / "lat.json")
    assert main(["latency", "predict", "--latency", str(tmp_path / "lat.json"), "--widest",
                 "--narrowest", "--json"]) == 0
    rows = {r["end"]: r for r in json.loads(capsys.readouterr().out)}
    assert tuple(rows["widest"]["config"]) == space.widest()
    assert tuple(rows["narrowest"]["config"]) == space.narrowest()
    assert rows["widest"]["predicted_latency_ms"] > rows["narrowest"]["predicted_latency_ms"]


@pytest.mark.slow
def test_training_commands_choose_an_openmp_wait_policy_before_torch_loads():
    """A command that trains sets the OpenMP wait policy before torch loads (PASSIVE on
    a busy machine, a short spin on a quiet one); a user's own setting and a process that
    already loaded torch are left as they are."""
    import os
    import subprocess
    import sys
    code = ("import os, sys, json; from aows.cli.args import openmp_for_training as f; "
            "got = f(load=float(sys.argv[1])); import torch; "
            "print(json.dumps([got, os.environ.get('OMP_WAIT_POLICY'), "
            "os.environ.get('GOMP_SPINCOUNT')]))")

    def run(load, **env):
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
        out = subprocess.run([sys.executable, "-c", code, str(load)], env={**clean, **env},
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)
    assert run(1.5) == [{"OMP_WAIT_POLICY": "PASSIVE"}, "PASSIVE", None]
    assert run(0.0) == [{"GOMP_SPINCOUNT": "10000"}, None, "10000"]
    assert run(1.5, OMP_WAIT_POLICY="ACTIVE") == [{}, "ACTIVE", None]
    from aows.cli.args import openmp_for_training
    env = {}
    assert openmp_for_training(load=2.0, env=env) == {} and env == {}  # torch is loaded
