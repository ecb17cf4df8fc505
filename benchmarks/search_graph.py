"""Speed of the width-graph solvers (aows.graph) on a ResNet-50-shaped decision graph.

    python benchmarks/search_graph.py [--seeds 3] [--budgets 400] [--space resnet50]

A residual network ties widths: every block of a stage reads and writes the stage width
S_k, so the decision graph is a hub per stage with one triangle S_k - a - b - S_k per
bottleneck block (inner widths a, b), not a chain. ``resnet50_like_problem`` builds that
graph with FLOPs-shaped synthetic latencies and concave noisy unaries (the shape of
trained ones). ``--space resnet50`` (the default) benchmarks the built-in space itself
instead: its own width graph (ties, shared layer types, unary terms of the additions and
pooling) with FLOPs-shaped latency tables (``space_problem``); ``--space like`` the
synthetic graph above; any other space name or file works too. Per problem:
the exact budgeted decode at budgets spread between the fastest and the widest
configuration (mean and worst time), the Lagrangian decode at the same budgets, and the
exact Pareto front. Times are wall clock on this machine, single thread.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from aows.catalogue import get_space  # noqa: E402
from aows.graph import GraphBudgetProblem, WidthGraph  # noqa: E402
from aows.latency.fit import flops_vector  # noqa: E402
from aows.latency.model import LatencyModel  # noqa: E402
from aows.solve import Problem  # noqa: E402

LEVELS = 14
BLOCKS = (3, 4, 6, 3)  # bottleneck blocks per stage (ResNet-50)
STAGE_BASE = (256, 512, 1024, 2048)  # stage (output) widths at 1.0x
INNER_BASE = (64, 128, 256, 512)  # bottleneck inner widths at 1.0x
STAGE_RES = (56, 28, 14, 7)  # output resolution of each stage at 224 x 224 input


def width_choices(base: int, levels: int = LEVELS) -> np.ndarray:
    """round(base * [0.2 .. 1.5] / 8) * 8, made strictly increasing."""
    w = np.maximum(np.round(base * np.linspace(0.2, 1.5, levels) / 8) * 8, 8)
    for k in range(1, w.size):
        w[k] = max(w[k], w[k - 1] + 8)
    return w


def resnet50_like_problem(seed: int = 0, levels: int = LEVELS) -> GraphBudgetProblem:
    """The ResNet-50 width graph: stem width s0, stage widths S1..S4, two inner widths
    (a, b) per bottleneck block, ``levels`` choices each.

    Latency (cost, ms): per block conv1 (S_in -> a, 1x1), conv2 (a -> b, 3x3, stride 2 in
    the first block of stages 2-4), conv3 (b -> S_out, 1x1), and a downsample (S_in ->
    S_out, 1x1) in the first block of a stage, where S_in is the previous stage width
    (s0 for stage 1) in a stage's first block and S_out otherwise; each term's table is
    c_in * c_out * k^2 * res^2 scaled to ms, times noise, plus a small constant. Unary
    costs: the stem conv on s0, the residual adds on each S_k (once per block), the
    classifier on S4. Score: unaries only, a * log(c / c_max) + noise per variable.
    """
    rng = np.random.default_rng(seed)
    ms_per_flop = 8e-9  # about 8 ms per GFLOP (multiply-adds)
    choices: list[np.ndarray] = []
    names: list[str] = []

    def var(name: str, base: int) -> int:
        names.append(name)
        choices.append(width_choices(base, levels))
        return len(choices) - 1

    def conv(cin: np.ndarray, cout: np.ndarray, k: int, res: int) -> np.ndarray:
        flops = np.outer(cin, cout) * k * k * res * res
        return 0.005 + ms_per_flop * flops * rng.uniform(0.9, 1.1, size=flops.shape)

    cost_unary: dict[int, np.ndarray] = {}
    cost_pair: list[tuple[tuple[int, int], np.ndarray]] = []
    s0 = var("s0", 64)
    cost_unary[s0] = conv(np.array([3.0]), choices[s0], 7, 112)[0]
    stages = [var(f"S{k + 1}", STAGE_BASE[k]) for k in range(4)]
    prev = s0
    for k, nblocks in enumerate(BLOCKS):
        S, res = stages[k], STAGE_RES[k]
        in_res = res if k == 0 else 2 * res
        for blk in range(nblocks):
            a = var(f"S{k + 1}.{blk}.a", INNER_BASE[k])
            b = var(f"S{k + 1}.{blk}.b", INNER_BASE[k])
            s_in = prev if blk == 0 else S
            r1 = in_res if blk == 0 else res
            cost_pair.append(((s_in, a), conv(choices[s_in], choices[a], 1, r1)))
            cost_pair.append(((a, b), conv(choices[a], choices[b], 3, res)))
            cost_pair.append(((b, S), conv(choices[b], choices[S], 1, res)))
            if blk == 0:
                cost_pair.append(((s_in, S), conv(choices[s_in], choices[S], 1, r1)))
        # residual adds (memory bound): one per block, linear in the stage width
        cost_unary[S] = nblocks * 2e-9 * 40 * choices[S] * res * res
        prev = S
    cost_unary[stages[3]] = cost_unary[stages[3]] + conv(choices[stages[3]],
                                                          np.array([1000.0]), 1, 1)[:, 0]
    n = len(choices)
    c_un = [cost_unary.get(v, np.zeros(choices[v].size)) for v in range(n)]
    s_un = []
    for c in choices:
        a = rng.uniform(0.02, 0.3)
        s_un.append(a * np.log(c / c.max()) + rng.normal(0, 0.05 * a, c.size))
    problem = GraphBudgetProblem(WidthGraph(s_un, []), WidthGraph(c_un, cost_pair))
    problem.names, problem.choices = names, choices
    return problem


def space_problem(seed: int = 0, name: str = "resnet50", resolution: int = 224
                  ) -> GraphBudgetProblem:
    """A built-in space's own budget problem: latency tables a * FLOPs + b per layer type
    with 10 % noise per unknown (about 8 ms per GFLOP), realistic unaries per searchable
    variable (concave in width, a per-variable importance, noise)."""
    rng = np.random.default_rng(seed)
    space = get_space(name, resolution=resolution)
    f = flops_vector(space)
    x = 0.005 + 8e-9 * f * rng.uniform(0.9, 1.1, f.size)
    model = LatencyModel.from_unknowns(space, x, "synthetic", {})
    unaries = []
    for c in space.searchable_choices:
        c = np.asarray(c, float)
        a = rng.uniform(0.02, 0.3)
        unaries.append(a * np.log(c / c.max()) + rng.normal(0, 0.05 * a, c.size))
    prob = Problem(model, unaries).budget_problem
    prob.names, prob.choices = space.names, space.choices
    return prob


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3, help="problems (seeds 0..)")
    ap.add_argument("--budgets", type=int, default=400, help="budgets per problem")
    ap.add_argument("--space", default="resnet50",
                    help="a space name or file, or 'like' for the synthetic ResNet-50 graph")
    args = ap.parse_args()
    make = resnet50_like_problem if args.space == "like" else \
        (lambda seed: space_problem(seed, args.space))
    t_ex, t_first, t_lag, t_front, t_build, sizes = [], [], [], [], [], []
    for seed in range(args.seeds):
        t = time.perf_counter()
        prob = make(seed)
        t_build.append(time.perf_counter() - t)
        if seed == 0:
            plan = prob.plan
            what = "ResNet-50-like" if args.space == "like" else f"'{args.space}' space"
            print(f"{what} width graph: {prob.n} variables, {len(prob.cost.edges)} "
                  f"pairwise terms, up to {int(max(prob.sizes))} choices each, "
                  f"{np.prod(prob.sizes.astype(float)):.2e} configurations; induced width "
                  f"{plan.width} (largest bucket {max(map(np.prod, plan.shape[:-1])):.0f} "
                  "assignments)")
        # each solver on its own copy of the problem: no cache shared between them
        front_prob, lag_prob = make(seed), make(seed)
        t = time.perf_counter()
        _, costs, scores = front_prob.pareto_front()
        t_front.append(time.perf_counter() - t)
        sizes.append(costs.size)
        lo, hi = prob.fastest().cost, prob.best_unconstrained().cost
        budgets = np.linspace(lo, hi, args.budgets + 2)[1:-1]
        for k, b in enumerate(budgets):
            t = time.perf_counter()
            ex = prob.exact(b)
            (t_first if k == 0 else t_ex).append(time.perf_counter() - t)
            t = time.perf_counter()
            lag = lag_prob.lagrangian(b)
            t_lag.append(time.perf_counter() - t)
            # the exact answer is the last front point under the budget
            j = np.searchsorted(costs, b, side="right") - 1
            assert ex.cost <= b and abs(ex.score - scores[j]) <= 1e-9, (b, ex, scores[j])
            assert lag.score <= ex.score + 1e-9 <= lag.dual_bound + 2e-9
    ms = lambda v: 1e3 * float(np.mean(v))  # noqa: E731
    worst = 1e3 * max(t_ex + t_first)
    print(f"\n{len(t_ex) + len(t_first)} budgeted decodes over {args.seeds} problem(s), "
          "budgets spread between the fastest and the widest configuration, each checked "
          "against the front")
    print(f"  build problem (elimination plan)  {ms(t_build):9.2f} ms")
    print(f"  exact, mean / worst               {ms(t_ex + t_first):9.2f} / {worst:.2f} ms"
          "   (targets 50 / 500 ms)")
    print(f"  exact, median / first call        {1e3 * float(np.median(t_ex)):9.2f} / "
          f"{ms(t_first):.2f} ms")
    print(f"  lagrangian, mean / worst          {ms(t_lag):9.2f} / {1e3 * max(t_lag):.2f} ms")
    print(f"  Pareto front, mean / worst        {float(np.mean(t_front)):9.3f} / "
          f"{max(t_front):.3f} s   (target 2 s; {int(np.mean(sizes))} configurations on "
          "average)")


if __name__ == "__main__":
    main()
