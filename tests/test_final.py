"""Final networks: export, reload from the configuration alone, ONNX, fine-tuning,
measured vs predicted latency."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from aows.cli import main
from aows.errors import AowsError
from aows.final import export_onnx, load_final, measure_networks, save_final
from aows.latency.fit import flops_vector
from aows.latency.model import LatencyModel
from aows.latency.protocol import Protocol
from aows.nn.slimmable import SlimmableNetwork
from aows.spaces import mobilenet_v1
from aows.train.finetune import FinetuneConfig, finetune, param_groups
from aows.train.runtime import lr_at


def small_space():
    return mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)


def exported(space, seed=0):
    torch.manual_seed(seed)
    sup = SlimmableNetwork(space)
    config = space.uniform_sample(np.random.default_rng(seed), 1)[0]
    calib = [torch.randn(8, 3, 32, 32) for _ in range(2)]
    return sup.export(config, calibration=calib).eval(), config


def test_export_then_reload_from_config_alone_reproduces_outputs(tmp_path):
    space = small_space()
    net, config = exported(space)
    save_final(tmp_path / "f", net, space, config)
    # the folder alone: no space, no config passed in
    again, space2, config2 = load_final(tmp_path / "f")
    assert config2 == list(config) and space2.fingerprint() == space.fingerprint()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), again(x))


def test_weights_of_another_configuration_are_one_clear_error(tmp_path):
    space = small_space()
    a, ca = exported(space, 0)
    b, cb = exported(space, 3)
    assert ca != cb
    save_final(tmp_path / "a", a, space, ca)
    save_final(tmp_path / "b", b, space, cb)
    (tmp_path / "a" / "weights.pt").replace(tmp_path / "b" / "weights.pt")
    with pytest.raises(AowsError, match="does not fit the configuration"):
        load_final(tmp_path / "b")
    with pytest.raises(AowsError, match="does not exist"):
        load_final(tmp_path / "nowhere")
    (tmp_path / "b" / "config.json").write_text('{"config": [1]}')
    with pytest.raises(AowsError, match="not an aows final network"):
        load_final(tmp_path / "b")


def test_onnx_export_matches_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    space = small_space()
    net, _ = exported(space)
    diff = export_onnx(net, space, tmp_path / "m.onnx")
    assert diff is not None and diff < 1e-4
    assert (tmp_path / "m.onnx").stat().st_size > 1000


def test_lr_schedule_and_no_decay_groups():
    base, total, warm = 0.4, 100, 10
    got = [lr_at(s, total, warm, base) for s in range(total)]
    assert got[0] == pytest.approx(base / warm) and got[9] == pytest.approx(base)
    assert got[10] == pytest.approx(base)
    assert got[55] == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert all(a >= b for a, b in zip(got[10:], got[11:]))
    net, _ = exported(small_space())
    decay, no_decay = param_groups(net, 1e-4)
    assert all(p.dim() > 1 for p in decay["params"])  # conv / linear weights
    assert all(p.dim() == 1 for p in no_decay["params"])  # BN and biases
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(net.parameters()))


def _tiny(n_batches=4, batch=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n_batches, batch, 3, 32, 32, generator=g)
    ys = (xs[:, :, 0].mean((2, 3)) > 0).long() + 2 * (xs[:, :, 1].mean((2, 3)) > 0).long()
    return lambda epoch: [(xs[k], ys[k]) for k in range(n_batches)]


def test_finetune_learns_and_resumes_exactly(tmp_path):
    space = small_space()
    cfg = FinetuneConfig(epochs=3, batch_size=16, lr=0.2, mixup=0.2, device="cpu",
                         progress=False)
    a, _ = exported(space)
    finetune(a, _tiny(), _tiny(2, seed=1), cfg, tmp_path / "a", 4)
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["train_top1"] > lines[0]["train_top1"]
    assert lines[-1]["loss"] < lines[0]["loss"]
    b, _ = exported(space)
    calls = {"n": 0}

    def stop_at_6():
        calls["n"] += 1
        return calls["n"] == 6

    assert finetune(b, _tiny(), _tiny(2, seed=1), cfg, tmp_path / "b", 4,
                    should_stop=stop_at_6)["stopped"]
    b, _ = exported(space)
    asked = []

    def rest(epoch, start=0):  # data that can start mid-epoch is asked for the rest only
        asked.append((epoch, start))
        return _tiny()(epoch)[start:]

    finetune(b, rest, _tiny(2, seed=1), cfg, tmp_path / "b", 4, resume=True)
    assert asked == [(1, 2), (2, 0)]  # stopped during epoch 2 after 2 of its 4 steps
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k
    # the resumed epoch's record counts its whole epoch, as the uninterrupted run's
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
    assert ([strip(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
            == [strip(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()])


def test_evaluate_top1_and_top5_against_a_count_by_hand():
    from aows.train.finetune import evaluate
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 7, generator=g)
    y = torch.randint(0, 7, (40,), generator=g)
    rank = (logits > logits.gather(1, y[:, None])).sum(1)  # classes scored above the label
    net = nn.Flatten()  # returns its input: the "images" are the logits
    res = evaluate(net, [(logits[:25], y[:25]), (logits[25:], y[25:])], torch.device("cpu"))
    assert res["images"] == 40
    assert res["top1"] == pytest.approx(float((rank == 0).float().mean()))
    assert res["top5"] == pytest.approx(float((rank < 5).float().mean()))
    assert res["top1"] < res["top5"] < 1.0


def test_measure_reports_predicted_and_measured_with_a_noise_floor():
    space = small_space()
    f = flops_vector(space)
    model = LatencyModel.from_unknowns(space, 0.01 + f / f.max(), "synthetic",
                                       {"target": {"backend": "torch-cpu", "threads": 1}})
    nets = {}
    configs = {}
    for k in range(2):
        nets[f"n{k}"], configs[f"n{k}"] = exported(space, k)
    res = measure_networks(nets, model, configs, repeats=2,
                           protocol=Protocol(warmup=1, rounds=2, runs=1))
    assert res["noise_floor"] is not None  # no recorded floor: the networks' re-timing
    for k, r in res["networks"].items():
        assert r["measured_latency_ms"] > 0
        assert r["predicted_latency_ms"] == pytest.approx(model.predict(configs[k]))
        assert r["relative_error"] == pytest.approx(
            r["measured_latency_ms"] / r["predicted_latency_ms"] - 1)
        assert isinstance(r["within_noise_floor"], bool)


def test_measure_on_a_machine_slower_than_the_models_reference_says_so(caplog):
    """The model's anchor reference is out of this machine's reach (as a day later on a
    slower machine): the first chunk is retried, the bar then falls to this session's
    anchor (one chunk of retries, not one per round), and the measurement says so."""
    from aows.final import describe_measurement
    space = small_space()
    f = flops_vector(space)
    proto = Protocol(warmup=1, rounds=2, runs=1, retries=1)
    model = LatencyModel.from_unknowns(space, 0.01 + f / f.max(), "synthetic", {
        "target": {"backend": "torch-cpu", "threads": 1}, "protocol": proto.asdict(),
        "anchor": {"ref_ms": 1e-6}})
    nets, configs = {}, {}
    nets["n0"], configs["n0"] = exported(space, 0)
    with caplog.at_level("WARNING", logger="aows.latency.protocol"):
        res = measure_networks(nets, model, configs, repeats=3, fill=False)
    assert res["slower_than_reference"] > 100
    assert caplog.text.count("slower now") == 1
    assert "slower than when the latency model's samples were timed" in \
        describe_measurement(res)


@pytest.mark.slow
def test_cli_train_export_finetune_measure(tmp_path, capsys):
    run, fin = tmp_path / "run", tmp_path / "final"
    assert main(["train", "--data", "fake", "--resolution", "32", "--levels", "3",
                 "--max-width", "0.5", "--epochs", "1", "--batch-size", "32", "--no-progress",
                 "--no-val", "--out", str(run)]) == 0
    space = mobilenet_v1(resolution=32, classes=4, levels=3, max_width=0.5)
    f = flops_vector(space)
    LatencyModel.from_unknowns(space, 0.01 + f / f.max(), "synthetic", {}).save(
        tmp_path / "lat.json")
    capsys.readouterr()
    assert main(["search", "--latency", str(tmp_path / "lat.json"), "--unaries",
                 str(run / "unaries.json"), "--budget", "3", "--json"]) == 0
    (tmp_path / "found.json").write_text(capsys.readouterr().out)
    assert main(["export", "--run", str(run), "--config", str(tmp_path / "found.json"),
                 "--data", "fake", "--out", str(fin), "--onnx"]) == 0
    assert "ONNX Runtime matches" in capsys.readouterr().out
    assert main(["finetune", str(fin), "--data", "fake", "--epochs", "1", "--batch-size",
                 "32", "--no-progress", "--device", "cpu"]) == 0
    assert "top-1" in capsys.readouterr().out
    net, _, config = load_final(fin / "finetuned")
    assert config == json.loads((tmp_path / "found.json").read_text())["config"]
    assert main(["export", "--run", str(run), "--config", "8,8", "--out",
                 str(tmp_path / "x")]) == 2
    capsys.readouterr()
    # BatchNorm re-estimated on other data than the supernet's: said, not refused
    assert main(["export", "--run", str(run), "--config", str(tmp_path / "found.json"),
                 "--data", "digits", "--out", str(tmp_path / "other")]) == 0
    err = capsys.readouterr().err
    assert "not the data the supernet was trained on (fake)" in err
    assert main(["measure", str(fin), "--latency", str(tmp_path / "lat.json"), "--repeats",
                 "1", "--json"]) == 0
