"""Speed and optimality of the search solvers on the MobileNet-v1 space (Table D.1).

    python benchmarks/search.py [--latency benchmarks/out/latency.json] [--problems 40]

Latency: a fitted model of this CPU when given (benchmarks/latency_model.py writes one),
else a FLOPs-shaped synthetic one. Unaries: synthetic but shaped like trained ones
(concave in width, per-layer importance, noise), since supernet training is not part of
this benchmark. Each problem is solved at budgets spread between its fastest and
widest configurations. Times are per call, wall clock, on this machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from aows.chain import _viterbi_one
from aows.latency.fit import flops_vector
from aows.latency.model import LatencyModel
from aows.solve import Problem, pareto, search
from aows.spaces import mobilenet_v1


def synthetic_unaries(space, rng):
    out = []
    for ch in space.searchable_choices:
        a, c = rng.uniform(0.02, 0.3), np.array(ch, float)
        out.append(a * np.log(c / c.max()) + rng.normal(0, 0.05 * a, c.size))
    return out


def load_model(path):
    if path and Path(path).exists():
        return LatencyModel.load(path), f"fitted model {path}"
    space = mobilenet_v1(resolution=128)
    f = flops_vector(space)
    x = 0.05 + 8.0 * f / f.sum() * space.n_layers
    return LatencyModel.from_unknowns(space, x, "synthetic", {}), "synthetic FLOPs-shaped model"


def timeit(fn, repeat):
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", default="benchmarks/out/latency.json")
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--budgets", type=int, default=10, help="budgets per problem")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    model, what = load_model(args.latency)
    space = model.space
    rng = np.random.default_rng(0)
    print(f"MobileNet-v1 space: {space.n_searchable} searchable layers, "
          f"{space.n_configurations():.2e} configurations; latency: {what}")

    # --- raw Viterbi pass
    prob = Problem(model, synthetic_unaries(space, rng))
    bp = prob.budget_problem
    start, edges = bp.s_start - 1.0 * bp.c_start, bp.s_edges - 1.0 * bp.c_edges
    t_pass = timeit(lambda: _viterbi_one(start, edges), 2000)

    # --- decoders over many problems and budgets
    rows = {k: [] for k in ("lagrangian", "greedy", "uniform", "bisection")}
    t_exact, t_lag_cold, t_lag_warm, t_bis = [], [], [], []
    unused = {k: [] for k in ("exact", *rows)}
    for _ in range(args.problems):
        unaries = synthetic_unaries(space, rng)
        prob = Problem(model, unaries)
        bp = prob.budget_problem
        lo, hi = bp.fastest().cost, bp.best_unconstrained().cost
        uni_lo = prob.latency(space.uniform_multiplier_configs()[0][1])
        budgets = np.linspace(max(lo, uni_lo) * 1.02, hi * 0.98, args.budgets)
        # cold: a new problem object per budget (no memoised hull)
        for b in budgets[:3]:
            fresh = Problem(model, unaries).budget_problem
            t = time.perf_counter()
            fresh.lagrangian(b)
            t_lag_cold.append(time.perf_counter() - t)
        for b in budgets:
            t = time.perf_counter()
            ex = search(prob, b, "exact")
            t_exact.append(time.perf_counter() - t)
            t = time.perf_counter()
            search(prob, b, "lagrangian")
            t_lag_warm.append(time.perf_counter() - t)
            t = time.perf_counter()
            bis = bp.lagrangian_bisection(b)
            t_bis.append(time.perf_counter() - t)
            best = ex["score"]
            span = bp.best_unconstrained().score - bp.fastest().score
            unused["exact"].append(1 - ex["predicted_latency_ms"] / b)
            results = {s: search(prob, b, s) for s in ("lagrangian", "greedy", "uniform")}
            results["bisection"] = {"score": bis.score, "predicted_latency_ms": bis.cost}
            for s, r in results.items():
                rows[s].append((best - r["score"]) / span)
                unused[s].append(1 - r["predicted_latency_ms"] / b)
    t_pareto = []
    for _ in range(5):
        prob = Problem(model, synthetic_unaries(space, rng))
        t = time.perf_counter()
        res = pareto(prob, 100)
        t_pareto.append(time.perf_counter() - t)

    ms = lambda v: 1e3 * float(np.mean(v))  # noqa: E731
    out = {
        "viterbi_pass_us": t_pass * 1e6,
        "lagrangian_cold_ms": ms(t_lag_cold),
        "lagrangian_warm_ms": ms(t_lag_warm),
        "bisection_ms": ms(t_bis),
        "exact_mean_ms": ms(t_exact),
        "exact_max_ms": 1e3 * float(np.max(t_exact)),
        "pareto_100_budgets_s": float(np.mean(t_pareto)),
        "pareto_front_size": len(res["front"]),
        "decodes": len(t_exact),
    }
    print(f"\nspeed ({out['decodes']} budgeted decodes; targets: lagrangian <= 0.15 ms, "
          f"exact <= 50 ms, Pareto sweep of 100 budgets <= 1 s)")
    print(f"  one Viterbi pass                 {out['viterbi_pass_us']:8.1f} us")
    print(f"  lagrangian, cold (new problem)   {out['lagrangian_cold_ms']:8.3f} ms")
    print(f"  lagrangian, warm (same problem)  {out['lagrangian_warm_ms']:8.3f} ms")
    print(f"  reference bisection (12 halvings){out['bisection_ms']:8.3f} ms")
    print(f"  exact (mean / max)               {out['exact_mean_ms']:8.3f} / "
          f"{out['exact_max_ms']:.3f} ms")
    print(f"  Pareto sweep, 100 budgets        {out['pareto_100_budgets_s']:8.3f} s "
          f"(front of {out['pareto_front_size']} configurations)")
    print("\noptimality against the exact solver: score lost as a share of the score range "
          "(widest minus fastest configuration), and budget left unused")
    for s in ("lagrangian", "bisection", "greedy", "uniform"):
        g, u = np.array(rows[s]), np.array(unused[s])
        beaten = float(np.mean(g > 1e-12))
        out[s] = {"score_lost_mean": float(g.mean()), "score_lost_max": float(g.max()),
                  "budget_unused_mean": float(u.mean()), "budget_unused_max": float(u.max()),
                  "exact_better_share": beaten}
        print(f"  {s:10s} lost {100 * g.mean():6.3f} % (worst {100 * g.max():6.3f} %); unused "
              f"budget {100 * u.mean():5.2f} % (worst {100 * u.max():5.2f} %); exact strictly "
              f"better in {100 * beaten:.0f} % of cases")
    u = np.array(unused["exact"])
    out["exact"] = {"budget_unused_mean": float(u.mean()), "budget_unused_max": float(u.max())}
    print(f"  exact      unused budget {100 * u.mean():5.2f} % (worst {100 * u.max():5.2f} %)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
