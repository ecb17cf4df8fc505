"""Which configurations the supernet trains on: OWS (uniform) or AOWS (adaptive).

AOWS samples p_T(c) ~ exp((sum_i u_i(c_i) - gamma * latency(c)) / T) with the current
unaries and the gamma of the budget (the Lagrangian decode of those unaries), on the
same chain or width graph as the search (the paper's AOWS).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aows.chain import Chain
from aows.graph import WidthGraph
from aows.latency.model import LatencyModel
from aows.solve import Problem, score_terms
from aows.space import SearchSpace


def aows_chain(model: LatencyModel, unaries: Sequence[np.ndarray], budget: float):
    """The chain (or width graph) of u - gamma * latency, gamma from the Lagrangian decode.

    The decode returns the breakpoint gamma, where the feasible hull vertex ties with
    the infeasible one; a gamma just above it (as bisection's feasible end) makes the
    feasible answer the unique mode, so p_T concentrates on the OWS answer as T -> 0.
    """
    problem = Problem(model, list(unaries))
    gamma = float(problem.budget_problem.lagrangian(budget).gamma or 0.0) * (1 + 1e-6)
    space = model.space
    nodes = score_terms(space, problem.unaries)
    if space.is_chain:
        return Chain(nodes, [-gamma * t for t in model.tables]), gamma
    unary, pairwise = space.cost_terms([-gamma * t for t in model.tables])
    return WidthGraph([a + b for a, b in zip(nodes, unary)], pairwise), gamma


def sample_configs(rng: np.random.Generator, n: int, space: SearchSpace,
                   model: LatencyModel | None = None,
                   unaries: Sequence[np.ndarray] | None = None, budget: float | None = None,
                   temperature: float | None = None, method: str = "joint") -> np.ndarray:
    """(n, layers) choice indices of the searchable layers: uniform when temperature is
    None (OWS, or AOWS warm-up), else from p_T (``method`` joint or marginal)."""
    if temperature is None:
        return np.stack([rng.integers(0, len(ch), size=n) for ch in space.searchable_choices],
                        axis=1)
    if model is None or unaries is None or budget is None:
        raise ValueError("AOWS sampling needs a latency model, unaries and a budget")
    chain, _ = aows_chain(model, unaries, budget)
    return chain.sample(rng, n, temperature, method)[:, list(space.searchable)]
