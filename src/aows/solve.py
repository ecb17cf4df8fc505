"""Width search: the best configuration under a latency budget (the paper's OWS).

Score(c) = sum_v u_v(c_v) (unaries from supernet training, higher is better);
latency(c) = sum_i L_i(c_src(i), c_dst(i)) from the latency model. Both live on one
width graph whose variables are the space's width variables (the image channels and
the classes are one-choice variables). For a chain every solver is a call on
``aows.chain``; for a residual space on ``aows.graph`` (exact by variable elimination).

A graph too wide to eliminate because of concatenations (DenseNet: every layer of a
block reads every earlier one) has some latency terms linearised
(``SearchSpace.linearised``). There the search is not exact, and says so: it decodes
on the linearised graph, expands the terms again around its answer (where they are
exact) and decodes again, until the answer repeats (``RELINEARISE_ROUNDS`` at most),
and returns the best answer whose latency under the full model meets the budget.

unaries.json: {"unaries": [[u_1(c) for c in C_1], ..., [u_m(c) for c in C_m]], ...}
one list per searchable width variable (a layer boundary of a chain), one float per
width choice in the space's order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aows.catalogue import space_from_description
from aows.chain import BudgetError, BudgetProblem, Chain, Decoded
from aows.errors import AowsError
from aows.graph import GraphBudgetProblem, WidthGraph, pareto_keep
from aows.io import atomic_write_text
from aows.latency.model import LatencyModel
from aows.model_code import trusted_copy
from aows.plots import figure
from aows.registry import Registry
from aows.space import SearchSpace


class UnariesError(AowsError, ValueError):
    """A unaries file does not fit the latency model's space."""


def load_unaries(path: str | os.PathLike, space: SearchSpace) -> list[np.ndarray]:
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise UnariesError(f"unaries file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise UnariesError(f"unaries file {path} is not valid JSON ({err})") from None
    if not isinstance(obj, dict) or "unaries" not in obj:
        raise UnariesError(f'{path}: expected a JSON object with "unaries": one list of '
                           "scores per searchable layer")
    if obj.get("space"):
        try:
            theirs = SearchSpace.from_description(obj["space"])
        except AowsError as err:
            raise UnariesError(f"unaries file {path} records no readable search space "
                               f"({err})") from None
        try:
            space.check_same(theirs, f"unaries file {path}")
        except AowsError as err:
            bad = theirs.mismatches({"classes": space.classes, **{
                k: space.params.get(k) for k in ("resolution", "input_shape", "min_width",
                                                 "max_width", "levels", "divisor")}})
            if not bad:
                raise UnariesError(f"{err} (the latency model is for another space than "
                                   "the unaries: use a latency model and unaries of the "
                                   "same space)") from None
            what = ", ".join(f"{k} {h} there, {v} in the latency model" for k, v, h in bad)
            raise UnariesError(
                f"unaries file {path} and the latency model are of different spaces "
                f"({what}): time and fit a latency model with the training's settings "
                "(`aows latency generate` with them, then `aows latency fit`), or train "
                "again with the latency model's") from None
    return check_unaries(obj["unaries"], space, str(path))


def load_unaries_space(path: str | os.PathLike, trust_model_code: bool = False
                       ) -> SearchSpace:
    """The search space recorded in an unaries file (written by `aows train`). A model from
    a file is rebuilt from the run folder's own copy of it, only with
    ``trust_model_code`` (``aows.model_code``); otherwise the space is data only."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
        trust = (trusted_copy(path.parent, obj["space"], obj.get("model_code"), True,
                              "a supernet") if trust_model_code else False)
        return space_from_description(obj["space"], trust=trust,
                                      where=f"unaries file {path}")
    except FileNotFoundError:
        raise UnariesError(f"{path} does not exist: give an `aows train` run folder") from None
    except (json.JSONDecodeError, KeyError, TypeError, AowsError) as err:
        raise UnariesError(f"{path} records no readable search space ({err})") from None


def check_unaries(unaries, space: SearchSpace, where: str = "unaries") -> list[np.ndarray]:
    unit = "layers" if space.is_chain else "width variables"
    if not isinstance(unaries, list) or len(unaries) != space.n_searchable:
        n = len(unaries) if isinstance(unaries, list) else "no list of"
        raise UnariesError(f"{where} has {n} {unit} but the latency model's space "
                           f"'{space.name}' has {space.n_searchable} searchable {unit}")
    out = []
    for j, (u, ch) in enumerate(zip(unaries, space.searchable_choices)):
        what = space._what(j)
        try:
            arr = np.asarray(u, dtype=np.float64)
        except (TypeError, ValueError):
            raise UnariesError(f"{where}: {what} has non-numeric scores; give one number "
                               "per width choice") from None
        if arr.shape != (len(ch),):
            raise UnariesError(f"{where}: {what} has {arr.size} scores but the space has "
                               f"{len(ch)} width choices {list(ch)}; one score per choice")
        if np.any(np.isnan(arr)) or np.any(np.isposinf(arr)):
            raise UnariesError(f"{where}: {what} has NaN or +inf scores")
        out.append(arr)
    return out


def save_unaries(path, unaries: Sequence[np.ndarray], space: SearchSpace, **extra) -> None:
    obj = {"unaries": [np.asarray(u).tolist() for u in unaries],
           "widths": [list(c) for c in space.searchable_choices],
           "space": space.describe(), **extra}
    atomic_write_text(path, json.dumps(obj))


def score_terms(space: SearchSpace, unaries: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Unaries of every width variable: the given ones on the searchable variables,
    zeros on the fixed ones."""
    out = [np.zeros(len(c)) for c in space.choices]
    for v, u in zip(space.searchable, unaries):
        out[v] = np.asarray(u, dtype=np.float64)
    return out


def budget_problem(model: LatencyModel, unaries: Sequence[np.ndarray]):
    """Score and latency on the space's width graph: a chain's own solvers for a chain
    (``aows.chain.BudgetProblem``), variable elimination otherwise
    (``aows.graph.GraphBudgetProblem``, which refuses graphs it cannot solve exactly)."""
    space = model.space
    nodes = score_terms(space, unaries)
    if space.is_chain:
        score = Chain(nodes, [np.zeros(t.shape) for t in model.tables])
        return BudgetProblem(score, model.cost_chain())
    return GraphBudgetProblem(WidthGraph(nodes, []), model.cost_graph())


RELINEARISE_ROUNDS = 8


@dataclass
class Problem:
    """A latency model and unaries on one width graph; solvers take it and a budget."""

    model: LatencyModel
    unaries: list[np.ndarray]
    budget_problem: BudgetProblem = field(init=False)

    def __post_init__(self):
        self.unaries = check_unaries(self.unaries, self.model.space)
        self.budget_problem = budget_problem(self.model, self.unaries)

    @property
    def space(self) -> SearchSpace:
        return self.model.space

    def score(self, config: Sequence[int]) -> float:
        return float(self.budget_problem.score.score(self.space.indices(config)))

    def latency(self, config: Sequence[int]) -> float:
        return self.model.predict(config)

    def evaluate(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores and predicted latencies (the full model) of choice indices (K, n_vars)."""
        idx = np.atleast_2d(idx)
        if self.space.linearised:  # the graph's costs are linearised: the model's
            return self.budget_problem.score.scores(idx), self.model.predict_indices(idx)
        return self.budget_problem.evaluate(idx)

    @property
    def approximation(self) -> str | None:
        """What the search approximates, where it is not exact (None: exact)."""
        soft = self.space.linearised
        if not soft:
            return None
        return (f"{len(soft)} of the latency terms of concatenations linearised around "
                f"each answer (the width graph is too wide to eliminate exactly); the "
                "result is the best of the rounds, its latency from the full model")

    def decode(self, budget: float, how: str) -> Decoded:
        """``budget_problem.exact`` or ``.lagrangian`` at ``budget``; on a space with
        linearised terms, re-linearised around each answer (the module's docstring)."""
        if not self.space.linearised:
            return getattr(self.budget_problem, how)(budget)
        space, best, bp, b = self.space, None, self.budget_problem, budget
        seen: set[tuple[int, ...]] = set()
        for _ in range(RELINEARISE_ROUNDS):
            try:
                d = getattr(bp, how)(b)
            except BudgetError:
                break
            cost = float(self.model.predict_indices(d.idx)[0])
            if cost <= budget and (best is None or d.score > best.score):
                best = Decoded(d.idx, d.score, cost, d.gamma, None, d.solver)
            key = tuple(int(k) for k in d.idx)
            if key in seen:
                break
            seen.add(key)
            if cost > budget:  # over: a tighter budget on the next linearisation too
                b *= budget / cost
            bp = GraphBudgetProblem(bp.score, self.model.cost_graph(np.asarray(d.idx)))
        if best is None:
            narrow = space.indices(space.narrowest())
            s, c = self.evaluate(narrow)
            if c[0] > budget:
                raise BudgetError(f"budget {budget:.4g} ms is below the narrowest "
                                  f"configuration ({c[0]:.4g} ms)")
            best = Decoded(narrow, float(s[0]), float(c[0]), None, None, how)
        return best

    def result(self, config, solver: str, budget: float | None, **extra) -> dict:
        config = [int(c) for c in config]
        lat = self.latency(config)
        out = {"config": config, "predicted_latency_ms": lat, "score": self.score(config),
               "solver": solver}
        if budget is not None:
            out["budget_ms"] = budget
            out["budget_used"] = lat / budget
        out.update({k: v for k, v in extra.items() if v is not None})
        return out


# ------------------------------------------------------------------ solvers
SOLVERS: Registry = Registry("solver")  # name -> fn(problem, budget) -> result dict


def register_solver(name: str):
    """A decorator that adds a solver ``fn(problem, budget) -> result`` under ``name``."""
    return SOLVERS.register(name)


def _from_decoded(problem: Problem, d: Decoded, name: str, budget: float) -> dict:
    cfg = problem.space.config_from_indices(d.idx)
    return problem.result(cfg, name, budget, gamma=d.gamma, dual_bound=d.dual_bound,
                          approximation=problem.approximation)


@register_solver("exact")
def solve_exact(problem: Problem, budget: float) -> dict:
    """Best score under the budget, no duality gap (label-setting DP, chain.py); on a
    graph with linearised terms, the best of re-linearised rounds (``Problem.decode``)."""
    return _from_decoded(problem, problem.decode(budget, "exact"), "exact", budget)


@register_solver("lagrangian")
def solve_lagrangian(problem: Problem, budget: float) -> dict:
    """The paper's decoding: max score - gamma * latency with the smallest feasible gamma."""
    return _from_decoded(problem, problem.decode(budget, "lagrangian"), "lagrangian",
                         budget)


@register_solver("greedy")
def solve_greedy(problem: Problem, budget: float) -> dict:
    """AutoSlim's iterative trimming: from the widest configuration, narrow by one step
    the width variable (a layer boundary of a chain; a group of tied widths of a residual
    network, trimmed together) that loses least score per ms saved, until under budget."""
    space = problem.space
    idx = space.indices(space.widest())
    s, c = problem.evaluate(idx)
    s, c = float(s[0]), float(c[0])
    steps = 0
    while c > budget:
        movable = [k for k in space.searchable if idx[k] > 0]
        if not movable:
            raise BudgetError(f"greedy trimming reached the narrowest configuration "
                              f"({c:.4g} ms) above the budget {budget:.4g} ms")
        cands = np.repeat(idx[None], len(movable), axis=0)
        cands[np.arange(len(movable)), movable] -= 1
        cs, cc = problem.evaluate(cands)
        saved, lost = c - cc, s - cs
        ratio = np.where(saved > 0, lost / np.where(saved > 0, saved, 1.0), np.inf)
        if np.all(np.isinf(ratio)):  # nothing saves time: take the cheapest loss
            j = int(np.argmin(lost))
        else:
            j = int(np.argmin(ratio))
        idx, s, c = cands[j], float(cs[j]), float(cc[j])
        steps += 1
    cfg = problem.space.config_from_indices(idx)
    return problem.result(cfg, "greedy", budget, steps=steps)


@register_solver("uniform")
def solve_uniform(problem: Problem, budget: float) -> dict:
    """The widest uniformly scaled network (width multiplier) under the budget."""
    best = None
    for mult, cfg in problem.space.uniform_multiplier_configs():
        if problem.latency(cfg) <= budget:
            best = (mult, cfg)
    if best is None:
        mult, cfg = problem.space.uniform_multiplier_configs()[0]
        raise BudgetError(f"budget {budget:.4g} ms is below the narrowest uniform network "
                          f"(x{mult:.2f}: {problem.latency(cfg):.4g} ms)")
    return problem.result(best[1], "uniform", budget, multiplier=round(best[0], 4))


def search(problem: Problem, budget: float, solver: str = "exact") -> dict:
    """The best configuration under a latency budget.

    Args:
        problem: a latency model and unaries on one space (``Problem``).
        budget: predicted ms/image the configuration may take.
        solver: "exact" (no duality gap), "lagrangian" (the paper's decode), "greedy"
            (AutoSlim's trimming) or "uniform" (width multiplier).

    Returns:
        A dict with "config" (one width per searchable variable), "predicted_latency_ms",
        "score", "solver", "budget_ms", "budget_used", "gamma"/"dual_bound" for the
        Lagrangian-based solvers, and "approximation" where the search is not exact
        (``Problem.approximation``).

    Raises:
        BudgetError: no configuration meets the budget.
    """
    solve = SOLVERS.get(solver)
    if not np.isfinite(budget) or budget <= 0:
        raise AowsError(f"--budget must be a positive number of ms, got {budget}")
    return solve(problem, budget)


# ------------------------------------------------------------------- Pareto
def pareto(problem: Problem, n_budgets: int = 100) -> dict:
    """The exact score/latency front, and the exact answer at n budgets spread from the
    fastest configuration to the widest one (OWS re-targets any budget, no retraining).

    Args:
        problem: a latency model and unaries on one space.
        n_budgets: budgets in the sweep, evenly spaced over the front's latency range.

    Returns:
        ``{"front": [...], "sweep": [...]}``: every Pareto-optimal configuration
        (config, predicted_latency_ms, score), fastest first, and per budget the best
        one under it.
    """
    bp = problem.budget_problem
    paths, costs, scores = bp.pareto_front()
    if problem.space.linearised:  # the front of the linearised costs, costed in full
        costs = problem.model.predict_indices(np.asarray(paths))
        keep = pareto_keep(np.zeros(costs.size, dtype=np.int64), costs, scores)
        paths, costs, scores = [paths[k] for k in keep], costs[keep], scores[keep]
    lo, hi = float(costs[0]), float(costs[-1])
    budgets = np.linspace(lo, hi, n_budgets) if n_budgets > 1 else np.array([hi])
    pick = np.searchsorted(costs, budgets, side="right") - 1
    space = problem.space
    front = [{"config": list(space.config_from_indices(p)), "predicted_latency_ms": float(c),
              "score": float(s)} for p, c, s in zip(paths, costs, scores)]
    sweep = [{"budget_ms": float(b), **front[j]} for b, j in zip(budgets, pick)]
    return {"front": front, "sweep": sweep}


def plot_pareto(problem: Problem, result: dict, path, marks: dict | None = None) -> None:
    """Score vs predicted latency: the exact front, uniform multipliers, optional marks."""
    with figure(path, figsize=(6.4, 4.4)) as (_, ax):
        _draw_pareto(ax, problem, result, marks)


def _draw_pareto(ax, problem: Problem, result: dict, marks: dict | None) -> None:
    lat = [p["predicted_latency_ms"] for p in result["front"]]
    sc = [p["score"] for p in result["front"]]
    ax.step(lat, sc, where="post", color="C0", lw=1.2, label="exact front (OWS)")
    uni = problem.space.uniform_multiplier_configs()
    ax.plot([problem.latency(c) for _, c in uni], [problem.score(c) for _, c in uni], "s--",
            color="C7", ms=4, lw=0.8, label="uniform width multiplier")
    for k, (name, pts) in enumerate((marks or {}).items()):
        ax.scatter([p["predicted_latency_ms"] for p in pts], [p["score"] for p in pts],
                   s=36, marker="oD^v*"[k % 5], color=f"C{k + 1}", label=name, zorder=3)
    ax.set_xlabel("predicted latency (ms/image)")
    ax.set_ylabel("score (sum of unaries, higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
