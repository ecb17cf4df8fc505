"""Brute force: every configuration of a few small width variables, scored one by one.

The reference the exact solvers (``aows.chain``, ``aows.graph``) are tested against:
the best configuration, the best one under a budget, the Pareto front, all read off the
whole list. For small cases only: more than ``MAX_CONFIGURATIONS`` configurations is
refused with a ``BruteForceError`` (the list and its scores would not fit in memory long
before the search is interesting; the exact solvers are what handles those).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from aows.errors import AowsError

MAX_CONFIGURATIONS = 1_000_000


class BruteForceError(AowsError, ValueError):
    """Too many configurations to list one by one."""


def configurations(sizes: Sequence[int]) -> np.ndarray:
    """Every configuration (K, n) of n variables with ``sizes[v]`` choices each, as choice
    indices in lexicographic order (the last variable changes fastest)."""
    sizes = [int(s) for s in sizes]
    total = math.prod(sizes)
    if total > MAX_CONFIGURATIONS:
        raise BruteForceError(
            f"brute force over {len(sizes)} variables with {sizes} choices lists {total:,} "
            f"configurations, above its limit of {MAX_CONFIGURATIONS:,}; it is for small "
            "cases (tests), the exact solvers handle large ones")
    return np.ascontiguousarray(
        np.indices(sizes, dtype=np.int64).reshape(len(sizes), total).T)


def brute_force(sizes: Sequence[int], score: Callable[[np.ndarray], np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Every configuration (``configurations(sizes)``) and its score, ``score`` taking
    a (K, n) array of choice indices to K scores (e.g. ``Chain.scores``)."""
    allc = configurations(sizes)
    return allc, np.asarray(score(allc))


def brute_force_problem(problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every configuration of a budget problem (``chain.BudgetProblem``,
    ``graph.GraphBudgetProblem``) with its score and its cost."""
    allc = configurations(problem.score.sizes)
    scores, costs = problem.evaluate(allc)
    return allc, scores, costs


def brute_best(problem, budget: float) -> float | None:
    """The best finite score of a configuration costing at most ``budget``; None when
    there is none."""
    _, s, c = brute_force_problem(problem)
    ok = (c <= budget) & np.isfinite(s)
    return float(s[ok].max()) if ok.any() else None


def brute_front(problem) -> tuple[np.ndarray, np.ndarray]:
    """The exact Pareto front (costs, scores) of the finite-score configurations:
    cost-sorted, each point strictly better than every cheaper one."""
    _, s, c = brute_force_problem(problem)
    fin = np.isfinite(s)
    c, s = c[fin], s[fin]
    order = np.lexsort((-s, c))
    c, s = c[order], s[order]
    best = np.maximum.accumulate(s)
    keep = np.r_[True, s[1:] > best[:-1]]
    return c[keep], s[keep]
