"""Any model -> width graph -> supernet -> the user's own module, smaller (aows.extract)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from aows.catalogue import get_space
from aows.cli import main
from aows.nn import build_network
from aows.nn.supernet import make_supernet
from aows.space import SpaceError

ZOO = str(Path(__file__).with_name("zoo.py"))
TORCHVISION = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small",
               "efficientnet_b0", "regnet_x_400mf"]


def _configs(space, n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [space.widest(), space.narrowest(), *space.uniform_sample(rng, n - 2)]


def _check_supernet_equals_export(space, res, atol=1e-4):
    """The supernet at a configuration computes what the exported plain module does."""
    torch.manual_seed(0)
    sup = make_supernet(space).eval()
    x = torch.randn(2, 3, res, res)
    for cfg in _configs(space):
        with torch.no_grad():
            a = sup(x, cfg)
            plain = sup.export(cfg).eval()
            b = plain(x)
        assert type(plain) is type(sup.net)  # the user's own class
        assert (a - b).abs().max().item() <= atol, cfg
        # physically smaller: the parameters of the exported module shrink with the widths
        if cfg == space.narrowest():
            assert sum(p.numel() for p in plain.parameters()) < \
                sum(p.numel() for p in sup.net.parameters())
    return sup


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "resnet50"
                                  else n for n in TORCHVISION])  # the largest: full tier
def test_torchvision_models(name):
    pytest.importorskip("torchvision", reason="torchvision models")
    space = get_space(f"torchvision:{name}", resolution=64, classes=10)
    held = {h["name"]: h["reasons"] for h in space.held_fixed()}
    assert held["image"] == ["the input image's channels"]
    assert any("output" in r for rs in held.values() for r in rs)
    assert space.n_searchable >= 5
    _check_supernet_equals_export(space, 64)
    if name == "regnet_x_400mf":  # grouped convs: their widths are held, with the reason
        assert any("grouped conv" in r for rs in held.values() for r in rs)
    if name in ("mobilenet_v3_small", "efficientnet_b0"):  # SE gates are tied, not held
        assert any(layer.op == "mul" for layer in space.layers)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"])
def test_torchvision_segmentation_models(name):
    """Segmenters by name (their backbones not downloaded): a dict of maps out, the
    output's classes held, DeepLabV3's ASPP branches searched through its concatenation,
    the supernet equal to the export."""
    pytest.importorskip("torchvision", reason="torchvision models")
    space = get_space(f"torchvision:{name}", resolution=64, classes=5)
    held = {h["name"]: h["reasons"] for h in space.held_fixed()}
    assert held["image"] == ["the input image's channels"] and len(held) == 2
    assert space.n_searchable >= 25
    assert bool(space.concats) == name.startswith("deeplabv3")
    torch.manual_seed(0)
    sup = make_supernet(space).eval()
    x = torch.randn(2, 3, 64, 64)
    for cfg in _configs(space, n=3):
        with torch.no_grad():
            a, b = sup(x, cfg), sup.export(cfg).eval()(x)
        assert list(a) == list(b) == ["out"] and a["out"].shape == (2, 5, 64, 64)
        assert (a["out"] - b["out"]).abs().max().item() <= 1e-4, cfg


@pytest.mark.slow
def test_a_torchvision_detectors_backbone_is_searched_and_goes_back_in(tmp_path):
    """``torchvision:DETECTOR.backbone``: the backbone and feature pyramid, from a whole
    detector's weights; its pyramid's channels (what the heads read) held; the exported
    backbone, smaller, put back into the detector, which then detects."""
    tv = pytest.importorskip("torchvision", reason="torchvision models")
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    with pytest.raises(SpaceError, match=rf"torchvision:{name}\.backbone"):
        get_space(f"torchvision:{name}", resolution=64)
    torch.manual_seed(0)
    det = tv.models.get_model(name, weights=None, weights_backbone=None, num_classes=3).eval()
    torch.save(det.state_dict(), tmp_path / "detector.pt")  # the whole detector's tensors
    space = get_space(f"torchvision:{name}.backbone", resolution=64, classes=3,
                      weights=str(tmp_path / "detector.pt"))
    held = [h for h in space.held_fixed() if h["name"] != "image"]
    assert held and all(any("output" in r for r in h["reasons"]) for h in held)
    assert space.n_searchable >= 25
    sup = make_supernet(space).eval()
    x = torch.randn(1, 3, 64, 64)
    cfg = space.uniform_sample(np.random.default_rng(0), 1)[0]
    small = sup.export(cfg).eval()
    with torch.no_grad():
        widest, want = sup(x, space.widest()), det.backbone(x)  # the detector's weights
        a, b = sup(x, cfg), small(x)
    assert list(widest) == list(want) and all(torch.allclose(widest[k], want[k], atol=1e-5)
                                              for k in want)
    assert all((a[k] - b[k]).abs().max() <= 1e-4 for k in a)
    size = sum(p.numel() for p in det.backbone.parameters())
    det.backbone = small
    assert sum(p.numel() for p in det.backbone.parameters()) < size
    with torch.no_grad():
        found = det([torch.rand(3, 96, 96)])[0]
    assert set(found) == {"boxes", "labels", "scores"}


@pytest.mark.slow
@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_onnx(name, tmp_path):
    pytest.importorskip("torchvision", reason="torchvision models")
    pytest.importorskip("onnxruntime", reason="ONNX Runtime check")
    from aows.final import export_onnx
    space = get_space(f"torchvision:{name}", resolution=64, classes=10)
    cfg = space.uniform_sample(np.random.default_rng(1), 1)[0]
    diff = export_onnx(build_network(space, cfg).eval(), space, tmp_path / "m.onnx")
    assert diff is not None and diff <= 1e-4


def _same_graph(a, b):
    """Layer by layer: same op, kernel, stride, resolution, bias, activation, the same
    variables (up to renaming) with the same choices, and the same dataflow."""
    assert a.n_layers == b.n_layers and a.n_vars == b.n_vars
    vmap, lmap = {}, {"image": "image"}
    for i, (x, y) in enumerate(zip(a.layers, b.layers)):
        assert (x.op, x.kernel, x.stride, x.in_res, x.bias, x.act) == \
            (y.op, y.kernel, y.stride, y.in_res, y.bias, y.act), (x, y)
        assert x.type_key == y.type_key
        for u, v in ((a.src(i), b.src(i)), (a.dst(i), b.dst(i))):
            assert vmap.setdefault(u, v) == v, (x, y)
            assert a.choices[u] == b.choices[v], x.name
        ins_a = x.inputs or ((a.layers[i - 1].name,) if i else ("image",))
        ins_b = y.inputs or ((b.layers[i - 1].name,) if i else ("image",))
        assert sorted(lmap[n] for n in ins_a) == sorted(ins_b), (x, y)  # a sum commutes
        lmap[x.name] = y.name
    assert len(set(vmap.values())) == a.n_vars


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_extracted_graph_is_the_builtin_space(name):
    pytest.importorskip("torchvision", reason="torchvision models")
    got = get_space(f"torchvision:{name}", resolution=64, classes=10)
    want = get_space(name, resolution=64, classes=10, max_width=1.0, levels=9)
    _same_graph(got, want)


def test_residual_and_concatenation():
    space = get_space(f"{ZOO}:res_cat", resolution=32)
    names = [space.names[v] for v in space.searchable]
    # the stem/residual group is one variable; the concatenated branches are searched
    assert names == ["stem.0", "conv1", "left", "right", "head.0"]
    cat = space.layers[[x.op for x in space.layers].index("cat")].dst
    assert [space.names[p] for p in space.parts[cat]] == ["left", "right"]
    assert {h["name"] for h in space.held_fixed()} == {"image", "fc"}
    add = next(x for x in space.layers if x.op == "add")
    assert add.act == "relu" and space.src(space.layers.index(add)) == 1
    _check_supernet_equals_export(space, 32)


@pytest.mark.slow
def test_file_model_end_to_end(tmp_path, capsys):
    """train (from the module's weights) -> search -> export folder -> rebuilt from the
    user's function and tensors only -> ONNX."""
    from aows.latency.fit import flops_vector
    from aows.latency.model import LatencyModel
    run, final = tmp_path / "run", tmp_path / "final"
    common = ["--model", f"{ZOO}:res_cat", "--resolution", "32"]
    assert main(["train", *common, "--data", "fake", "--epochs", "1", "--batch-size", "16",
                 "--out", str(run), "--no-progress", "--no-val"]) == 0
    space = get_space(f"{ZOO}:res_cat", resolution=32, classes=4)  # fake data: 4 classes
    f = flops_vector(space)
    lat = LatencyModel.from_unknowns(space, 0.01 + f / f.max(), "synthetic", {})
    lat.save(tmp_path / "lat.json")
    budget = (lat.predict(space.narrowest()) + lat.predict(space.widest())) / 2
    capsys.readouterr()
    assert main(["search", "--latency", str(tmp_path / "lat.json"), "--unaries",
                 str(run / "unaries.json"), "--budget", f"{budget:.4f}", "--json"]) == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert lat.predict(cfg) <= budget
    # the run folder names tests/zoo.py: its code runs only when the user says so
    export = ["export", "--run", str(run), "--config", ",".join(map(str, cfg)), "--data",
              "fake", "--out", str(final), "--onnx"]
    capsys.readouterr()
    assert main(export) == 2
    assert "--trust-model-code" in capsys.readouterr().err and not final.exists()
    assert main([*export, "--trust-model-code"]) == 0
    from aows.final import load_final
    net, space, config = load_final(final, trust_model_code=True)
    assert list(config) == cfg and type(net).__name__ == "ResCat"
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    sup = make_supernet(space)
    sup.load_state_dict(ckpt["model"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = sup.export(cfg).eval()
        plain.load_state_dict(net.state_dict())  # the saved BN statistics
        assert torch.allclose(plain(x), net(x), atol=1e-5)


def test_supernet_starts_from_the_models_weights():
    space = get_space(f"{ZOO}:res_cat", resolution=32)
    module = space.load_module()
    sup = make_supernet(space).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(sup(x, space.widest()), module(x))
        scratch = make_supernet(space, scratch=True).eval()
        assert not torch.allclose(scratch(x, space.widest()), module(x))


@pytest.mark.parametrize("model, words", [
    ("missing.py:f", "does not exist"),
    (f"{ZOO}:nothing_here", "has no function 'nothing_here'"),
    (f"{ZOO}:not_a_module", "not a torch.nn.Module"),
    (f"{ZOO}:untraceable", "cannot be traced by torch.fx"),
    (f"{ZOO}:fixed_size", "does not run on an input of shape"),
])
def test_bad_models_are_one_clear_error(model, words, capsys):
    assert main(["space", "show", "--model", model, "--resolution", "32"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_weights_of_another_model(tmp_path, capsys):
    from tests.zoo import res_cat
    torch.save(res_cat(num_classes=5).state_dict(), tmp_path / "w.pt")
    assert main(["space", "show", "--model", f"{ZOO}:res_cat", "--weights",
                 str(tmp_path / "w.pt"), "--classes", "10"]) == 2
    assert "does not fit model" in capsys.readouterr().err
    with pytest.raises(SpaceError, match="max_width"):
        get_space(f"{ZOO}:res_cat", max_width=1.5)


def test_flattened_map_is_held_not_sliced():
    space = get_space(f"{ZOO}:fixed_size", resolution=8)
    held = {h["name"]: " ".join(h["reasons"]) for h in space.held_fixed()}
    assert "does not slice" in held["0"] and space.n_searchable == 0


def test_a_pool_read_twice_is_one_layer():
    space = get_space(f"{ZOO}:two_heads", resolution=32)
    ops = [x.op for x in space.layers]
    assert ops.count("gap") == 1 and ops.count("mul") == 1 and ops[-1] == "linear"
    # the gate ties the stem to up's output; a and b are tied by their sum
    assert [space.names[v] for v in space.searchable] == ["stem", "a"]
    _check_supernet_equals_export(space, 32)


def test_batchnorm_subclass_is_sliced_with_its_own_forward():
    space = get_space(f"{ZOO}:bn_act", resolution=32)
    assert space.n_searchable == 2 and not [h for h in space.held_fixed()
                                            if "does not slice" in " ".join(h["reasons"])]
    sup = _check_supernet_equals_export(space, 32)
    cfg = space.narrowest()
    calib = [torch.randn(8, 3, 32, 32) for _ in range(2)]
    plain = sup.export(cfg, calibration=calib)
    # the user's class (their file is imported under its own module name)
    assert type(plain[1]).__name__ == "BNAct" and plain[1].num_features == cfg[0]
    assert not torch.equal(plain[1].running_mean, sup.net[1].inner.running_mean[:cfg[0]])


@pytest.mark.parametrize("kind, held", [
    ("dict", "c2"),           # a feature map returned in a nested output keeps its width
    ("chunk", "c1"),          # channels split into several tensors
    ("hook", "c2"),           # a forward hook aows would drop
    ("weight_norm", "c2"),    # parametrized weights are not the tensors aows slices
    ("alias", None),          # one conv under two attribute names
    ("pool_size", None),      # a pool kernel read from x.size(); and forward(x, scale=1.0)
])
def test_odd_forwards_are_held_or_sliced_right(kind, held):
    from aows.extract import extract
    from tests.zoo import odd
    space = extract(odd(kind), (3, 16, 16))
    names = {h["name"] for h in space.held_fixed()}
    if held:
        assert held in names
    else:
        assert space.n_searchable == 2
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    from aows.nn.modelnet import ModuleSupernet
    sup = ModuleSupernet(space, module=odd(kind)).eval()  # not from a name: given
    for cfg in _configs(space, 4):
        with torch.no_grad():
            a, b = sup(x, cfg), sup.export(cfg).eval()(x)
        a, b = (a["features"][0], b["features"][0]) if kind == "dict" else (a, b)
        assert torch.allclose(a, b, atol=1e-5)
        if kind == "dict":
            assert a.shape[1] == 32


def test_a_training_only_branch_is_in_the_graph():
    """An auxiliary head that only runs in training reads a searchable width: it is
    traced (as in training) and sliced with it."""
    from aows.extract import extract
    from aows.nn.modelnet import ModuleSupernet
    from tests.zoo import odd
    space = extract(odd("aux").eval(), (3, 16, 16))
    assert space.n_searchable == 2
    sup = ModuleSupernet(space, module=odd("aux")).train()
    out, aux = sup(torch.randn(2, 3, 16, 16), space.narrowest())
    assert out.shape == aux.shape == (2, 10)


def test_space_show_lists_modules_and_what_is_held(capsys):
    assert main(["space", "show", "--model", f"{ZOO}:res_cat", "--resolution", "32",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    stem = next(v for v in out["variables"] if v["name"] == "stem.0")
    mods = {m["module"]: m["role"] for m in stem["modules"]}
    # the stem conv writes it, conv2 writes it too (the residual), conv1 and the
    # concatenated branches read it, its BatchNorms are tied to it
    assert mods["stem.0"] == "out" and mods["conv2"] == "out" and mods["conv1"] == "in"
    assert mods["stem.1"] == "tied" and mods["bn2"] == "tied"
    assert {h["name"] for h in out["held"]} == {"image", "fc"}
    cat = next(v for v in out["variables"] if v["name"] == "cat")
    assert cat["concatenates"] == ["left", "right"]
    assert main(["space", "show", "--model", f"{ZOO}:res_cat", "--resolution", "32"]) == 0
    out = capsys.readouterr().out
    assert "held fixed" in out and "concat      left + right" in out


def test_extract_leaves_the_module_as_it_found_it():
    from aows.extract import extract
    from tests.zoo import res_cat
    m = res_cat().train()
    m.bn1.eval()  # a BatchNorm the user froze
    before = {k: v.clone() for k, v in m.state_dict().items()}
    modes = [x.training for x in m.modules()]
    extract(m, (3, 32, 32))
    assert [x.training for x in m.modules()] == modes
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())


class _Swish(torch.nn.Module):
    """An activation through a function aows does not know (erf): held unless
    registered."""

    def forward(self, x):
        return x * torch.special.erf(x)


class _WithSwish(torch.nn.Module):
    """A conv followed by a module aows does not know, then another conv."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 32, 3, 1, 1)
        self.act = _Swish()
        self.c2 = torch.nn.Conv2d(32, 32, 3, 1, 1)
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.c2(self.act(self.c1(x))).mean((2, 3)))


def test_register_teaches_the_tracer_a_module():
    """A registered module type is traced whole with its rule: the width it touches is
    searched instead of held, and the supernet still equals the export."""
    from aows.extract import extract, register, rules
    module = _WithSwish()
    before = extract(module, (3, 16, 16))
    assert "c1" not in [before.names[v] for v in before.searchable]
    try:
        register(_Swish)
        after = extract(module, (3, 16, 16))
    finally:
        rules.MODULE_RULES.pop(_Swish, None)
        rules._REGISTERED.discard(_Swish)
    assert "c1" in [after.names[v] for v in after.searchable]
    with pytest.raises(SpaceError, match="give 'passthrough'"):
        register(_Swish, "magic")
