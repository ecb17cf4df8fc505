"""Issue #21, items 4 and 5: what used to end in a traceback (or hang, or mislead) is one
clear error line and exit code 2, driven as a user would through the CLI."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading

import pytest
import torch
import yaml

from aows.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SPACE = ["--space", "mobilenet_v1", "--resolution", "32", "--levels", "2", "--max-width",
         "0.3", "--classes", "4"]
PROTO = ["--warmup", "1", "--rounds", "1", "--runs", "1", "--chunk", "2"]
GENERATE = ["latency", "generate", *SPACE, *PROTO, "-q"]
TRAIN = ["train", "--space", "mobilenet_v1", "--resolution", "32", "--levels", "2",
         "--data", "fake", "--epochs", "1", "--batch-size", "16", "--no-progress",
         "--no-val"]
NARROWEST = "8,16,24,24,48,48,104,104,104,104,104,104,208,208"  # of TRAIN's space


def one_error(capsys, argv, *parts) -> str:
    """Run the CLI in-process: exit code 2, one error line naming ``parts``."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("aows: error:")]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def _can_drop_root() -> bool:
    if os.geteuid() != 0:
        return True
    return shutil.which("setpriv") is not None and subprocess.run(
        [*_UNPRIVILEGED, "true"], capture_output=True).returncode == 0


# root ignores file permissions; without these capabilities it obeys them like a user
_UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


_COMMANDS = """import json, sys
from aows.cli import main
for argv in json.loads(sys.argv[1]):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's errors
        code = e.code
    print(f"\\n--- exit {code}", file=sys.stderr, flush=True)
"""


def clis_as_user(argvs, cwd) -> list[tuple[int, str]]:
    """Each command line through the CLI, one after the other in one subprocess bound by
    file permissions even when run as root: (exit code, stderr) of each."""
    prefix = _UNPRIVILEGED if os.geteuid() == 0 else []
    proc = subprocess.run([*prefix, sys.executable, "-c", _COMMANDS, json.dumps(argvs)],
                          cwd=cwd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out, err = [], proc.stderr
    for _ in argvs:  # each command's stderr, then "--- exit CODE"
        this, _, err = err.partition("\n--- exit ")
        code, _, err = err.partition("\n")
        out.append((int(code), this))
    return out


needs_permissions = pytest.mark.skipif(
    sys.platform == "win32" or not _can_drop_root(),
    reason="running as root without setpriv: permissions are not enforced")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished one-epoch supernet run (unaries.json, checkpoint.pt)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert main([*TRAIN, "--max-width", "0.3", "--out", str(out)]) == 0
    return out


# ----------------------------------------------------------------- item 4: writes
def test_samples_written_where_they_cannot_be_are_one_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pathlib.Path("a_file").write_text("x")
    one_error(capsys, [*GENERATE, "--count", "2", "-o", "a_file/x.jsonl"], "a_file")
    assert pathlib.Path("a_file").read_text() == "x"
    if pathlib.Path("/proc/version").exists():  # EIO on write, a folder that takes no files
        one_error(capsys, [*GENERATE, "--count", "2", "-o", "/proc/version"], "/proc")


def test_search_plot_under_a_regular_file(tmp_path, capsys, run_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pathlib.Path("a_file").write_text("x")
    from aows.latency.fit import flops_vector
    from aows.latency.model import LatencyModel
    from aows.solve import load_unaries_space
    space = load_unaries_space(run_dir / "unaries.json")
    f = flops_vector(space)
    LatencyModel.from_unknowns(space, 0.05 + f / f.max(), "synthetic", {}).save("lat.json")
    one_error(capsys, ["search", "--latency", "lat.json", "--unaries",
                       str(run_dir / "unaries.json"), "--pareto", "--plot", "a_file/p.png"],
              "a_file")
    assert sorted(os.listdir()) == ["a_file", "lat.json"]


@pytest.mark.slow
@needs_permissions
def test_a_read_only_folder_and_an_unreadable_file_are_one_error_each(tmp_path, run_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    assert main([*GENERATE, "--count", "2", "-o", str(tmp_path / "s.jsonl")]) == 0
    assert main(["latency", "fit", str(tmp_path / "s.jsonl"), "-o",
                 str(tmp_path / "m.json")]) == 0
    ro.chmod(0o555)
    (tmp_path / "ro_s.jsonl").write_bytes((tmp_path / "s.jsonl").read_bytes())
    (tmp_path / "ro_s.jsonl").chmod(0o444)
    (tmp_path / "tiny.py").write_text(
        "import torch\n\ndef net(num_classes=4):\n    return torch.nn.Sequential("
        "torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), "
        "torch.nn.Flatten(), torch.nn.Linear(8, num_classes))\n")
    torch.save({}, tmp_path / "w.pt")
    (tmp_path / "w.pt").chmod(0)
    try:
        cases = (
                ([*GENERATE, "--count", "2", "-o", "ro/s.jsonl"], "Permission denied"),
                ([*GENERATE, "--count", "4", "-o", "ro_s.jsonl"], "ro_s.jsonl"),
                (["export", "--run", str(run_dir), "--config", NARROWEST, "--out", "ro/f"],
                 "--out ro/f: cannot write in ro"),
                (["export", "--run", str(run_dir), "--config", NARROWEST, "--out", "ro",
                  "--force"], "cannot write in ro"),
                (["latency", "validate", "s.jsonl", "--latency", "m.json", "--plot",
                  "ro/v.png"], "cannot write in ro"),
                # and a file that cannot be read
                (["space", "show", "--model", "tiny.py:net", "--classes", "4", "--weights",
                  "w.pt", "--resolution", "32"],
                 "cannot read weights file w.pt (Permission denied)"))
        answers = clis_as_user([argv for argv, _ in cases], tmp_path)
        for (argv, part), (rc, err) in zip(cases, answers):
            errors = [x for x in err.splitlines() if x.startswith("aows: error:")]
            assert rc == 2 and len(errors) == 1 and part in errors[0], (argv, err)
            assert "Traceback" not in err
        assert os.listdir(ro) == []
        assert (tmp_path / "ro_s.jsonl").read_bytes() == (tmp_path / "s.jsonl").read_bytes()
    finally:
        ro.chmod(0o755)


def test_export_into_a_path_under_a_file_fails_before_any_work(tmp_path, capsys, run_dir):
    (tmp_path / "a_file").write_text("x")
    one_error(capsys, ["export", "--run", str(run_dir), "--config", NARROWEST, "--out",
                       str(tmp_path / "a_file" / "f")], "is a file, not a folder")
    # a bad --config is refused without leaving the --out folder behind
    (tmp_path / "c.json").write_text(json.dumps({"config": "abc"}))
    one_error(capsys, ["export", "--run", str(run_dir), "--config", str(tmp_path / "c.json"),
                       "--out", str(tmp_path / "f")], '"config" list of widths', '"abc"')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "c.json"]


# ------------------------------------------------------------------ item 4: data
@pytest.mark.parametrize("layout,part", [
    ({"train": [], "val": []}, "Couldn't find any class folder"),
    ({"train": ["a", "b"], "val": ["a", "b"]}, "Found no valid file for the classes b"),
    ({"train": ["a"], "val": ["c"]}, "train/ has the classes a but val/ c"),
])
@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_an_image_folder_without_images_is_one_error(tmp_path, capsys, layout, part, command):
    pytest.importorskip("torchvision")
    from PIL import Image
    root = tmp_path / "data"
    for split, classes in layout.items():
        (root / split).mkdir(parents=True)
        for c in classes:
            (root / split / c).mkdir()
            if c != "b":  # class b: a folder without images
                Image.new("RGB", (8, 8)).save(root / split / c / "0.png")
    argv = ([*TRAIN, "--data", str(root), "--workers", "1", "--out", str(tmp_path / "run")]
            if command == "train" else
            ["evaluate", "--model", "torchvision:resnet18", "--data", str(root)])
    one_error(capsys, argv, f"--data {root}", part)
    assert not list(tmp_path.glob("run/*"))  # nothing written (train checks the folder first)


# -------------------------------------------------------------- item 4: resumes
def test_resume_with_another_space_is_one_error(tmp_path, capsys, run_dir):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    ckpt = (out / "checkpoint.pt").read_bytes()
    one_error(capsys, [*TRAIN, "--max-width", "0.5", "--out", str(out), "--resume"],
              "other settings", "space max_width: 0.3 -> 0.5")
    assert (out / "checkpoint.pt").read_bytes() == ckpt
    # a checkpoint from before the space was recorded: its shapes tell
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    del state["space"]
    torch.save(state, out / "checkpoint.pt")
    one_error(capsys, [*TRAIN, "--max-width", "0.5", "--out", str(out), "--resume"],
              "holds a network of another shape", "--max-width")
    assert "space" not in torch.load(out / "checkpoint.pt", weights_only=True)


# ----------------------------------------------------------- item 4: weight files
@pytest.mark.parametrize("which", ["--weights", "checkpoint", "final"])
def test_a_text_file_as_weights_is_one_error(tmp_path, capsys, run_dir, which):
    text = "these are not weights\n"
    if which == "--weights":
        (tmp_path / "w.pt").write_text(text)
        argv = ["evaluate", "--model", "torchvision:resnet18", "--weights",
                str(tmp_path / "w.pt"), "--data", "fake", "--resolution", "32"]
        path = tmp_path / "w.pt"
    elif which == "checkpoint":
        shutil.copytree(run_dir, tmp_path / "run")
        (tmp_path / "run" / "checkpoint.pt").write_text(text)
        argv = ["export", "--run", str(tmp_path / "run"), "--config", NARROWEST, "--out",
                str(tmp_path / "f")]
        path = tmp_path / "run" / "checkpoint.pt"
    else:
        assert main(["export", "--run", str(run_dir), "--config", NARROWEST, "--out",
                     str(tmp_path / "f")]) == 0
        (tmp_path / "f" / "weights.pt").write_text(text)
        argv = ["evaluate", str(tmp_path / "f"), "--data", "fake"]
        path = tmp_path / "f" / "weights.pt"
    capsys.readouterr()
    one_error(capsys, argv, str(path), "is not a readable", "nothing was loaded")


def test_an_unsafe_pickle_is_refused_in_one_line(tmp_path, capsys):
    """Item 5: the refusal says the file is not tensors-only and was not loaded, instead
    of the first line of PyTorch's explanation cut short."""
    torch.save({"a": pathlib.Path("x")}, tmp_path / "w.pt")
    msg = one_error(capsys, ["evaluate", "--model", "torchvision:resnet18", "--weights",
                             str(tmp_path / "w.pt"), "--data", "fake", "--resolution", "32"],
                    "is not a tensors-only weights file", "PosixPath", "was not loaded")
    assert "Weights only load failed" not in msg


@needs_permissions
# ------------------------------------------------------------ item 4: run folder
def test_a_torn_stage_marker_means_the_stage_is_done_again(tmp_path, capsys):
    from aows.latency.fit import flops_vector
    from aows.latency.model import LatencyModel
    from aows.pipeline import Pipeline, load_config
    from aows.spaces import mobilenet_v1
    from tests.test_pipeline import TINY
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    f = flops_vector(space)
    LatencyModel.from_unknowns(space, 0.05 + f / f.max(), "synthetic", {}).save(
        tmp_path / "lat.json")
    cfg = {**TINY, "latency": {"model": str(tmp_path / "lat.json")}, "onnx": False}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = ["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--until",
           "latency"]
    assert main(run) == 0
    stages = tmp_path / "run" / "stages"
    (stages / "latency.json").write_text('{"reused": "x')  # torn
    (stages / "search.json").write_text('{"budget_ms": 1.')
    capsys.readouterr()
    assert main(run) == 0
    err = capsys.readouterr().err
    assert "its marker" in err and "done again" in err and "[latency] ..." in err
    assert json.loads((stages / "latency.json").read_text())["reused"] == str(
        tmp_path / "lat.json")
    assert Pipeline(load_config(cfg), tmp_path / "run").done("search") is None


# --------------------------------------------------------------- item 4: sizes
def _space_file(path, choices: int):
    widths = list(range(8, 8 + choices))
    path.write_text(yaml.safe_dump({
        "name": "big", "resolution": 32, "classes": 4,
        "variables": {"a": {"choices": widths}, "b": {"choices": widths}},
        "layers": [{"name": "stem", "op": "conv", "kernel": 3, "out": "a"},
                   {"name": "c1", "op": "conv", "kernel": 1, "out": "b"},
                   {"name": "c2", "op": "conv", "kernel": 3, "out": "a"},
                   {"name": "fc", "op": "linear", "out": "classes"}]}))


def test_a_fit_too_large_for_memory_is_refused_with_the_estimate(tmp_path, capsys):
    _space_file(tmp_path / "big.yaml", 300)  # 180600 unknowns: 729 GiB of systems
    samples = tmp_path / "s.jsonl"  # the reference layout: [[widths], ms]
    samples.write_text("".join(json.dumps([[8 + k, 9 + k], 1.0 + k]) + "\n"
                               for k in range(5)))
    msg = one_error(capsys, ["latency", "fit", str(samples), "--space",
                             str(tmp_path / "big.yaml"), "-o", str(tmp_path / "m.json")],
                    "180600 latency unknowns", "729.0 GiB", "--levels", "nothing was fitted")
    assert "this machine has" in msg
    assert not (tmp_path / "m.json").exists()


def test_a_space_file_beyond_the_fit_and_solvers_is_warned_about(tmp_path, capsys):
    """Item 5: accepted, but not silently: the estimate, before the space is built."""
    _space_file(tmp_path / "big.yaml", 300)
    assert main(["space", "show", str(tmp_path / "big.yaml")]) == 0
    warn = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert len(warn) == 1 and "about 180600 latency unknowns" in warn[0]
    assert "729.0 GiB" in warn[0] and "fewer choices" in warn[0]
    # 5000 choices per variable: checked on the builder's layers, before the space is
    # built (listing its 25 million unknowns takes minutes)
    from aows.size import size_warning
    from aows.spaces import GraphBuilder
    b = GraphBuilder("huge", 32, 3, 4, 0.2, 1.5, 14, 8)
    a, c = (b.var(n, tuple(range(8, 5008))) for n in "ac")
    b.layer("stem", "conv", a, kernel=3)
    b.layer("c1", "conv", c)
    msg = size_warning(b.name, b.layers, b.choices)
    assert "about 25005000 latency unknowns" in msg and "PiB" in msg and "the search" in msg
    _space_file(tmp_path / "small.yaml", 20)
    assert main(["space", "show", str(tmp_path / "small.yaml")]) == 0
    assert "warning" not in capsys.readouterr().err


# -------------------------------------------------------------------- item 5
@pytest.mark.slow
def test_a_model_file_is_named_before_it_is_imported(tmp_path):
    """A file that loops at import no longer hangs without a word."""
    (tmp_path / "loops.py").write_text("while True:\n    pass\n")
    proc = subprocess.Popen([sys.executable, "-m", "aows.cli", "space", "show", "--model",
                             "loops.py:net"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            env=ENV)
    watchdog = threading.Timer(120, proc.kill)  # no line at all: fail, not hang
    watchdog.start()
    try:
        line = proc.stderr.readline()
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert "loading model file" in line and "loops.py (your code)" in line


def test_generate_reports_what_the_file_holds(tmp_path, capsys):
    out = str(tmp_path / "s.jsonl")
    assert main([*GENERATE, "--count", "4", "-o", out]) == 0
    assert "s.jsonl: 4 networks (4 timed now, 0 already there)" in capsys.readouterr().out
    assert main([*GENERATE, "--count", "2", "-o", out]) == 0
    said = capsys.readouterr().out
    assert "4 networks, already more than --count 2: none timed" in said
    assert main([*GENERATE, "--count", "6", "-o", out]) == 0
    assert "6 networks (2 timed now, 4 already there)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_finished_refinement_is_not_redone(tmp_path, capsys, monkeypatch):
    samples, model = str(tmp_path / "s.jsonl"), str(tmp_path / "m.json")
    space = ["--space", "mobilenet_v1", "--resolution", "32", "--levels", "3",
             "--max-width", "0.5"]
    assert main(["latency", "generate", *space, "--threads", "1", "--count", "16", "--cover",
                 "-q", "-o", samples, "--warmup", "1", "--rounds", "2", "--runs", "1",
                 "--chunk", "8"]) == 0
    assert main(["latency", "fit", samples, *space, "-o", model]) == 0
    refine = ["latency", "refine", samples, "--latency", model, "-o", str(tmp_path / "r"),
              "--n-budgets", "2", "--rounds", "1"]
    capsys.readouterr()
    assert main(refine) == 0
    first = capsys.readouterr().out
    files = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    import aows.refine as refine_mod
    fits = []
    real_fit = refine_mod.fit
    monkeypatch.setattr(refine_mod, "fit", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    assert main(refine) == 0
    out = capsys.readouterr()
    assert out.out == first and "nothing to redo" in out.err and not fits
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == files
    # other settings: refined again (resumed from the timings there)
    assert main([*refine[:-1], "2"]) == 0
    assert fits
