"""Width search on the real MobileNet-v1 space: solvers, baselines, MILP cross-check, CLI."""

import json

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

from aows.chain import BudgetError
from aows.cli import main
from aows.latency.fit import flops_vector
from aows.latency.model import LatencyModel
from aows.solve import Problem, UnariesError, pareto, save_unaries, search
from aows.spaces import mobilenet_v1


def realistic_problem(seed=0, resolution=128, levels=14):
    """FLOPs-shaped latency with per-entry irregularities, concave noisy unaries."""
    space = mobilenet_v1(resolution=resolution, levels=levels)
    rng = np.random.default_rng(seed)
    f = flops_vector(space)
    x = 0.05 + 8.0 * f / f.sum() * space.n_layers * rng.uniform(0.8, 1.2, size=f.size)
    model = LatencyModel.from_unknowns(space, x, "synthetic", {})
    unaries = []
    for ch in space.searchable_choices:
        a, c = rng.uniform(0.02, 0.3), np.array(ch, float)
        unaries.append(a * np.log(c / c.max()) + rng.normal(0, 0.05 * a, c.size))
    return Problem(model, unaries)


def milp_optimum(problem: Problem, budget: float) -> float:
    """Independent exact answer: binary node choices x and edge choices y."""
    space, tables = problem.space, problem.model.tables
    sizes = space.sizes
    nx = int(np.sum(sizes))
    xoff = np.concatenate([[0], np.cumsum(sizes)])
    yoff = [nx]
    for t in tables:
        yoff.append(yoff[-1] + t.size)
    n = yoff[-1]
    c = np.zeros(n)
    for k, u in enumerate(problem.unaries, start=1):
        c[xoff[k]:xoff[k + 1]] = -u
    rows, cols, vals, lo, hi = [], [], [], [], []
    r = 0

    def add(entries, lb, ub):
        nonlocal r
        for j, v in entries:
            rows.append(r)
            cols.append(j)
            vals.append(v)
        lo.append(lb)
        hi.append(ub)
        r += 1

    for k in range(len(sizes)):  # one choice per node
        add([(xoff[k] + a, 1.0) for a in range(sizes[k])], 1, 1)
    for e, t in enumerate(tables):  # edge marginals agree with node choices
        S0, S1 = t.shape
        for a in range(S0):
            add([(yoff[e] + a * S1 + b, 1.0) for b in range(S1)] + [(xoff[e] + a, -1.0)], 0, 0)
        for b in range(S1):
            add([(yoff[e] + a * S1 + b, 1.0) for a in range(S0)] + [(xoff[e + 1] + b, -1.0)],
                0, 0)
    add([(yoff[e] + j, v) for e, t in enumerate(tables) for j, v in enumerate(t.ravel())],
        -np.inf, budget)
    A = sp.csr_matrix((vals, (rows, cols)), shape=(r, n))
    res = scipy.optimize.milp(c, constraints=scipy.optimize.LinearConstraint(A, lo, hi),
                              integrality=np.ones(n), bounds=scipy.optimize.Bounds(0, 1),
                              options={"mip_rel_gap": 1e-9})
    assert res.success, res.message
    return -res.fun


@pytest.mark.parametrize("seed,frac", [(0, 0.3), (1, 0.55)])
def test_exact_equals_milp_on_full_mobilenet_space(seed, frac):
    problem = realistic_problem(seed)
    bp = problem.budget_problem
    lo, hi = bp.fastest().cost, bp.best_unconstrained().cost
    budget = lo + frac * (hi - lo)
    ex = search(problem, budget, "exact")
    assert ex["predicted_latency_ms"] <= budget
    assert ex["score"] == pytest.approx(milp_optimum(problem, budget), abs=1e-6)
    lag = search(problem, budget, "lagrangian")
    assert lag["score"] <= ex["score"] + 1e-9 and lag["dual_bound"] >= ex["score"] - 1e-9


def test_no_solver_exceeds_the_budget():
    for seed in range(4):
        problem = realistic_problem(seed, resolution=64, levels=6)
        bp = problem.budget_problem
        lo, hi = bp.fastest().cost, bp.best_unconstrained().cost
        uni_lo = problem.latency(problem.space.uniform_multiplier_configs()[0][1])
        for budget in np.linspace(max(lo, uni_lo) * 1.01, hi * 1.1, 12):
            results = {s: search(problem, budget, s)
                       for s in ("exact", "lagrangian", "greedy", "uniform")}
            for r in results.values():
                assert r["predicted_latency_ms"] <= budget
            best = results["exact"]["score"]
            assert all(r["score"] <= best + 1e-9 for r in results.values())


def test_budget_errors():
    problem = realistic_problem(0, resolution=64, levels=6)
    fast = problem.budget_problem.fastest().cost
    for solver in ("exact", "lagrangian", "greedy", "uniform"):
        with pytest.raises(BudgetError):
            search(problem, fast * 0.9, solver)
    with pytest.raises(BudgetError, match=f"{fast:.4g}"):
        search(problem, fast * 0.9, "exact")


def test_pareto_sweep_is_monotone_and_matches_exact():
    problem = realistic_problem(3, resolution=64, levels=6)
    res = pareto(problem, 25)
    lat = [p["predicted_latency_ms"] for p in res["front"]]
    sc = [p["score"] for p in res["front"]]
    assert lat == sorted(lat) and sc == sorted(sc)
    for row in res["sweep"][::6]:
        ex = search(problem, row["budget_ms"], "exact")
        assert row["score"] == pytest.approx(ex["score"])
        assert row["predicted_latency_ms"] <= row["budget_ms"] + 1e-12


def test_search_cli(tmp_path, capsys):
    problem = realistic_problem(0, resolution=64, levels=6)
    model_path, un_path = tmp_path / "latency.json", tmp_path / "unaries.json"
    problem.model.save(model_path)
    save_unaries(un_path, problem.unaries, problem.space)
    budget = 0.5 * (problem.budget_problem.fastest().cost +
                    problem.budget_problem.best_unconstrained().cost)
    base = ["search", "--latency", str(model_path), "--unaries", str(un_path)]
    assert main([*base, "--budget", str(budget), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"config", "predicted_latency_ms", "score", "solver"} <= set(out)
    assert out["solver"] == "exact" and out["predicted_latency_ms"] <= budget
    plot = tmp_path / "pareto.png"
    assert main([*base, "--pareto", "--plot", str(plot), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["sweep"]) == 100
    assert plot.stat().st_size > 1000
    # errors: budget below the fastest, unaries of another space, model of another space
    assert main([*base, "--budget", "0.0001"]) == 2
    assert "below the fastest" in capsys.readouterr().err
    bad = json.loads(un_path.read_text())
    bad["unaries"] = bad["unaries"][:-1]
    un_path.write_text(json.dumps(bad))
    assert main([*base, "--budget", str(budget)]) == 2
    assert "searchable layers" in capsys.readouterr().err
    # a latency model of another space than the unaries
    save_unaries(un_path, problem.unaries, problem.space)
    other = realistic_problem(0, resolution=96, levels=6)
    other.model.save(model_path)
    assert main([*base, "--budget", str(budget)]) == 2
    err = capsys.readouterr().err  # says what differs and what to do
    assert "resolution 64 there, 96 in the latency model" in err and "latency fit" in err
    with pytest.raises(UnariesError, match="layer 2 has 3 scores"):
        u = [np.zeros(len(c)) for c in problem.space.searchable_choices]
        u[1] = np.zeros(3)
        Problem(problem.model, u)
