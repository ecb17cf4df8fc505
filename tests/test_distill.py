"""Label-free supernet training by distillation from the user's model (issue #23): any
output structure (a dense map, a dict or list of feature maps), images alone, the same
resume, unaries and export as classification. The models here load as
``tests/test_distill.py:FUNCTION``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aows.cli import main
from aows.extract import extract
from aows.nn.modelnet import ModuleSupernet
from aows.train.objective import distill_loss, output_tensors

HERE = str(Path(__file__).resolve())
UNET = str(Path(__file__).with_name("test_extract_ops.py").resolve())
ZOO = str(Path(__file__).with_name("zoo.py").resolve())
SPECS = {"unet": f"{UNET}:unet", "cat_unet": f"{ZOO}:cat_unet"}  # else f"{HERE}:{name}"
RES = 16


def _cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class _FPN(nn.Module):
    """A backbone of three stages and a feature pyramid: 1x1 laterals, top-down
    nearest upsampling added to the laterals, a 3x3 output conv per level. ``out``:
    a dict of the levels, or a list."""

    def __init__(self, out: str = "dict"):
        super().__init__()
        self.out = out
        self.c1, self.c2, self.c3 = _cbr(3, 16, 2), _cbr(16, 24, 2), _cbr(24, 32, 2)
        self.lat1, self.lat2, self.lat3 = (nn.Conv2d(c, 16, 1) for c in (16, 24, 32))
        self.out1, self.out2, self.out3 = (nn.Conv2d(16, 8, 3, 1, 1) for _ in range(3))

    def forward(self, x):
        c1 = self.c1(x)
        c2 = self.c2(c1)
        c3 = self.c3(c2)
        p3 = self.lat3(c3)
        p2 = self.lat2(c2) + F.interpolate(p3, scale_factor=2, mode="nearest")
        p1 = self.lat1(c1) + F.interpolate(p2, scale_factor=2, mode="nearest")
        levels = [self.out1(p1), self.out2(p2), self.out3(p3)]
        return dict(zip(("p1", "p2", "p3"), levels)) if self.out == "dict" else levels


def fpn_dict():
    return _FPN("dict")


def fpn_list():
    return _FPN("list")


class _NoTensor(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 32, 3), nn.Conv2d(32, 8, 3)

    def forward(self, x):
        return {"images": self.c2(self.c1(x)).shape[0]}


def no_tensor():
    return _NoTensor()


def my_loss(outputs, targets):
    """A user's task loss: the mean square of the outputs, per image."""
    return outputs.pow(2).flatten(1).mean(1)


def scalar_loss(outputs, targets):
    return outputs.pow(2).mean()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of 40 PNG images in no particular layout (no classes, no split)."""
    from PIL import Image
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for k in range(40):
        base = rng.uniform(0, 255, (4, 4, 3))
        img = np.kron(base, np.ones((6, 6, 1))) + rng.normal(0, 20, (24, 24, 3))
        sub = root / ("a" if k % 2 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(sub / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory, images):
    """Weights of each model as a trained one has them: a seeded initialisation whose
    BatchNorm statistics are those of the images (a trained model's match its data)."""
    from aows.train.data import get_data
    root = tmp_path_factory.mktemp("weights")
    data = get_data(str(images), RES, 8, workers=0, labels=False)
    out = {}
    from aows.models import load_model
    for name, make in (("unet", lambda: load_model(SPECS["unet"])), ("fpn_dict", fpn_dict),
                       ("fpn_list", fpn_list), ("cat_unet", lambda: load_model(SPECS["cat_unet"]))):
        torch.manual_seed(1)
        module = make().train()  # load_model gives eval mode, which would keep the statistics
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # the cumulative average over the batches
        with torch.no_grad():
            for x, _ in data.train(0):
                module(x)
        out[name] = str(root / f"{name}.pt")
        torch.save(module.state_dict(), out[name])
    return out


def test_distill_loss_per_output_kind():
    """Logits: KL of the softmaxes (0 for the same logits, shift-invariant); maps: the
    squared error over the teacher's mean square (1.0 for zeros); a dict sums its
    tensors; one value per image."""
    t = torch.randn(4, 5)
    assert torch.allclose(distill_loss(t + 3.0, t), torch.zeros(4), atol=1e-6)
    p, q = t.softmax(1), torch.randn(4, 5)
    kl = (p * (p.log() - q.log_softmax(1))).sum(1)
    assert torch.allclose(distill_loss(q, t), kl, atol=1e-6)
    m = torch.randn(4, 3, 6, 6)
    assert torch.allclose(distill_loss(torch.zeros_like(m), m).mean(), torch.tensor(1.0),
                          atol=1e-5)
    assert torch.allclose(distill_loss(2 * m, m).mean(), torch.tensor(1.0), atol=1e-5)
    both = distill_loss({"a": q, "b": torch.zeros_like(m)}, {"a": t, "b": m})
    assert both.shape == (4,) and torch.allclose(both, kl + distill_loss(0 * m, m))
    with pytest.raises(Exception, match="holds no tensor"):
        output_tensors({"a": [1, 2]})
    # a slice of a step's batch is measured on the whole batch's scale; a data set's
    # error does not depend on how it is cut into batches
    from aows.train.objective import DistillMeter, output_scales
    s_, t_ = torch.randn(4, 3, 6, 6), torch.randn(4, 3, 6, 6) * torch.tensor(
        [1.0, 1.0, 10.0, 10.0])[:, None, None, None]
    full = distill_loss(s_, t_)
    assert torch.allclose(distill_loss(s_[:2], t_[:2], output_scales(t_)), full[:2])
    one, two = DistillMeter(), DistillMeter()
    one.update({"m": s_, "c": q}, {"m": t_, "c": t})
    two.update({"m": s_[:2], "c": q[:2]}, {"m": t_[:2], "c": t[:2]})
    two.update({"m": s_[2:], "c": q[2:]}, {"m": t_[2:], "c": t[2:]})
    assert one.value()[0] == pytest.approx(two.value()[0]) and two.value()[1] == 4
    assert one.value()[0] == pytest.approx(float(full.mean() + kl.mean()), rel=1e-5)


@pytest.mark.parametrize("fn", ["fpn_dict", "fpn_list"])
def test_fpn_laterals_are_searched_and_supernet_equals_export(fn):
    """The pyramid's laterals and top-down additions are one searched width; the
    backbone's stages are searched; only the image and the outputs are held."""
    module = {"fpn_dict": fpn_dict, "fpn_list": fpn_list}[fn]()
    space = extract(module, (3, RES, RES))
    held = {h["name"] for h in space.held_fixed()}
    searched = {space.names[v] for v in space.searchable}
    assert {"c1.0", "c2.0", "c3.0"} <= searched, searched
    assert any(n.startswith("lat") for n in searched), searched
    assert held == {"image", "out1", "out2", "out3"}, held
    sup = ModuleSupernet(space, module=module).eval()
    rng = np.random.default_rng(0)
    x = torch.randn(2, 3, RES, RES)
    for cfg in [space.widest(), space.narrowest(), *space.uniform_sample(rng, 3)]:
        with torch.no_grad():
            a = output_tensors(sup(x, cfg))
            b = output_tensors(sup.export(cfg).eval()(x))
        assert all(torch.allclose(u, v, atol=1e-5) for u, v in zip(a, b)), cfg


def _code(argv) -> int:
    """The exit code of ``aows ARGV`` (argparse's errors exit, aows's return 2)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def _train(tmp_path, model, w, data, *extra):
    return main(["train", "--model", model, "--weights", w, "--input-shape", f"3,{RES},{RES}",
                 "--data", str(data), "--objective", "distill", "--epochs", "2",
                 "--batch-size", "8", "--sampled", "2", "--workers", "0", "--no-progress",
                 "--schedule", "constant", "--out", str(tmp_path), *extra])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["unet", "fpn_dict", "cat_unet"])
def test_train_on_images_alone_resumes_exactly_and_exports(model, images, weights, tmp_path,
                                                          capsys):
    """`aows train --objective distill` on a folder of images: two epochs; a run stopped
    after its first epoch and resumed ends with the same unaries; the widest
    configuration scores above the narrowest; the export at the decoded widths loads,
    runs, and keeps the model's output structure. ``cat_unet``: skips concatenated, each
    branch searched."""
    spec = SPECS.get(model, f"{HERE}:{model}")
    full = tmp_path / "full"
    assert _train(full, spec, weights[model], images) == 0
    metrics = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and "acc_max" not in metrics[0]
    assert metrics[-1]["val_distill_widest"] < metrics[-1]["val_distill_narrowest"]
    unaries = json.loads((full / "unaries.json").read_text())
    u = [np.asarray(v) for v in unaries["unaries"]]
    assert sum(v[-1] for v in u) > sum(v[0] for v in u)  # widest above narrowest

    part = tmp_path / "part"
    assert _train(part, spec, weights[model], images, "--epochs", "1") == 0
    ckpt = torch.load(part / "checkpoint.pt", weights_only=True)
    ckpt["config"]["epochs"] = 2  # the same run, stopped after its first epoch
    torch.save(ckpt, part / "checkpoint.pt")
    assert _train(part, spec, weights[model], images, "--resume") == 0
    assert json.loads((part / "unaries.json").read_text())["unaries"] == unaries["unaries"]

    out = tmp_path / "final"
    from aows.catalogue import space_from_description
    narrow = space_from_description(unaries["space"], trust=True).narrowest()
    assert main(["export", "--run", str(full), "--config", ",".join(map(str, narrow)),
                 "--data", str(images), "--batch-size", "8", "--trust-model-code",
                 "--out", str(out)]) == 0
    from aows.final import load_final
    net = load_final(out, trust_model_code=True)[0].eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, RES, RES))
    assert type(y) is (dict if model == "fpn_dict" else torch.Tensor)

    # its quality is its distillation error against the original (no labels needed);
    # top-1 alone is refused for outputs that are not class scores
    capsys.readouterr()
    ev = ["evaluate", str(out), "--data", str(images), "--batch-size", "8",
          "--trust-model-code"]
    assert main([*ev, "--model", spec, "--weights", weights[model], "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["distill"] > 0 and res["agreement"] is None and res["images"] == 4
    assert _code(ev) == 2 and "evaluate FINAL --model" in capsys.readouterr().err
    if model != "unet":
        return
    # fine-tuned to the original's outputs, no labels; its record is what evaluate says
    assert main(["finetune", str(out), "--data", str(images), "--model", spec, "--weights",
                 weights[model], "--epochs", "2", "--batch-size", "8", "--no-progress",
                 "--trust-model-code"]) == 0
    tuned = json.loads((out / "finetuned" / "config.json").read_text())
    capsys.readouterr()
    assert main(["evaluate", str(out / "finetuned"), "--data", str(images), "--batch-size",
                 "8", "--trust-model-code", "--model", spec, "--weights", weights[model],
                 "--json"]) == 0
    after = json.loads(capsys.readouterr().out)["distill"]
    assert after == pytest.approx(tuned["distill"]) and after < res["distill"]


def test_user_loss_from_a_file(images, weights, tmp_path):
    """--loss FILE.py:FUNCTION trains the widest on the user's per-image loss (the
    objective follows from --loss; the data's labels are its targets); a loss that is not
    per image is one clear error."""
    spec = f"{UNET}:unet"
    base = ["train", "--model", spec, "--weights", weights["unet"], "--input-shape",
            f"3,{RES},{RES}", "--data", "fake", "--epochs", "1", "--batch-size", "8",
            "--workers", "0", "--no-progress", "--no-val"]
    assert main([*base, "--loss", f"{HERE}:my_loss", "--out", str(tmp_path / "a")]) == 0
    rec = json.loads((tmp_path / "a" / "metrics.jsonl").read_text())
    assert rec["loss_max"] > 0 and "acc_max" not in rec
    assert _code([*base, "--loss", f"{HERE}:scalar_loss", "--out", str(tmp_path / "b")]) == 2


@pytest.mark.parametrize("case, expected", [
    ("labels", "--objective distill"),
    ("missing_loss", "has no function 'nope'"),
    ("no_tensor", "holds no tensor"),
    ("builtin", "built-in space"),
])
def test_bad_input_is_one_clear_error(case, expected, images, weights, tmp_path, capsys):
    args = {"labels": ["--model", f"{UNET}:unet", "--weights", weights["unet"]],
            "missing_loss": ["--model", f"{UNET}:unet", "--loss", f"{HERE}:nope"],
            "no_tensor": ["--model", f"{HERE}:no_tensor", "--objective", "distill"],
            "builtin": ["--space", "mobilenet_v1", "--objective", "distill"]}[case]
    shape = ["--resolution", "32"] if case == "builtin" else ["--input-shape",
                                                                  f"3,{RES},{RES}"]
    data = "fake" if case == "missing_loss" else str(images)  # a loss reads the labels
    assert _code(["train", *args, *shape, "--data", data, "--epochs", "1",
                  "--batch-size", "8", "--workers", "0", "--no-progress",
                  "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err, err


@pytest.mark.slow
def test_run_pipeline_without_labels(images, weights, tmp_path):
    """`aows run` with `train.objective: distill` on a dict-output model and a folder of
    images: every stage runs; the report's quality is the distillation error against the
    model (0 for the model itself), before and after fine-tuning by distillation."""
    import yaml

    from tests.test_pipeline import TINY
    cfg = {**TINY, "model": f"{HERE}:fpn_dict",
           "space": {"input_shape": [3, RES, RES], "weights": weights["fpn_dict"]},
           "data": {"name": str(images), "batch_size": 8, "workers": 0},
           "train": {**TINY["train"], "objective": "distill"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["objective"] == "distill" and report["original"]["distill"] == 0.0
    for m in report["methods"].values():
        assert m["top1"] is None and m["distill"] > 0 and m["distill_before_finetune"] > 0
    md = (tmp_path / "run" / "report.md").read_text()
    assert "| distillation error |" in md and "no labels used" in md
    assert (tmp_path / "run" / "final" / "ows" / "model.onnx").exists()


def test_dense_quickstart_config_and_demo_models():
    """`aows quickstart --dense` runs the quickstart's settings on aows.demo's U-Net,
    without labels; the demo models' widths are searched and their supernets equal their
    exports; the segmentation target labels ink with the digit, the rest background."""
    from aows.config import dense_quickstart_config, quickstart_config
    from aows.demo import MODEL_FILE, cat_unet, fpn, segmentation_target, unet
    cfg, base = dense_quickstart_config("w.pt"), quickstart_config()
    assert cfg.model == f"{MODEL_FILE}:cat_unet" and cfg.train.objective == "distill"
    assert cfg.space.weights == "w.pt" and cfg.space.input_shape == [3, 32, 32]
    assert cfg.train.epochs == base.train.epochs and cfg.latency == base.latency
    for make, outputs in ((unet, 1), (cat_unet, 1), (fpn, 3)):
        module = make()
        space = extract(module, (3, RES, RES))
        assert space.n_searchable >= 6
        assert len([h for h in space.held_fixed() if h["name"] != "image"]) == outputs
        sup = ModuleSupernet(space, module=module).eval()
        cfg_ = space.uniform_sample(np.random.default_rng(0), 1)[0]
        x = torch.randn(2, 3, RES, RES)
        with torch.no_grad():
            a, b = output_tensors(sup(x, cfg_)), output_tensors(sup.export(cfg_).eval()(x))
        assert all(torch.allclose(u, v, atol=1e-5) for u, v in zip(a, b))
    x = -torch.ones(2, 3, 4, 4)
    x[0, :, 1, 1] = 1.0  # one ink pixel in the first image
    t = segmentation_target(x, torch.tensor([7, 3]), (4, 4))
    assert t[0, 1, 1] == 7 and (t[0].flatten()[[0, 2, 3]] == 10).all() and (t[1] == 10).all()


def test_a_dict_output_model_is_timed_with_onnx_runtime(tmp_path):
    """Every output of a multi-output ONNX graph (named by the dict's keys) is bound when
    timing."""
    from aows.latency.store import read_samples
    out = tmp_path / "s.jsonl"
    assert main(["latency", "generate", "--model", f"{HERE}:fpn_dict", "--input-shape",
                 f"3,{RES},{RES}", "--backend", "onnxruntime", "--uniform", "--count", "3",
                 "--warmup", "1", "--rounds", "2", "--runs", "1", "--chunk", "3", "-q",
                 "-o", str(out)]) == 0
    assert len(read_samples(out)) == 3


def test_the_remote_runner_gets_graphs_without_weights(tmp_path):
    """What a remote target receives: the graph without its weight tensors (vectors such
    as BatchNorm statistics keep their values); the runner makes them (uniform within
    1 / sqrt(fan-in)) as the graph's external data and binds every output."""
    import onnx

    from aows.latency import remote_runner as runner
    from aows.latency.remote import split_weights
    from aows.onnx_export import onnx_bytes
    data = onnx_bytes(fpn_dict().eval(), (1, 3, RES, RES))
    graph, weights = split_weights(data)
    assert weights and len(graph) < len(data) / 3
    model = onnx.load_from_string(graph)
    kept = [t for t in model.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    assert all(len(t.dims) < 2 or len(t.raw_data) < 4096 for t in kept)
    assert len(kept) + len(weights) == len(model.graph.initializer)
    folder = tmp_path / "net"
    path = runner.materialise(graph, weights, str(folder))
    made = np.fromfile(folder / runner.WEIGHTS_FILE, dtype=np.float32)
    for offset, count, fan_in in weights:
        w = made[offset // 4:offset // 4 + count]
        assert 0 < np.abs(w).max() <= fan_in ** -0.5 + 1e-6
    rt = runner.OnnxRuntime({"backend": "onnxruntime", "threads": 1, "dtype": "fp32"},
                            str(tmp_path))
    x = np.random.default_rng(0).standard_normal((1, 3, RES, RES)).astype(np.float32)
    assert rt.prepare(path, x)() > 0
