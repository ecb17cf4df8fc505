"""Concatenations searched: each branch's width a variable of its own, read at its offset
in the concatenation (an index map), in the supernet, the export, the channel order, the
latency terms and the search."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from aows.brute import configurations
from aows.catalogue import get_space
from aows.extract import extract
from aows.latency.fit import fit, flops_vector
from aows.latency.model import LatencyModel
from aows.latency.store import Samples
from aows.models import load_model
from aows.nn.modelnet import ModuleSupernet
from aows.solve import Problem, search

from . import zoo
from .test_importance import _trained_like

ZOO = str(Path(__file__).with_name("zoo.py"))


def _masked(space, module, config, x):
    """The full module with every planned module's output channels that ``config`` drops
    set to zero: what the narrow network computes, by an independent route (no slicing)."""
    widths = space.full_widths(config)
    hooks = []
    for name, _, _, b in space.plan:
        keep = space.channel_index(b, widths) or list(range(widths[b]))
        mask = torch.zeros(space.choices[b][-1])
        mask[keep] = 1

        def hook(_, __, out, mask=mask):
            shape = (1, -1) + (1,) * (out.dim() - 2)
            return out * mask.view(shape)
        hooks.append(module.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            return module.eval()(x)
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("make,parts", [
    (lambda: zoo.cat_unet(), [["mid.0", "enc2.0"], ["dec2.0", "enc1.0"]]),
    (lambda: zoo.cat_unet("deconv"), [["up2", "enc2.0"], ["up1", "enc1.0"]]),
    (lambda: zoo.cat3(), [["a", "b", "c"], ["a", "b", "c", "mix"]]),
], ids=["unet-interpolate", "unet-deconv", "three-branches"])
def test_concatenated_branches_are_searched_and_sliced_at_their_offsets(make, parts):
    """Two and three branches, a concatenation of a concatenation, a BatchNorm, a
    depthwise conv and a classifier on a concatenation: every branch searchable; the
    supernet at random widths equals its export and the full module with the dropped
    channels zeroed."""
    module = _trained_like(make())
    space = extract(module, (3, 32, 32), name="m")
    assert [[space.names[p] for p in ps] for _, ps in space.concats] == parts
    assert {h["name"] for h in space.held_fixed()} <= {"image", "head", "fc"}
    assert not space.linearised  # small enough to search exactly
    sup = ModuleSupernet(space, module=copy.deepcopy(module)).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for cfg in [space.narrowest(), *space.uniform_sample(np.random.default_rng(0), 5)]:
        with torch.no_grad():
            a = sup(x, cfg)
            b = sup.export(cfg).eval()(x)
        assert torch.allclose(a, b, atol=1e-5), cfg
        assert torch.allclose(b, _masked(space, module, cfg, x), atol=1e-4), cfg


def test_training_updates_the_statistics_of_a_norm_on_a_concatenation():
    """A BatchNorm on a concatenation at a narrow configuration updates the running
    statistics of exactly the channels it read."""
    space = get_space(f"{ZOO}:cat3", resolution=32)
    sup = ModuleSupernet(space).train()
    bn = sup.net.bn
    before = bn.running_mean.clone()
    cfg = space.narrowest()
    sup(torch.randn(4, 3, 32, 32), cfg)
    v = space.layers[[x.name for x in space.layers].index("dw")].src
    kept = space.channel_index(v, space.full_widths(cfg))
    changed = torch.nonzero(bn.running_mean != before).flatten().tolist()
    assert changed == kept


@pytest.mark.slow
def test_densenet121_searches_its_growth_widths():
    """DenseNet-121 at 32 px: every layer's growth width and bottleneck searchable (today
    both), and the supernet equals its export at random configurations."""
    module = load_model("torchvision:densenet121", 10).eval()
    held = extract(module, (3, 32, 32), name="d", search_concat=False, verify=False)
    space = extract(module, (3, 32, 32), name="d")
    assert held.n_searchable == 58 and space.n_searchable >= 2 * held.n_searchable
    assert len(space.concats) == 62  # 58 layers' inputs, 3 transitions', the classifier's
    assert space.linearised  # too wide to eliminate exactly: the search says so
    sup = ModuleSupernet(space, module=module).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for cfg in space.uniform_sample(np.random.default_rng(1), 2):
        with torch.no_grad():
            assert torch.allclose(sup(x, cfg), sup.export(cfg).eval()(x), atol=1e-4)


def _additive_truth(space, configs):
    """Latencies of a known per-layer law in the concatenated width itself:
    1 + 2e-6 * c_in * c_out per conv (c_in the whole concatenation), 0.5 + 0.01 c for
    the others, as a runtime would take them."""
    out = []
    for cfg in configs:
        w = space.full_widths(cfg)
        t = 0.0
        for i, layer in enumerate(space.layers):
            cin, cout = w[space.src(i)], w[space.dst(i)]
            t += (0.05 + 2e-6 * cin * cout * layer.out_res ** 2 if layer.op == "conv"
                  else 0.02 + 1e-3 * cin)
        out.append(t)
    return np.array(out)


def test_the_terms_of_a_concatenation_fit_a_law_in_its_whole_width():
    """A conv's cost a + b c_in c_out with c_in the sum of the parts is what the terms
    per part represent (the first part carries a): the fit recovers such latencies on
    networks it has not seen."""
    space = get_space(f"{ZOO}:cat3", resolution=32)
    rng = np.random.default_rng(0)
    train, test = space.uniform_sample(rng, 120), space.uniform_sample(rng, 40)
    samples = Samples([tuple(c) for c in train], _additive_truth(space, train))
    model = fit(space, samples, K=10.0, smooth=1.0)
    pred, truth = model.predict_many(test), _additive_truth(space, test)
    assert np.abs(pred / truth - 1).max() < 0.01
    keys = {k for k, _, _ in space.unknowns()[0]}
    assert any(k.endswith("-cat") for k in keys) and any(k.endswith("-cat+") for k in keys)


def _dense_problem():
    space = get_space(f"{ZOO}:dense_block", resolution=32)
    f = flops_vector(space)
    rng = np.random.default_rng(3)
    x = 0.01 + f / f.max() * rng.uniform(0.8, 1.2, f.size)
    model = LatencyModel.from_unknowns(space, x, "synthetic", {})
    unaries = [np.sort(rng.uniform(0, 1, len(c))) for c in space.searchable_choices]
    return Problem(model, unaries)


def test_a_graph_too_wide_is_searched_by_relinearisation_and_says_so():
    """A dense block (every layer reads every earlier one): its latency terms are
    linearised, the search says it is not exact, its answers meet the budget under the
    full model and reach the brute-force optimum here."""
    problem = _dense_problem()
    space = problem.space
    assert space.linearised and problem.approximation
    allc = configurations(space.sizes)
    s, c = problem.evaluate(allc)
    assert np.allclose(c, problem.model.predict_indices(allc))
    lo, hi = c.min(), c.max()
    for frac in (0.2, 0.4, 0.6, 0.8):
        budget = lo + frac * (hi - lo)
        res = search(problem, budget)
        assert res["predicted_latency_ms"] <= budget and "approximation" in res
        best = s[c <= budget].max()
        assert res["score"] >= best - 1e-9 * abs(best)
        assert res["score"] >= search(problem, budget, "greedy")["score"]


def test_a_concatenation_searched_exactly_where_the_graph_allows():
    space = get_space(f"{ZOO}:cat_unet", resolution=32)
    f = flops_vector(space)
    model = LatencyModel.from_unknowns(space, 0.01 + f / f.max(), "synthetic", {})
    rng = np.random.default_rng(0)
    problem = Problem(model, [rng.uniform(0, 1, len(c)) for c in space.searchable_choices])
    assert problem.approximation is None
    allc = configurations(space.sizes)
    s, c = problem.evaluate(allc)
    for budget in np.quantile(c, [0.1, 0.5, 0.9]):
        res = search(problem, float(budget))
        assert res["score"] == pytest.approx(s[c <= budget].max())
        assert "approximation" not in res


def test_the_lookup_table_refuses_a_space_with_concatenations():
    """Layers timed alone have no parts of a concatenation: one clear error, nothing
    timed."""
    from aows.errors import AowsError
    from aows.latency.backends import Target
    from aows.latency.lut import build_lookup_table
    from aows.latency.protocol import Protocol
    space = get_space(f"{ZOO}:cat3", resolution=32)
    with pytest.raises(AowsError, match="read concatenations"):
        build_lookup_table(space, Target("torch-cpu", batch_size=1, threads=1), Protocol(),
                           progress=False)
