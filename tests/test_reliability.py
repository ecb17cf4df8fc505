"""What a user or an operator can do wrong, and what the process is left with."""

import json

import numpy as np
import pytest
import torch

from aows.cli import main
from aows.errors import AowsError
from aows.latency.backends import Target
from aows.latency.measure import time_configs
from aows.latency.protocol import Protocol
from aows.spaces import mobilenet_v1


def test_timing_leaves_the_thread_count_as_it_found_it():
    space = mobilenet_v1(resolution=32, levels=2, max_width=0.3, classes=4)
    before = torch.get_num_threads()
    target = Target("torch-cpu", threads=1 if before != 1 else 2)
    proto = Protocol(warmup=1, rounds=1, runs=1, chunk=2)
    ms = time_configs(space, [space.narrowest(), space.widest()], target, proto)
    assert ms.shape == (2,) and np.all(ms > 0)
    assert torch.get_num_threads() == before


@pytest.mark.slow  # a training run
def test_train_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--space", "mobilenet_v1", "--resolution", "32", "--data", "fake",
            "--epochs", "1", "--batch-size", "16", "--no-progress", "--no-val",
            "--levels", "2", "--max-width", "0.3", "--out", str(out)]
    assert main([*args, "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(args) == 0
    unaries = (out / "unaries.json").read_text()
    metrics = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--resume" in err
    assert (out / "unaries.json").read_text() == unaries
    assert (out / "metrics.jsonl").read_text() == metrics
    (tmp_path / "file").write_text("x")
    assert main([*args[:-1], str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_latency_predict_and_search_errors_name_the_input(tmp_path, capsys):
    (tmp_path / "lat.json").write_text(json.dumps({"aows": "latency-model", "space": {}}))
    assert main(["latency", "predict", "--latency", str(tmp_path / "lat.json"), "8"]) == 2
    assert "latency model" in capsys.readouterr().err
    assert main(["latency", "predict", "--latency", str(tmp_path / "none.json"), "8"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["latency", "generate", "--space", "mobilenet_v1", "--count", "-5", "-o", "x.jsonl"],
     "--count: must be > 0"),
    (["latency", "fit", "x.jsonl", "--space", "mobilenet_v1", "--smooth", "abc", "-o", "m"],
     "'abc' is not a number or 'auto'"),
    (["latency", "fit", "x.jsonl", "--space", "mobilenet_v1", "-K", "-5", "-o", "m"],
     "must be >= 0"),
    (["search", "--latency", "l.json", "--unaries", "u.json", "--pareto", "--budgets", "0"],
     "--budgets: must be > 0"),
    (["train", "--data", "fake", "--epochs", "0", "--out", "r"], "--epochs: must be > 0"),
    (["train", "--data", "fake", "--epochs", "1", "--batch-size", "-1", "--out", "r"],
     "--batch-size: must be > 0"),
    (["measure", "f", "--latency", "l.json", "--repeats", "0"], "--repeats: must be > 0"),
    (["space", "show", "resnet18", "--resolution", "100"], "multiple of 32"),
    (["space", "show", "nope"], "unknown search space"),
    (["space", "show", "missing.yaml"], "does not exist"),
    (["latency", "fit", ".", "--space", "mobilenet_v1", "-o", "m.json"], "is a folder"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own checks (types, ranges) exit with 2
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_written_files_follow_the_umask_and_leave_no_temp_files(tmp_path):
    import os

    from aows.errors import AowsError
    from aows.io import atomic_write_text
    from aows.train.runtime import save_checkpoint
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        save_checkpoint(tmp_path / "c.pt", {"x": torch.zeros(2)})
        os.umask(0o027)  # the umask of the moment, not of the import
        atomic_write_text(tmp_path / "b.json", "{}")
        assert os.umask(0o022) == 0o027  # read without being changed
    finally:
        os.umask(old)
    for f in ("a.json", "c.pt"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o640
    with pytest.raises(AowsError, match="is a folder"):
        atomic_write_text(tmp_path, "{}")

    def fail(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")
    from aows.io import atomic_write_bytes
    with pytest.raises(AowsError, match="No space left"):
        atomic_write_bytes(tmp_path / "c.pt", write=fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "c.pt"]
    assert torch.load(tmp_path / "c.pt", weights_only=True)["x"].shape == (2,)


def test_corrupt_truncated_and_foreign_weight_files_are_one_clear_error(tmp_path):
    import pickle

    from aows.errors import AowsError
    from aows.final import load_final, load_supernet, save_final
    from aows.nn import build_network
    space = mobilenet_v1(resolution=32, levels=2, max_width=0.3, classes=4)
    cfg = space.narrowest()
    save_final(tmp_path / "f", build_network(space, cfg), space, cfg)
    weights = tmp_path / "f" / "weights.pt"
    good = weights.read_bytes()
    for bad, message in ((good[: len(good) // 2], "not a readable weights file"),
                         (b"", "not a readable weights file"),
                         (pickle.dumps(object()), "not a tensors-only weights file")):
        weights.write_bytes(bad)
        with pytest.raises(AowsError, match=message):
            load_final(tmp_path / "f")
    torch.save(torch.zeros(3), weights)
    with pytest.raises(AowsError, match="holds no state_dict"):
        load_final(tmp_path / "f")
    (tmp_path / "checkpoint.pt").write_bytes(good[:100])
    with pytest.raises(AowsError, match="not a readable checkpoint"):
        load_supernet(tmp_path, space)


def test_run_configuration_errors_are_all_reported_before_anything_runs(tmp_path):
    from aows.errors import AowsError
    from aows.pipeline import load_config
    p = tmp_path / "c.yaml"
    p.write_text("")
    with pytest.raises(AowsError, match="is empty"):
        load_config(p)
    p.write_text("latency: {networks: -5, heldout: ten, blocks: 2}\n"
                 "train: {epochz: 3, lr: 0.2}\nonnx: 1\n")
    with pytest.raises(AowsError) as err:
        load_config(p)
    msg = str(err.value)
    for part in ("'latency.networks' must be at least 1", "'latency.heldout' must be an integer",
                 "unknown setting 'train.epochz'", "'onnx' must be true or false"):
        assert part in msg
    p.write_text("latency: {K: auto, networks: 300}\n")
    cfg = load_config(p)
    assert cfg.latency.K == "auto" and cfg.latency.networks == 300


def test_appending_under_another_timing_protocol_is_refused(tmp_path):
    from aows.latency.measure import collect
    from aows.latency.store import SampleFileError
    space = mobilenet_v1(resolution=32, levels=2, max_width=0.3, classes=4)
    target = Target("torch-cpu", threads=1)
    path = tmp_path / "s.jsonl"
    collect(space, target, Protocol(warmup=1, rounds=1, runs=1, chunk=2), path, 2, "uniform",
            progress=False)
    with pytest.raises(SampleFileError, match="another protocol.*runs=1 there, 2 now"):
        collect(space, target, Protocol(warmup=1, rounds=1, runs=2, chunk=2), path, 4,
                "uniform", progress=False)


def test_samples_record_the_thread_count_in_effect_and_older_files_resume(tmp_path):
    """Without --threads a sample file records torch's thread count, not null; a file
    from before (null: the default) resumes with the default and refuses another count."""
    from aows.latency.measure import collect
    from aows.latency.store import SampleFileError, read_samples
    space = mobilenet_v1(resolution=32, levels=2, max_width=0.3, classes=4)
    proto = Protocol(warmup=1, rounds=1, runs=1, chunk=2)
    path = tmp_path / "s.jsonl"
    collect(space, Target("torch-cpu"), proto, path, 2, "uniform", progress=False)
    t = read_samples(path).header["target"]
    assert t["threads"] == torch.get_num_threads() and t["threads_default"] is True
    # an older file: threads null, no threads_default
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    head["target"]["threads"] = None
    del head["target"]["threads_default"]
    path.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    other = 1 if torch.get_num_threads() != 1 else 2
    with pytest.raises(SampleFileError, match="threads=None"):
        collect(space, Target("torch-cpu", threads=other), proto, path, 4, "uniform",
                progress=False)
    assert collect(space, Target("torch-cpu"), proto, path, 4, "uniform", progress=False) == 2
    assert len(read_samples(path)) == 4


def test_training_into_an_unwritable_folder_fails_before_it_starts(tmp_path, capsys):
    (tmp_path / "file").write_text("x")  # a folder cannot be made under a file, even by root
    out = tmp_path / "file" / "run"
    assert main(["train", "--data", "fake", "--epochs", "1", "--out", str(out)]) == 2
    assert "cannot write in" in capsys.readouterr().err


def test_onnx_check_is_not_fooled_by_an_untrained_network(tmp_path, monkeypatch):
    """An untrained network outputs its classifier's bias whatever the input (its features
    vanish through the layers), so an export with a wrong convolution compared equal on
    the outputs; the check must still catch it."""
    pytest.importorskip("onnxruntime")
    import copy

    import aows.final as final
    from aows.nn import build_network
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    torch.manual_seed(0)
    net = build_network(space, space.narrowest()).eval()
    with torch.no_grad():
        outs = torch.stack([net(torch.randn(1, 3, 32, 32)) for _ in range(3)])
    assert float((outs - outs[0]).abs().max()) < 1e-9  # the premise: input-independent
    assert final.export_onnx(net, space, tmp_path / "ok.onnx") < 1e-4
    real = final.onnx_bytes

    def one_conv_two_percent_off(module, shape):
        wrong = copy.deepcopy(module)
        with torch.no_grad():
            [m for m in wrong.modules() if isinstance(m, torch.nn.Conv2d)][3].weight.mul_(1.02)
        return real(wrong, shape)

    monkeypatch.setattr(final, "onnx_bytes", one_conv_two_percent_off)
    with pytest.raises(AowsError, match="not faithful"):
        final.export_onnx(net, space, tmp_path / "bad.onnx")


def test_a_figure_under_a_regular_file_is_one_clear_error(tmp_path):
    """Every figure is written through the io layer: a path under a file is one error
    naming it, and nothing is left behind."""
    from aows.latency.validate import scatter_plot
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(AowsError, match="cannot write .*a_file/fit.png"):
        scatter_plot(np.array([1.0, 2.0]), np.array([1.1, 1.9]), blocker / "fit.png")
    assert blocker.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == ["a_file"]
