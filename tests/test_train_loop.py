"""The supernet training loop on tiny synthetic data, end to end into `aows search`."""

import json
import logging

import numpy as np
import pytest
import torch

from aows.cli import main
from aows.errors import AowsError
from aows.latency.fit import flops_vector
from aows.latency.model import LatencyModel
from aows.spaces import mobilenet_v1
from aows.train.loop import TrainConfig, train_supernet


def tiny_data(n_batches=4, batch=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n_batches, batch, 3, 32, 32, generator=g)
    ys = (xs[:, :, 0].mean((2, 3)) > 0).long() + 2 * (xs[:, :, 1].mean((2, 3)) > 0).long()

    def batches(epoch):
        return [(xs[k], ys[k]) for k in range(n_batches)]
    return batches


def tiny_latency(space):
    f = flops_vector(space)
    return LatencyModel.from_unknowns(space, 0.05 + f / f.max(), "synthetic", {})


def test_ows_training_writes_unaries_that_search_reads(tmp_path, capsys):
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    out = tmp_path / "run"
    _, stats = train_supernet(space, tiny_data(), TrainConfig(epochs=2, sampled=2), out)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert all(np.isfinite(m["loss_max"]) for m in metrics)
    assert sum(c.sum() for c in stats.counts()) > 0
    model = tiny_latency(space)
    model.save(tmp_path / "latency.json")
    budget = 0.5 * (model.predict(space.narrowest()) + model.predict(space.widest()))
    assert main(["search", "--latency", str(tmp_path / "latency.json"), "--unaries",
                 str(out / "unaries.json"), "--budget", str(budget), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["predicted_latency_ms"] <= budget


def test_aows_training_needs_latency_and_budget_and_decodes_each_epoch(tmp_path):
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    with pytest.raises(AowsError, match="latency model and a budget"):
        train_supernet(space, tiny_data(), TrainConfig(epochs=1, method="aows"), tmp_path)
    model = tiny_latency(space)
    budget = 0.5 * (model.predict(space.narrowest()) + model.predict(space.widest()))
    train_supernet(space, tiny_data(n_batches=2), TrainConfig(epochs=4, method="aows",
                                                              budget=budget),
                   tmp_path / "aows", latency=model)
    metrics = [json.loads(line)
               for line in (tmp_path / "aows" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["temperature"] is None  # uniform warm-up
    assert metrics[-1]["temperature"] == pytest.approx(5e-4, rel=0.5)
    assert all(m["predicted_latency_ms"] <= budget for m in metrics)


@pytest.mark.slow
def test_stopped_mid_epoch_and_resumed_equals_uninterrupted(tmp_path):
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    model = tiny_latency(space)
    budget = 0.5 * (model.predict(space.narrowest()) + model.predict(space.widest()))
    cfg = TrainConfig(epochs=3, batch_size=16, method="aows", budget=budget, sampled=2)
    net_a, stats_a = train_supernet(space, tiny_data(), cfg, tmp_path / "a", latency=model)
    calls = {"n": 0}

    def stop_once():  # as if SIGTERM arrived during step 6 (epoch 2, step 2)
        calls["n"] += 1
        return calls["n"] == 6

    train_supernet(space, tiny_data(), cfg, tmp_path / "b", latency=model, should_stop=stop_once)
    ckpt = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert ckpt["position"]["epoch"] == 1 and ckpt["position"]["iteration"] == 2
    net_b, stats_b = train_supernet(space, tiny_data(), cfg, tmp_path / "b", latency=model,
                                    resume=True)
    for (k, a), b in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        assert torch.equal(a, b), k
    for ua, ub in zip(stats_a.unaries(), stats_b.unaries()):
        np.testing.assert_array_equal(ua, ub)
    la = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
    assert [strip(x) for x in la] == [strip(x) for x in lb]
    with pytest.raises(AowsError, match=r"other settings \(.*epochs: 3 -> 4"):
        train_supernet(space, tiny_data(), TrainConfig(epochs=4, batch_size=16), tmp_path / "b",
                       resume=True)


def test_signal_handlers_are_restored_and_batch_size_checked(tmp_path):
    import signal
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    train_supernet(space, tiny_data(n_batches=1), TrainConfig(epochs=1, batch_size=16),
                   tmp_path / "a")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    with pytest.raises(AowsError, match="batch_size"):
        train_supernet(space, tiny_data(n_batches=1), TrainConfig(epochs=1, batch_size=8),
                       tmp_path / "b")


@pytest.mark.slow
def test_train_cli_on_digits_then_search(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--space", "mobilenet_v1", "--resolution", "32", "--levels", "3",
                 "--max-width", "0.5", "--data", "digits", "--epochs", "1", "--batch-size",
                 "100", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert m["images"] == 1500 and 0 <= m["acc_max"] <= 1
    space = mobilenet_v1(resolution=32, classes=10, levels=3, max_width=0.5)
    tiny_latency(space).save(tmp_path / "latency.json")
    capsys.readouterr()
    assert main(["search", "--latency", str(tmp_path / "latency.json"), "--unaries",
                 str(out / "unaries.json"), "--budget", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["solver"] == "exact"
    assert main(["train", "--data", "digits", "--resolution", "32", "--epochs", "1",
                 "--method", "aows", "--out", str(tmp_path / "x")]) == 2
    assert "needs a latency model" in capsys.readouterr().err
    assert main(["train", "--data", "nowhere", "--epochs", "1", "--out", str(tmp_path / "y")]) == 2


@pytest.mark.slow
def test_cli_run_killed_by_sigterm_resumes_to_the_uninterrupted_result(tmp_path):
    """A real SIGTERM to `aows train` mid-run, then --resume: same weights and statistics
    as a run never stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time
    args = ["--data", "fake", "--resolution", "32", "--levels", "3", "--max-width", "0.5",
            "--epochs", "3", "--batch-size", "16", "--no-progress", "--no-val"]
    cmd = [sys.executable, "-m", "aows.cli", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the uninterrupted run beside the one to stop: one thread each, the results do not
    # depend on what else runs
    whole = subprocess.Popen([*cmd, "--out", str(tmp_path / "a")], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "b")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "b" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text().strip()) and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    # stopped, not completed: a scheduler must not record a pre-empted job as done
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--resume" in err
    pos = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["position"]
    assert (pos["epoch"], pos["iteration"]) != (3, 0), "the signal came too late to test"
    subprocess.run([*cmd, "--out", str(tmp_path / "b"), "--resume"], check=True, env=env,
                   capture_output=True, timeout=300)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["stats"]:  # bit-identical (NaN marks choices never seen)
        np.testing.assert_array_equal(a["stats"][k].numpy(), b["stats"][k].numpy(), k)


def test_amp_and_channels_last_paths_run_and_validate(tmp_path):
    """The CUDA defaults (autocast, channels_last) exercised on CPU with bfloat16, plus
    the per-epoch validation of widest / narrowest / decoded configurations."""
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    model = tiny_latency(space)
    budget = 0.5 * (model.predict(space.narrowest()) + model.predict(space.widest()))
    cfg = TrainConfig(epochs=1, batch_size=16, amp=True, channels_last=True, budget=budget,
                      calib_batches=2, progress=False)
    train_supernet(space, tiny_data(), cfg, tmp_path, latency=model,
                   val_batches=tiny_data(n_batches=2, seed=1))
    m = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert np.isfinite(m["loss_max"]) and np.isfinite(m["loss_sampled"])
    for k in ("val_top1_widest", "val_top1_narrowest", "val_top1_decoded"):
        assert 0.0 <= m[k] <= 1.0


@pytest.mark.slow
def test_aows_branched_from_the_ows_warmup_equals_aows_from_scratch(tmp_path):
    """AOWS samples uniformly during its warm-up, so its first epochs are OWS's: an AOWS
    run started from the OWS checkpoint at the end of the warm-up ends bit-identical."""
    from aows.train.loop import branch_from_warmup, warmup_epochs
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    model = tiny_latency(space)
    budget = 0.5 * (model.predict(space.narrowest()) + model.predict(space.widest()))
    aows = TrainConfig(epochs=4, batch_size=16, method="aows", budget=budget,
                       progress=False)
    ows = TrainConfig(**{**aows.__dict__, "method": "ows"})
    assert warmup_epochs(aows) == 1
    net_a, stats_a = train_supernet(space, tiny_data(), aows, tmp_path / "a", latency=model)
    train_supernet(space, tiny_data(), ows, tmp_path / "ows", latency=model, keep_epochs=[1])
    assert branch_from_warmup(tmp_path / "ows", aows, tmp_path / "b") == 1
    assert branch_from_warmup(tmp_path / "ows", aows, tmp_path / "b") == 0  # started
    other = TrainConfig(**{**aows.__dict__, "lr": 0.05})
    assert branch_from_warmup(tmp_path / "ows", other, tmp_path / "c") == 0
    net_b, stats_b = train_supernet(space, tiny_data(), aows, tmp_path / "b", latency=model,
                                    resume=True)
    for (k, x), y in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        assert torch.equal(x, y), k
    for ua, ub in zip(stats_a.unaries(), stats_b.unaries()):
        np.testing.assert_array_equal(ua, ub)
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
    la = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    lb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [strip(x) for x in la] == [strip(x) for x in lb]


def test_a_checkpoint_from_before_the_data_was_recorded_resumes(tmp_path, caplog):
    """Checkpoints of earlier versions have no "data" (nor "scratch") in their settings:
    they resume as this data; a checkpoint of other recorded data is refused, naming
    it."""
    from aows.train.runtime import load_checkpoint, save_checkpoint
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    out = tmp_path / "run"
    train_supernet(space, tiny_data(), TrainConfig(epochs=1, data="fake"), out)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["config"]["data"] == "fake"
    old = {k: v for k, v in state["config"].items() if k not in ("data", "scratch")}
    save_checkpoint(out / "checkpoint.pt", {**state, "config": old})
    with caplog.at_level(logging.INFO, logger="aows"):
        train_supernet(space, tiny_data(), TrainConfig(epochs=1, data="fake"), out,
                       resume=True)  # accepted: nothing left to train
    assert any("resumed from" in r.getMessage() for r in caplog.records)
    save_checkpoint(out / "checkpoint.pt", state)  # the data recorded again
    with pytest.raises(AowsError, match="data: 'fake' -> 'digits'"):
        train_supernet(space, tiny_data(), TrainConfig(epochs=1, data="digits"), out,
                       resume=True)
