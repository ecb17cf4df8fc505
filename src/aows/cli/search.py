"""`aows search`: the best widths under a latency budget, or the whole front."""

from __future__ import annotations

from aows.cli.args import (
    POS_FLOAT,
    POS_INT,
    _print_json,
)
from aows.errors import AowsError


def cmd_search(args) -> None:
    from aows.latency.model import LatencyModel
    from aows.solve import Problem, load_unaries, pareto, plot_pareto, search
    model = LatencyModel.load(args.latency)
    problem = Problem(model, load_unaries(args.unaries, model.space))
    if args.pareto:
        res = pareto(problem, args.budgets)
        if args.plot:
            plot_pareto(problem, res, args.plot)
            res["plot"] = args.plot
        if args.json:
            _print_json(res)
            return
        what = "exact front" if problem.approximation is None else \
            "front (approximate: linearised concatenation terms)"
        print(f"{what}: {len(res['front'])} configurations from "
              f"{res['front'][0]['predicted_latency_ms']:.3f} to "
              f"{res['front'][-1]['predicted_latency_ms']:.3f} ms/image")
        for row in res["sweep"][:: max(1, len(res["sweep"]) // 10)]:
            print(f"  budget {row['budget_ms']:8.3f} ms: {row['predicted_latency_ms']:8.3f} ms, "
                  f"score {row['score']:+.4f}  {','.join(map(str, row['config']))}")
        if args.plot:
            print(f"plot: {args.plot}")
        return
    if args.budget is None:
        raise AowsError("give --budget MS (or --pareto for the whole front)")
    res = search(problem, args.budget, args.solver)
    if args.json:
        _print_json(res)
        return
    print(f"{res['solver']}: {','.join(map(str, res['config']))}")
    print(f"  predicted latency {res['predicted_latency_ms']:.4f} ms/image "
          f"({100 * res['budget_used']:.1f} % of the {args.budget:g} ms budget), "
          f"score {res['score']:+.5f}")
    if res.get("approximation"):
        print(f"  not exact: {res['approximation']}")


def add_parser(sub) -> None:
    """Add this group's commands to the ``aows`` subparsers."""
    p = sub.add_parser("search", help="best widths under a latency budget")
    p.add_argument("--latency", required=True, help="latency model JSON")
    p.add_argument("--unaries", required=True, help="unaries JSON (per-layer scores)")
    p.add_argument("--budget", type=POS_FLOAT, default=None, help="latency budget (ms/image)")
    p.add_argument("--solver", default="exact",
                   choices=["exact", "lagrangian", "greedy", "uniform"],
                   help="exact (default): the best configuration under the budget; "
                   "lagrangian: its relaxation; greedy, uniform: the baselines")
    p.add_argument("--pareto", action="store_true", help="the whole score/latency front")
    p.add_argument("--budgets", type=POS_INT, default=100, help="budgets in the --pareto sweep")
    p.add_argument("--plot", default=None, help="PNG of the Pareto front (with --pareto)")
    p.add_argument("--json", action="store_true",
                   help="the result as JSON on stdout (a file --config reads)")
    p.set_defaults(func=cmd_search)
