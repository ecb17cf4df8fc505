"""Refining the latency model on the search's picks (tiny space, real timing), and the
weighted fit it relies on."""

import json

import numpy as np
import pytest

from aows.cli import main
from aows.latency.fit import Fitter, fit
from aows.latency.model import LatencyModel
from aows.latency.store import Samples, read_samples
from aows.refine import budget_range, picks, proxy_unaries, refine
from aows.spaces import mobilenet_v1

from .test_latency import synthetic_truth

PROTO = ["--warmup", "1", "--rounds", "2", "--runs", "1", "--chunk", "8"]


def test_weights_equal_repeated_networks():
    """A weight of w on a network is the same fit as that network timed w times."""
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5)
    rng = np.random.default_rng(0)
    x_true = synthetic_truth(space, rng)
    configs = space.uniform_sample(rng, 30)
    from aows.latency.fit import design_matrix
    y = design_matrix(space, configs) @ x_true * rng.uniform(0.95, 1.05, 30)
    w = rng.integers(1, 4, 30)
    f = Fitter(space)
    weighted = f.fit_x(configs, y, weights=w)
    repeated = f.fit_x([c for c, k in zip(configs, w) for _ in range(k)], np.repeat(y, w))
    np.testing.assert_allclose(weighted, repeated, rtol=1e-6, atol=1e-9)
    assert not np.allclose(weighted, f.fit_x(configs, y), rtol=1e-3)


def test_refine_samples_weigh_more_in_fit():
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5)
    rng = np.random.default_rng(1)
    x_true = synthetic_truth(space, rng)
    from aows.latency.fit import design_matrix
    configs = space.uniform_sample(rng, 40)
    y = design_matrix(space, configs) @ x_true
    y[:2] *= 1.3  # two networks timed slow, marked as refinement timings
    s = Samples(configs, y, None, ["refine"] * 2 + ["uniform"] * 38)
    heavy = fit(space, s, refine_weight=50.0)
    light = fit(space, s, refine_weight=1.0)
    assert heavy.meta["fit"]["refined_samples"] == 2
    err = lambda m: np.abs(m.predict_many(configs[:2]) / y[:2] - 1).max()  # noqa: E731
    assert err(heavy) < err(light)


def test_picks_are_the_exact_search_at_spread_budgets(tiny_space):
    rng = np.random.default_rng(2)
    model = LatencyModel.from_unknowns(tiny_space, synthetic_truth(tiny_space, rng),
                                       "synthetic", {})
    budgets = budget_range(model, 5)
    lo, hi = model.predict(tiny_space.narrowest()), model.predict(tiny_space.widest())
    assert lo < budgets[0] < budgets[-1] < hi and np.all(np.diff(budgets) > 0)
    found = picks(model, proxy_unaries(tiny_space), budgets)
    # brute force: the best proxy score under each budget
    allc = tiny_space.uniform_sample(np.random.default_rng(0), 4000)
    allc = sorted(set(allc))
    score = lambda c: sum(np.log(w / ch[-1]) for w, ch in  # noqa: E731
                          zip(c, tiny_space.searchable_choices))
    for b, f in zip(budgets, found):
        feas = [c for c in allc if model.predict(c) <= b]
        assert f["predicted_latency_ms"] <= b
        assert score(f["config"]) >= max(score(c) for c in feas) - 1e-9


def _timed(space, configs, x, noise, rng):
    from aows.latency.fit import design_matrix
    y = design_matrix(space, configs) @ x
    return Samples(list(configs), y * (1 + noise * rng.standard_normal(len(y))))


def test_priors_are_chosen_on_the_picks():
    """FLOPs-shaped truth, few noisy bulk networks: the loose default overfits them and
    the picks ask for tables held near the FLOPs shape. Irregular truth, many exact
    bulk networks: the picks ask for the loose default."""
    from aows.refine import RIDGE_GRID, select_priors
    space = mobilenet_v1(resolution=32, levels=4, max_width=0.5)
    rng = np.random.default_rng(3)
    f = Fitter(space).f
    flops_shaped = 0.01 + f / f.max()
    bulk = _timed(space, space.uniform_sample(rng, 40), flops_shaped, 0.08, rng)
    rounds = [_timed(space, space.uniform_sample(rng, 10), flops_shaped, 0.0, rng)
              for _ in range(2)]
    tight = select_priors(space, bulk, rounds, 100.0, 1.0, 1e-4)
    assert tight["ridge"] >= 1.0, tight
    assert len(tight["nrmse"]) == 2 * len(RIDGE_GRID)
    irregular = synthetic_truth(space, rng) * rng.uniform(0.2, 3.0, len(f))
    bulk = _timed(space, space.uniform_sample(rng, 600), irregular, 0.0, rng)
    rounds = [_timed(space, space.uniform_sample(rng, 10), irregular, 0.0, rng)
              for _ in range(2)]
    loose = select_priors(space, bulk, rounds, 100.0, 1.0, 1e-4)
    assert loose["ridge"] <= 0.01, loose
    assert min(loose["nrmse"].values()) == loose["nrmse"][
        f"smooth={loose['smooth']:g},ridge={loose['ridge']:g}"]


@pytest.mark.slow
def test_refine_times_the_picks_and_resumes(tmp_path, capsys, monkeypatch):
    samples = tmp_path / "s.jsonl"
    common = ["--space", "mobilenet_v1", "--resolution", "32", "--levels", "3",
              "--max-width", "0.5"]
    assert main(["latency", "generate", *common, "--threads", "1", "--count", "24",
                 "--cover", "-q", "-o", str(samples), *PROTO]) == 0
    assert main(["latency", "fit", str(samples), *common, "-o", str(tmp_path / "m.json")]) == 0
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5)
    bulk = read_samples(samples, space)
    out = tmp_path / "ref"
    calls = {"n": 0}

    def stop_before_round_2():
        calls["n"] += 1
        return calls["n"] >= 2

    import aows.refine as refine_mod
    seen_kwargs = []
    real_time = refine_mod.time_configs

    def spy(*args, **kwargs):
        seen_kwargs.append(kwargs)
        return real_time(*args, **kwargs)

    monkeypatch.setattr(refine_mod, "time_configs", spy)
    # tolerance 0: no round can pass, so both rounds run
    rep = refine(space, bulk, out, n_budgets=4, rounds=2, tolerance=1e-9, progress=False,
                 should_stop=stop_before_round_2)
    assert rep["stopped"] and len(rep["rounds"]) == 1
    # the picks are timed as the samples were: a full chunk, retimed when disturbed
    assert [k["fill"] for k in seen_kwargs] == [True, True]
    timer = seen_kwargs[0]["timer"]  # one timer, its bar the samples' fastest anchor
    assert all(k["timer"] is timer for k in seen_kwargs)
    assert timer.timer.given_min == pytest.approx(min(bulk.anchors) / 1e3)
    assert not (out / "latency.json").exists()
    lines = (out / "refine.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines[1:]]
    assert len(recs) == 8 and {r["rep"] for r in recs} == {0, 1}
    assert all(r["sampler"] == "refine" and r["round"] == 0 for r in recs)
    first = rep["rounds"][0]

    rep = refine(space, bulk, out, n_budgets=4, rounds=2, tolerance=1e-9, progress=False)
    assert not rep["stopped"] and not rep["converged"] and len(rep["rounds"]) == 2
    assert rep["rounds"][0]["configs"] == first["configs"]  # round 1 read back, not re-timed
    assert rep["rounds"][0]["measured_ms"] == first["measured_ms"]
    assert len(read_samples(out / "refine.jsonl")) == 16
    # the refined model is the fit of both files, refine timings weighted
    model = LatencyModel.load(out / "latency.json", space)
    both = Samples.concat([bulk, read_samples(out / "refine.jsonl", space)])
    both.header = bulk.header
    chosen = rep["final_priors"]
    assert (model.meta["fit"]["smooth"], model.meta["fit"]["ridge"]) == (chosen["smooth"],
                                                                         chosen["ridge"])
    again = fit(space, both, smooth=chosen["smooth"], ridge=chosen["ridge"])
    np.testing.assert_allclose(model.predict_many(bulk.configs),  # up to the file's rounding
                               again.predict_many(bulk.configs), rtol=1e-6)
    assert model.meta["refine"]["rounds"] == 2
    assert model.meta["fit"]["refined_samples"] == 16
    assert (out / "refine.png").stat().st_size > 5000
    for e in rep["rounds"]:
        assert len(e["errors"]) == 4 and e["tolerance"] == 1e-9
        assert e["noise_floor"] > 0 and np.isfinite(e["picks"]["nrmse"])

    # done: a rerun times nothing and gives the same model
    stamp = (out / "refine.jsonl").read_text()
    rep2 = refine(space, bulk, out, n_budgets=4, rounds=2, tolerance=1e-9, progress=False)
    assert (out / "refine.jsonl").read_text() == stamp
    assert [e["measured_ms"] for e in rep2["rounds"]] == [e["measured_ms"]
                                                          for e in rep["rounds"]]

    # the CLI: a converging refinement (a tolerance nothing can miss), with the fit
    # settings of the model it refines (its ridge, when --ridge is not given)
    fit(space, bulk, ridge=0.01).save(tmp_path / "m2.json")
    import aows.refine as refine_mod
    given = {}
    real_refine = refine_mod.refine

    def spy_refine(*args, **kwargs):
        given.update(kwargs)
        return real_refine(*args, **kwargs)

    monkeypatch.setattr(refine_mod, "refine", spy_refine)
    capsys.readouterr()
    assert main(["latency", "refine", str(samples), "--latency", str(tmp_path / "m2.json"),
                 "-o", str(tmp_path / "cli"), "--n-budgets", "3", "--tolerance", "1000",
                 "-q"]) == 0
    assert given["ridge"] == 0.01
    out_text = capsys.readouterr().out
    assert "every pick within the tolerance" in out_text
    assert json.loads((tmp_path / "cli" / "refine.json").read_text())["converged"]


@pytest.mark.slow
def test_refine_times_the_picks_of_every_supernet_given(tmp_path):
    """Several supernets' scores: each one's picks at each budget are timed (the search
    will choose each method's network with its own scores)."""
    samples = tmp_path / "s.jsonl"
    common = ["--space", "mobilenet_v1", "--resolution", "32", "--levels", "3",
              "--max-width", "0.5"]
    assert main(["latency", "generate", *common, "--threads", "1", "--count", "16",
                 "--cover", "-q", "-o", str(samples), *PROTO]) == 0
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5)
    bulk = read_samples(samples, space)
    rng = np.random.default_rng(0)
    scores = {"ows": proxy_unaries(space),
              "aows": [rng.normal(size=len(ch)) for ch in space.searchable_choices]}
    rep = refine(space, bulk, tmp_path / "ref", unaries=scores, n_budgets=3, rounds=1,
                 tolerance=10.0, progress=False)
    model = fit(space, bulk)  # the first round's: the bulk alone, default priors
    want = {k: [tuple(f["config"]) for f in picks(model, u, budget_range(model, 3))]
            for k, u in scores.items()}
    assert want["ows"] != want["aows"]  # the two supernets pick other networks
    recs = [json.loads(x) for x in (tmp_path / "ref" / "refine.jsonl").read_text()
            .splitlines()[1:]]
    assert [tuple(r["config"]) for r in recs if r["rep"] == 0] == want["ows"] + want["aows"]
    assert rep["scores"] == "given: ows, aows" and rep["converged"]


def test_refine_user_errors(tmp_path, capsys, tiny_space):
    ref = tmp_path / "ref.jsonl"  # the reference implementation's layout: no header
    ref.write_text("\n".join(json.dumps([list(c), 1.0]) for c in
                             tiny_space.uniform_sample(np.random.default_rng(0), 20)) + "\n")
    model = fit(tiny_space, read_samples(ref, tiny_space))
    model.save(tmp_path / "m.json")
    assert main(["latency", "refine", str(ref), "--latency", str(tmp_path / "m.json"),
                 "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no aows header" in err and "Traceback" not in err
    assert main(["latency", "refine", str(ref), "--latency", str(tmp_path / "m.json"),
                 "-o", str(tmp_path / "o"), "--retest", str(ref)]) == 2
    assert "--retest needs --heldout" in capsys.readouterr().err


def test_latency_retest_checks_load_against_the_first_timing(tmp_path, capsys, monkeypatch):
    """`aows latency retest` re-times a file's networks on its target and protocol, its
    chunks checked against the first timing's fastest anchor from the start."""
    samples = tmp_path / "s.jsonl"
    common = ["--space", "mobilenet_v1", "--resolution", "32", "--levels", "3",
              "--max-width", "0.5"]
    assert main(["latency", "generate", *common, "--threads", "1", "--count", "6",
                 "--uniform", "-q", "-o", str(samples), *PROTO]) == 0
    import aows.latency.measure as measure
    bars = []
    real = measure.Timer.__init__

    def spy(self, space, target, protocol, anchor_min_ms=float("inf"), device=0):
        bars.append(anchor_min_ms)
        real(self, space, target, protocol, anchor_min_ms, device)

    monkeypatch.setattr(measure.Timer, "__init__", spy)
    capsys.readouterr()
    out = tmp_path / "retest.jsonl"
    assert main(["latency", "retest", str(samples), "--count", "4", "-o", str(out), "-q"]) == 0
    first = read_samples(samples)
    assert bars == [min(first.anchors)]
    second = read_samples(out)
    assert second.configs == first.configs[:4] and second.header["target"] == first.header["target"]
    assert "noise floor (test-retest over 4 networks)" in capsys.readouterr().out
