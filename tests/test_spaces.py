"""Residual search spaces: the width graph, plain and slimmable networks, space files."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from aows.catalogue import get_space
from aows.cli import main
from aows.latency.fit import design_matrix, fit
from aows.latency.model import LatencyModel
from aows.latency.sampling import BiasedSampler
from aows.latency.store import Samples
from aows.nn import build_network
from aows.nn.slimmable import SlimmableNetwork
from aows.solve import Problem, search
from aows.space import SearchSpace, SpaceError

RESIDUAL = ["resnet18", "resnet50", "mobilenet_v2"]


def counted_macs(net: nn.Module, x: torch.Tensor) -> float:
    """MACs of the module's own Conv2d and Linear layers (hooks on a real forward), plus
    the classifier's global pooling (c x r^2 additions), the count ``space.flops`` uses."""
    total = [0.0]

    def conv(m, inp, out):
        total[0] += out.numel() / out.shape[0] * m.in_channels // m.groups \
            * m.kernel_size[0] * m.kernel_size[1]

    def lin(m, inp, out):
        total[0] += m.in_features * m.out_features

    def pool(m, inp, out):
        total[0] += inp[0][0].numel()

    hooks = [m.register_forward_hook(conv) for m in net.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(lin) for m in net.modules() if isinstance(m, nn.Linear)]
    hooks += [m.register_forward_hook(pool) for m in net.modules()
              if isinstance(m, nn.AdaptiveAvgPool2d)]
    with torch.no_grad():
        net.eval()(x)
    for h in hooks:
        h.remove()
    return total[0]


@pytest.mark.parametrize("name", RESIDUAL)
def test_plain_network_runs_and_flops_match_its_layers(name):
    space = get_space(name, resolution=32, classes=7)
    rng = np.random.default_rng(0)
    for cfg in [space.narrowest(), *space.uniform_sample(rng, 2)]:
        net = build_network(space, cfg)
        x = torch.randn(2, 3, 32, 32)
        assert net.eval()(x).shape == (2, 7)
        assert space.flops(cfg) == pytest.approx(counted_macs(net, x[:1]))


def test_torchvision_layout_at_1x():
    """MACs of the 1.0x networks at 224 px: torchvision's published counts."""
    for name, gmacs in (("resnet18", 1.814), ("resnet50", 4.089), ("mobilenet_v2", 0.301)):
        space = get_space(name)
        one = dict(space.uniform_multiplier_configs())[1.0]
        assert space.flops(one) / 1e9 == pytest.approx(gmacs, abs=2e-3), name
    r18 = get_space("resnet18")
    assert r18.n_searchable == 12  # 4 stage widths + 8 block inner widths
    assert get_space("resnet50").n_searchable == 37  # stem + 4 stages + 2 x 16 blocks
    assert get_space("mobilenet_v2").n_searchable == 25  # stem, 7 stages, 16 t=6 blocks, last


def test_ties_stage_width_is_one_variable():
    space = get_space("resnet18", resolution=64)
    names = space.names
    s1 = names.index("layer1")
    writes = [space.layers[i].name for i in range(space.n_layers) if space.dst(i) == s1]
    assert writes == ["conv1", "maxpool", "layer1.0.conv2", "layer1.0.add", "layer1.1.conv2",
                      "layer1.1.add"]
    # a depthwise conv's input and output are one variable: a unary latency term
    mb2 = get_space("mobilenet_v2", resolution=64)
    dw = [i for i, layer in enumerate(mb2.layers) if layer.op == "dwconv"]
    assert dw and all(mb2.src(i) == mb2.dst(i) for i in dw)
    _, ids = mb2.unknowns()
    assert all(ids[i].ndim == 1 for i in dw)


@pytest.mark.parametrize("name", RESIDUAL)
def test_supernet_equals_exported_plain_network(name):
    space = get_space(name, resolution=32, classes=5)
    torch.manual_seed(0)
    sup = SlimmableNetwork(space)
    # non-trivial BN statistics, so slicing mistakes in them would show
    for m in sup.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    sup.eval()
    x = torch.randn(2, 3, 32, 32)
    for cfg in space.uniform_sample(np.random.default_rng(1), 3) + [space.narrowest()]:
        plain = sup.export(cfg).eval()
        with torch.no_grad():
            assert (sup(x, cfg) - plain(x)).abs().max() <= 1e-4


def test_graph_latency_model_fit_recovers_additive_latencies(tmp_path):
    """Synthetic latencies from known per-layer tables (shared by type): the fit on enough
    networks predicts new ones, and the model file (format 2) reads back the same."""
    space = get_space("resnet18", resolution=32, levels=4, classes=10)
    keys, _ = space.unknowns()
    rng = np.random.default_rng(0)
    from aows.latency.fit import flops_vector
    truth = 0.01 + flops_vector(space) * 1e-7 * rng.uniform(0.8, 1.2, len(keys))
    configs = [tuple(c) for c in space.uniform_sample(rng, 600)]
    y = design_matrix(space, configs) @ truth
    samples = Samples(configs, y)
    model = fit(space, samples, K=0.0, smooth=0.0)
    test = space.uniform_sample(rng, 50)
    want = design_matrix(space, test) @ truth
    np.testing.assert_allclose(model.predict_many(test), want, rtol=2e-3)
    path = tmp_path / "lat.json"
    model.save(path)
    obj = json.loads(path.read_text())
    assert obj["version"] == 2
    assert any(not isinstance(t[0], list) for t in obj["tables"])  # tied layers: vectors
    back = LatencyModel.load(path, space)
    np.testing.assert_allclose(back.predict_many(test), model.predict_many(test), atol=1e-6)


def test_biased_sampler_covers_every_unknown_of_a_residual_space():
    space = get_space("resnet18", resolution=32, levels=5)
    sampler = BiasedSampler(space)
    n = 0
    while sampler.coverage() < 1.0:
        sampler.next()
        n += 1
        assert n < 400
    # at least the largest table of a type divided by its layers per network
    keys, _ = space.unknowns()
    per_type = {}
    for t, *_ in keys:
        per_type[t] = per_type.get(t, 0) + 1
    layers = {}
    for layer in space.layers:
        layers[layer.type_key] = layers.get(layer.type_key, 0) + 1
    bound = max(-(-per_type[t] // layers[t]) for t in per_type)
    assert bound <= n <= 3 * bound


def test_search_on_residual_space_respects_budget_and_ties():
    space = get_space("resnet18", resolution=32, levels=5, classes=10)
    from aows.latency.fit import flops_vector
    x = 0.02 + flops_vector(space) * 2e-7
    model = LatencyModel.from_unknowns(space, x, "synthetic", {})
    rng = np.random.default_rng(3)
    unaries = [0.1 * np.log(np.array(c) / c[-1]) + rng.normal(0, 0.002, len(c))
               for c in space.searchable_choices]
    problem = Problem(model, unaries)
    lo, hi = model.predict(space.narrowest()), model.predict(space.widest())
    for frac in (0.2, 0.5, 0.8):
        budget = lo + frac * (hi - lo)
        res = {s: search(problem, budget, s) for s in ("exact", "lagrangian", "greedy",
                                                       "uniform")}
        for r in res.values():
            assert r["predicted_latency_ms"] <= budget + 1e-9
            space.validate(r["config"])
        assert res["exact"]["score"] >= max(r["score"] for r in res.values()) - 1e-9


def write(tmp_path, text):
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return str(p)


TINY = """
name: tiny
resolution: 32
classes: 10
variables:
  stem: 16
  inner: {choices: [8, 16, 24]}
layers:
  - {name: stem, op: conv, kernel: 3, out: stem}
  - {name: b1, op: conv, kernel: 3, out: inner}
  - {name: b2, op: conv, kernel: 3, out: stem, act: none}
  - {name: add, op: add, inputs: [b2, stem]}
  - {name: fc, op: linear, out: classes}
"""


def test_space_file_builds_a_residual_network(tmp_path):
    space = get_space(write(tmp_path, TINY))
    assert space.names == ("image", "stem", "inner", "classes")
    assert space.searchable_choices[1] == (8, 16, 24)
    net = build_network(space, (24, 8))
    assert net.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    again = SearchSpace.from_description(json.loads(json.dumps(space.describe())))
    assert again.fingerprint() == space.fingerprint()
    assert get_space(write(tmp_path, TINY), resolution=64).layers[0].in_res == 64


@pytest.mark.parametrize("edit,message", [
    (("out: inner}", "out: nowhere}"), "writes unknown variable 'nowhere'"),
    (("inputs: [b2, stem]", "inputs: [b2, b1]"), "whose width is variable 'inner'"),
    (("inputs: [b2, stem]", "inputs: [b2, later]"), "reads 'later', which is not a layer"),
    (("op: add", "op: concat"), "unknown op 'concat'"),
    (("kernel: 3, out: stem}", "kernel: 3, out: stem, groups: 2}"), "unknown keys"),
    (("stem: 16", "stem: -4"), "positive integer"),
    (("b2, op: conv, kernel: 3,", "b2, op: conv, kernel: 3, stride: 2,"),
     "reads 'stem' at 32 px but expects 16"),
])
def test_space_file_errors_are_one_clear_message(tmp_path, edit, message):
    path = write(tmp_path, TINY.replace(*edit))
    with pytest.raises(SpaceError, match=message):
        get_space(path)


def test_space_file_refuses_graphs_too_wide_to_solve_exactly(tmp_path):
    # layer c_ab maps width v_a to v_b for every pair a < b, and t_b adds them: the width
    # graph is a 6-clique, beyond what the exact solvers accept
    n = 6
    lines = ["resolution: 32", "variables:", *(f"  v{k}: 16" for k in range(n)), "layers:",
             "  - {name: t0, op: conv, out: v0}"]
    for b in range(1, n):
        for a in range(b):
            lines.append(f"  - {{name: c{a}{b}, op: conv, out: v{b}, inputs: [t{a}]}}")
        ins = ", ".join(f"c{a}{b}" for a in range(b))
        lines.append(f"  - {{name: t{b}, op: add, inputs: [{ins}]}}" if b > 1 else
                     "  - {name: t1, op: conv, out: v1, inputs: [c01]}")
    lines.append(f"  - {{name: fc, op: linear, out: classes, inputs: [t{n - 1}]}}")
    from aows.graph import GraphError
    with pytest.raises((SpaceError, GraphError), match="width"):
        get_space(write(tmp_path, "\n".join(lines) + "\n"))


def test_cli_space_show_and_latency_predict(tmp_path, capsys):
    assert main(["space", "show", "resnet18", "--resolution", "64", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    searchable = [r for r in rows if not r["fixed"]]
    assert len(searchable) == 12 and all("name" in r and "choices" in r for r in rows)
    assert {m["layer"] for m in rows[1]["layers"]} >= {"conv1", "layer1.0.conv2"}
    space = get_space("resnet18", resolution=32, classes=10, levels=3)
    from aows.latency.fit import flops_vector
    model = LatencyModel.from_unknowns(space, 0.01 + flops_vector(space) * 1e-7, "t", {})
    model.save(tmp_path / "lat.json")
    cfgs = [space.narrowest(), space.widest()]
    (tmp_path / "c.txt").write_text("\n".join(",".join(map(str, c)) for c in cfgs) + "\n")
    assert main(["latency", "predict", "--latency", str(tmp_path / "lat.json"),
                 "--file", str(tmp_path / "c.txt"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["config"] for o in out] == [list(c) for c in cfgs]
    assert out[0]["predicted_latency_ms"] == pytest.approx(model.predict(cfgs[0]))
    assert main(["latency", "predict", "--latency", str(tmp_path / "lat.json"), "1,2,3"]) == 2
    assert "searchable width variables" in capsys.readouterr().err


# ---------------------------------------------------------------- the chain keeps its results
DATA = "tests/data/cpu128"  # a copy of benchmarks/data/cpu128's model and samples


def test_mobilenet_v1_same_tables_from_the_committed_samples():
    """The committed benchmark model was fitted before width graphs existed: the same
    samples give the same tables (the file rounds to 1e-7 ms)."""
    from pathlib import Path

    from aows.latency.store import read_samples
    from aows.spaces import mobilenet_v1
    root = Path(__file__).resolve().parents[1] / DATA
    space = mobilenet_v1(resolution=128)
    old = LatencyModel.load(root / "latency.json", space)
    new = fit(space, read_samples(root / "train_biased.jsonl", space))
    assert max(np.abs(a - b).max() for a, b in zip(old.tables, new.tables)) < 1e-6


def test_mobilenet_v1_chain_and_graph_solvers_give_the_same_answers():
    from pathlib import Path

    from aows.graph import GraphBudgetProblem, WidthGraph
    from aows.solve import score_terms
    from aows.spaces import mobilenet_v1
    space = mobilenet_v1(resolution=128)
    model = LatencyModel.load(Path(__file__).resolve().parents[1] / DATA / "latency.json",
                              space)
    rng = np.random.default_rng(0)
    unaries = [0.1 * np.log(np.array(c) / c[-1]) + rng.normal(0, 0.005, len(c))
               for c in space.searchable_choices]
    chain = Problem(model, unaries).budget_problem
    unary, pairwise = space.cost_terms(model.tables)
    graph = GraphBudgetProblem(WidthGraph(score_terms(space, unaries), []),
                               WidthGraph(unary, pairwise))
    lo, hi = chain.fastest().cost, chain.best_unconstrained().cost
    for budget in np.linspace(lo, hi, 12)[1:-1]:
        a, b = chain.exact(budget), graph.exact(budget)
        assert a.score == pytest.approx(b.score, abs=1e-9) and b.cost <= budget
        la, lb = chain.lagrangian(budget), graph.lagrangian(budget)
        assert la.score == pytest.approx(lb.score, abs=1e-9)
    # the fronts as step functions (best score under every budget) agree; points that
    # tie to rounding (1e-15) may be kept by one summation order and not the other
    (_, ca, sa), (_, cb, sb) = chain.pareto_front(), graph.pareto_front()
    assert abs(len(ca) - len(cb)) <= 0.01 * len(ca)
    budgets = np.union1d(ca, cb) + 1e-9
    best_a = sa[np.searchsorted(ca, budgets, side="right") - 1]
    best_b = sb[np.searchsorted(cb, budgets, side="right") - 1]
    np.testing.assert_allclose(best_a, best_b, atol=1e-9)


# ------------------------------------------------------------- training and export
def test_aows_sampling_on_a_residual_space_concentrates_on_the_decode():
    from aows.train.sampler import sample_configs
    space = get_space("resnet18", resolution=32, levels=4, classes=10)
    from aows.latency.fit import flops_vector
    model = LatencyModel.from_unknowns(space, 0.02 + flops_vector(space) * 2e-7, "t", {})
    rng = np.random.default_rng(0)
    unaries = [0.1 * np.log(np.array(c) / c[-1]) for c in space.searchable_choices]
    budget = 0.5 * (model.predict(space.narrowest()) + model.predict(space.widest()))
    from aows.train.sampler import aows_chain
    graph, gamma = aows_chain(model, unaries, budget)
    mode, _ = graph.maxsum()  # the decode of u - gamma * latency
    lag = search(Problem(model, unaries), budget, "lagrangian")
    assert gamma > 0 and space.config_from_indices(mode) == tuple(lag["config"])
    idx = sample_configs(rng, 50, space, model, unaries, budget, temperature=1e-9)
    assert idx.shape == (50, space.n_searchable)
    assert (idx == mode[list(space.searchable)]).all()
    hot = sample_configs(rng, 200, space, model, unaries, budget, temperature=10.0)
    assert len({tuple(r) for r in hot}) > 100  # a high temperature spreads out


def test_train_export_and_reload_a_space_file_network(tmp_path):
    from aows.final import export_onnx, load_final, save_final
    from aows.train.data import fake_data
    from aows.train.loop import TrainConfig, train_supernet
    space = get_space(write(tmp_path, TINY), classes=4)
    data = fake_data(resolution=32, batch=8, classes=4, n=48)
    from aows.latency.fit import flops_vector
    model = LatencyModel.from_unknowns(space, 0.01 + flops_vector(space) * 1e-7, "t", {})
    budget = model.predict(space.median_config())
    cfg = TrainConfig(epochs=2, batch_size=8, method="aows", budget=budget, progress=False,
                      warmup_epochs=0)
    sup, stats = train_supernet(space, data.train, cfg, tmp_path / "run", model,
                                val_batches=data.val)
    unaries = json.loads((tmp_path / "run" / "unaries.json").read_text())["unaries"]
    assert [len(u) for u in unaries] == [len(c) for c in space.searchable_choices]
    config = search(Problem(model, stats.unaries()), budget)["config"]
    calib = [x for _, (x, _) in zip(range(2), data.train(0))]
    plain = sup.export(config, calibration=calib).eval()
    save_final(tmp_path / "final", plain, space, config)
    net, space2, config2 = load_final(tmp_path / "final")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), plain(x))
    assert export_onnx(net, space2, tmp_path / "final" / "model.onnx") <= 1e-4


@pytest.mark.slow
def test_exact_equals_milp_on_the_full_resnet50_space():
    """The built-in space itself (ties, shared layer types, unary terms of additions and
    pooling), FLOPs-shaped latency tables, realistic unaries: exact = MILP optimum."""
    from aows.latency.fit import flops_vector
    rng = np.random.default_rng(0)
    space = get_space("resnet50", resolution=224)
    f = flops_vector(space)  # latency a * FLOPs + b per layer type, 10 % noise per unknown
    model = LatencyModel.from_unknowns(space, 0.005 + 8e-9 * f * rng.uniform(0.9, 1.1, f.size),
                                       "synthetic", {})
    unaries = []  # concave in width, a per-variable importance, noise
    for c in space.searchable_choices:
        c, a = np.asarray(c, float), rng.uniform(0.02, 0.3)
        unaries.append(a * np.log(c / c.max()) + rng.normal(0, 0.05 * a, c.size))
    prob = Problem(model, unaries).budget_problem
    from tests.test_graph import milp_optimum
    assert prob.n == 39 and prob.plan.width == 2
    lo, hi = prob.fastest().cost, prob.best_unconstrained().cost
    for frac in (0.25, 0.6):
        budget = lo + frac * (hi - lo)
        ex = prob.exact(budget)
        assert ex.cost <= budget
        assert ex.score == pytest.approx(milp_optimum(prob, budget), abs=1e-6)
