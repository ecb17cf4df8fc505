"""The chain: the one object every decision of AOWS is made on.

Nodes 0..m-1 (the width of every layer boundary, fixed ends included) with S_k choices
each; a unary score u_k(a) per node and a pairwise score p_k(a, b) per edge (the layer
between node k and k+1). The score of a path c is sum_k u_k(c_k) + sum_k p_k(c_k, c_k+1).

Everything here is numpy on padded arrays (no torch, no I/O): Viterbi (max-sum),
batched Viterbi over many Lagrange multipliers, log-space forward-backward, joint
sampling (forward filtering, backward sampling), brute force for tests, and budgeted
decoding: Lagrangian (the paper's OWS decoding) and exact (no duality gap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aows import brute
from aows.errors import AowsError

NEG = -np.inf


class BudgetError(AowsError, ValueError):
    """No configuration meets the budget."""


class Chain:
    """Unary scores per node and pairwise scores per edge, padded to S = max choices.

    ``unary[k]`` has shape (S_k,), ``pairwise[k]`` shape (S_k, S_k+1). Entries may be
    -inf (forbidden). Padded slots are never chosen.
    """

    def __init__(self, unary: Sequence[np.ndarray] | None, pairwise: Sequence[np.ndarray]):
        pairwise = [np.asarray(p, dtype=np.float64) for p in pairwise]
        if unary is None:
            sizes = [pairwise[0].shape[0]] + [p.shape[1] for p in pairwise]
            unary = [np.zeros(s) for s in sizes]
        unary = [np.asarray(u, dtype=np.float64).reshape(-1) for u in unary]
        if len(pairwise) != len(unary) - 1:
            raise ValueError(f"{len(unary)} nodes need {len(unary) - 1} pairwise tables, "
                             f"got {len(pairwise)}")
        for k, p in enumerate(pairwise):
            if p.shape != (unary[k].size, unary[k + 1].size):
                raise ValueError(f"pairwise table {k} has shape {p.shape}, expected "
                                 f"{(unary[k].size, unary[k + 1].size)}")
        for k, u in enumerate(unary):
            if u.size == 0:
                raise ValueError(f"node {k} has no choices")
        self.sizes = np.array([u.size for u in unary])
        self.m = len(unary)
        S = int(self.sizes.max())
        self.S = S
        self.U = np.zeros((self.m, S))
        self.P = np.zeros((max(self.m - 1, 0), S, S))
        self.valid = np.zeros((self.m, S), dtype=bool)
        for k, u in enumerate(unary):
            self.U[k, : u.size] = u
            self.valid[k, : u.size] = True
        for k, p in enumerate(pairwise):
            self.P[k, : p.shape[0], : p.shape[1]] = p
        # -inf on padded slots, 0 elsewhere: added to folded scores before any decode.
        self.node_mask = np.where(self.valid, 0.0, NEG)
        self.edge_mask = self.node_mask[:-1, :, None] + self.node_mask[1:, None, :]

    # ---------------------------------------------------------------- views
    @property
    def unary(self) -> list[np.ndarray]:
        return [self.U[k, : s].copy() for k, s in enumerate(self.sizes)]

    @property
    def pairwise(self) -> list[np.ndarray]:
        return [self.P[k, : self.sizes[k], : self.sizes[k + 1]].copy() for k in range(self.m - 1)]

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """(start (S,), edges (m-1, S, S)): node unaries folded into the incoming edge,
        padding masked to -inf. Score of a path = start[c0] + sum_k edges[k, c_k, c_k+1]."""
        start = self.U[0] + self.node_mask[0]
        edges = self.P + self.U[1:, None, :] + self.edge_mask
        return start, edges

    def score(self, idx: Sequence[int]) -> float:
        """Score of one path given as choice indices (one per node)."""
        idx = np.asarray(idx)
        return float(self.scores(idx[None])[0])

    def scores(self, idx: np.ndarray) -> np.ndarray:
        """Scores of many paths, idx of shape (K, m)."""
        idx = np.asarray(idx, dtype=np.int64)
        if np.any(idx >= self.sizes[None]) or np.any(idx < 0):
            raise IndexError("choice index out of range")
        k = np.arange(self.m)
        total = self.U[k[None], idx].sum(axis=1)
        if self.m > 1:
            e = np.arange(self.m - 1)
            # sequential sum along the chain, so that every solver adds in the same order
            pw = self.P[e[None], idx[:, :-1], idx[:, 1:]]
            total = total + np.cumsum(pw, axis=1)[:, -1]
        return total

    # ------------------------------------------------------------- decoding
    def viterbi(self) -> tuple[np.ndarray, float]:
        """Best path (choice indices per node) and its score. Ties: lowest index."""
        start, edges = self.folded()
        idx, best = _viterbi_folded(start[None], edges[None])
        return idx[0], float(best[0])

    def marginals(self, temperature: float = 1.0) -> list[np.ndarray]:
        """Per-node marginals of p_T(c) ~ exp(score(c) / T), in log space (stable for
        tiny T and -inf entries)."""
        start, edges = self.folded()
        edges = edges / temperature
        alpha = self._forward(temperature, start / temperature, edges)
        beta = np.zeros((self.m, self.S))
        beta[:-1] = NEG
        beta[-1] = np.where(self.valid[-1], 0.0, NEG)
        for k in range(self.m - 2, -1, -1):
            beta[k] = _logsumexp(edges[k] + beta[k + 1][None, :], axis=1)
        logz = _logsumexp(alpha[-1], axis=0)
        if not np.isfinite(logz):
            raise ValueError("every path has score -inf: no distribution to take marginals of")
        logm = alpha + beta - logz
        return [np.exp(logm[k, : s]) for k, s in enumerate(self.sizes)]

    def sample(self, rng: np.random.Generator, n: int, temperature: float = 1.0,
               method: str = "joint") -> np.ndarray:
        """n paths (n, m) of choice indices from p_T(c) ~ exp(score / T).

        method="joint": exact joint samples (forward filtering, backward sampling).
        method="marginal": every node drawn independently from its marginal (the
        reference implementation's behaviour; not a sample of the joint distribution).
        """
        if method == "marginal":
            return sample_marginals(rng, self.marginals(temperature), n)
        if method != "joint":
            raise ValueError(f"unknown sampling method '{method}' (joint | marginal)")
        start, edges = self.folded()
        edges = edges / temperature
        alpha = self._forward(temperature, start / temperature, edges)
        if not np.isfinite(_logsumexp(alpha[-1], axis=0)):
            raise ValueError("every path has score -inf: nothing to sample")
        out = np.empty((n, self.m), dtype=np.int64)
        out[:, -1] = _gumbel_argmax(rng, np.broadcast_to(alpha[-1], (n, self.S)))
        for k in range(self.m - 2, -1, -1):
            # p(c_k | c_k+1) ~ exp(alpha_k(c_k) + edge_k(c_k, c_k+1))
            logits = alpha[k][None, :] + edges[k][:, out[:, k + 1]].T
            out[:, k] = _gumbel_argmax(rng, logits)
        return out

    def _forward(self, temperature: float, start=None, edges=None) -> np.ndarray:
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        if start is None:
            start, edges = self.folded()
            start, edges = start / temperature, edges / temperature
        alpha = np.empty((self.m, self.S))
        alpha[0] = start
        for k in range(self.m - 1):
            alpha[k + 1] = _logsumexp(alpha[k][:, None] + edges[k], axis=0)
        return alpha

    # ---------------------------------------------------------- brute force
    def brute_force(self) -> tuple[np.ndarray, np.ndarray]:
        """All paths (K, m) and their scores (``aows.brute``: small chains only)."""
        return brute.brute_force(self.sizes, self.scores)


def sample_marginals(rng: np.random.Generator, marginals: Sequence[np.ndarray], n: int
                     ) -> np.ndarray:
    """(n, variables): every variable drawn independently from its marginal (the
    reference implementation's AOWS sampling; not a sample of the joint distribution)."""
    out = np.empty((n, len(marginals)), dtype=np.int64)
    for k, p in enumerate(marginals):
        out[:, k] = rng.choice(p.size, size=n, p=p / p.sum())
    return out


def _logsumexp(x: np.ndarray, axis: int | tuple[int, ...]) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.log(np.sum(np.exp(x - safe), axis=axis, keepdims=True)) + safe
    s = np.where(np.isneginf(m), NEG, s)
    return np.squeeze(s, axis=axis)


def _gumbel_argmax(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    g = rng.gumbel(size=logits.shape)
    with np.errstate(invalid="ignore"):
        z = np.where(np.isneginf(logits), NEG, logits + g)
    return np.argmax(z, axis=-1)


def _viterbi_folded(start: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched max-sum: start (G, S), edges (G, E, S, S) -> paths (G, E+1), scores (G,)."""
    G, E = edges.shape[0], edges.shape[1]
    if G == 1:
        path, best = _viterbi_one(start[0], edges[0])
        return path[None], np.array([best])
    msg = start
    back = np.empty((G, E, start.shape[1]), dtype=np.int64)
    for e in range(E):
        t = msg[:, :, None] + edges[:, e]
        b = t.argmax(axis=1)
        back[:, e] = b
        msg = np.take_along_axis(t, b[:, None, :], axis=1)[:, 0]
    path = np.empty((G, E + 1), dtype=np.int64)
    path[:, E] = msg.argmax(axis=1)
    best = msg[np.arange(G), path[:, E]]
    rows = np.arange(G)
    for e in range(E - 1, -1, -1):
        path[:, e] = back[rows, e, path[:, e + 1]]
    return path, best


def _viterbi_one(start: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, float]:
    """Single max-sum pass with as few numpy calls per edge as possible (hot path)."""
    E, S = edges.shape[0], start.shape[0]
    cols = np.arange(S)
    back = np.empty((E, S), dtype=np.int64)
    msg = start
    for e in range(E):
        t = msg[:, None] + edges[e]
        b = t.argmax(axis=0)
        back[e] = b
        msg = t[b, cols]
    last = int(msg.argmax())
    best = float(msg[last])
    path = [last]
    for e in range(E - 1, -1, -1):
        last = int(back[e, last])
        path.append(last)
    return np.array(path[::-1], dtype=np.int64), best


# ===================================================================== budgets
@dataclass
class Decoded:
    """A decoded path with its score and cost (latency)."""

    idx: np.ndarray
    score: float
    cost: float
    gamma: float | None = None
    dual_bound: float | None = None
    solver: str = ""


class LagrangianProblem:
    """The budget-independent half of a budgeted decode: the Lagrangian hull walk.

    Shared by the chain (``BudgetProblem``) and the width graphs
    (``aows.graph.GraphBudgetProblem``). A subclass gives ``_find_fastest()``,
    ``_cost_range()`` (a bound on |cost|), ``_decode_one(gamma)`` (the max-sum decode of
    score - gamma * cost, recorded in ``self._hull``) and ``_decode(gammas)``
    (paths, scores, costs of one decode per gamma).
    """

    def __init__(self):
        self._fastest: Decoded | None = None
        self._top: Decoded | None = None
        # Upper-hull vertices found so far (they do not depend on the budget), by cost,
        # and pairs of them verified adjacent: repeated budgets reuse both.
        self._hull: dict[float, Decoded] = {}
        self._adjacent: set[tuple[float, float]] = set()

    def fastest(self) -> Decoded:
        """Lowest-cost allowed path (score > -inf); among those, the best score."""
        if self._fastest is None:
            self._fastest = self._find_fastest()
        return self._fastest

    def best_unconstrained(self) -> Decoded:
        """Highest-score configuration; among those, the lowest cost (a second decode with
        a tiny latency penalty breaks score ties toward the faster one)."""
        if self._top is None:
            paths, s, c = self._decode(np.array([0.0, 1e-9 / max(1.0, self._cost_range())]))
            k = 1 if s[1] >= s[0] else 0
            self._top = Decoded(paths[k], float(s[k]), float(c[k]), gamma=0.0,
                                solver="unconstrained")
        return self._top

    def _check_budget(self, budget: float) -> Decoded:
        fast = self.fastest()
        if fast.cost > budget:
            raise BudgetError(
                f"budget {budget:.4g} ms is below the fastest configuration "
                f"({fast.cost:.4g} ms); raise the budget to at least that")
        return fast

    # ---------------------------------------------------------- Lagrangian
    def lagrangian(self, budget: float, max_iter: int = 100) -> Decoded:
        """Best configuration on the upper convex hull of (cost, score) under the budget:
        the answer of max score - gamma * cost with gamma as small as feasibility allows.

        Instead of bisection on gamma, the hull is walked exactly: the next gamma is the
        slope between the best infeasible and the best feasible hull points found; when
        the decode at that slope returns nothing above the segment, the two are adjacent
        hull vertices and the feasible one is the Lagrangian answer.
        """
        top = self.best_unconstrained()
        if top.cost <= budget:
            return Decoded(top.idx, top.score, top.cost, 0.0, top.score, "lagrangian")
        fast = self._check_budget(budget)
        self._hull.setdefault(top.cost, top)
        self._hull.setdefault(fast.cost, fast)
        gamma = 0.0
        for _ in range(max_iter):
            # tightest known hull vertices around the budget
            hi = max((d for c, d in self._hull.items() if c <= budget), key=lambda d: d.cost)
            lo = min((d for c, d in self._hull.items() if c > budget), key=lambda d: d.cost)
            if lo.score <= hi.score:
                gamma = 0.0
                break
            gamma = (lo.score - hi.score) / (lo.cost - hi.cost)
            if (hi.cost, lo.cost) in self._adjacent:
                break
            p = self._decode_one(gamma)
            ref = hi.score - gamma * hi.cost
            if not p.score - gamma * p.cost > ref + 1e-12 * max(1.0, abs(ref)):
                self._adjacent.add((hi.cost, lo.cost))
                break
        dual = hi.score + gamma * (budget - hi.cost)
        return Decoded(hi.idx, hi.score, hi.cost, gamma, dual, "lagrangian")

    def lagrangian_bisection(self, budget: float, gamma0: float = 10.0,
                             halvings: int = 12) -> Decoded:
        """The reference's procedure: double gamma from gamma0 until feasible, then
        bisect `halvings` times, keeping the feasible end. Kept as a baseline."""
        self._check_budget(budget)
        paths, s, c = self._decode(np.array([0.0]))
        if c[0] <= budget:
            return Decoded(paths[0], float(s[0]), float(c[0]), 0.0, float(s[0]), "bisection")
        lo, hi = 0.0, gamma0
        while True:
            paths, s, c = self._decode(np.array([hi]))
            if c[0] <= budget:
                best = (paths[0], s[0], c[0])
                break
            lo, hi = hi, hi * 2
        for _ in range(halvings):
            mid = 0.5 * (lo + hi)
            paths, s, c = self._decode(np.array([mid]))
            if c[0] <= budget:
                hi, best = mid, (paths[0], s[0], c[0])
            else:
                lo = mid
        dual = float(best[1] + hi * (budget - best[2]))
        return Decoded(best[0], float(best[1]), float(best[2]), hi, dual, "bisection")


class BudgetProblem(LagrangianProblem):
    """Maximise score(c) subject to cost(c) <= budget, on two chains of the same shape.

    ``score`` and ``cost`` are Chains (unary + pairwise); cost entries must be finite.
    """

    def __init__(self, score: Chain, cost: Chain):
        if score.m != cost.m or np.any(score.sizes != cost.sizes):
            raise ValueError("score and cost chains must have the same nodes and choices")
        if not all(np.all(np.isfinite(t)) for t in cost.unary + cost.pairwise):
            raise ValueError("latency (cost) tables must be finite")
        self.score, self.cost = score, cost
        self.s_start, self.s_edges = score.folded()
        # costs folded the same way, padding 0 (masked through the score)
        self.c_start = cost.U[0].copy()
        self.c_edges = cost.P + cost.U[1:, None, :]
        self.m = score.m
        self._e = np.arange(self.m - 1)
        super().__init__()

    # ------------------------------------------------------------- helpers
    def evaluate(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.atleast_2d(idx)
        return self.score.scores(idx), self.cost.scores(idx)

    def _evaluate_one(self, idx: np.ndarray) -> tuple[float, float]:
        """Score and cost of one path, summed along the chain (as the label DP does)."""
        a, b = idx[:-1], idx[1:]
        s = np.cumsum(np.r_[self.s_start[idx[0]], self.s_edges[self._e, a, b]])[-1]
        c = np.cumsum(np.r_[self.c_start[idx[0]], self.c_edges[self._e, a, b]])[-1]
        return float(s), float(c)

    def _decode_one(self, gamma: float) -> Decoded:
        path, _ = _viterbi_one(self.s_start - gamma * self.c_start,
                               self.s_edges - gamma * self.c_edges)
        s, c = self._evaluate_one(path)
        d = Decoded(path, s, c)
        self._hull.setdefault(c, d)
        return d

    def _decode(self, gammas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Viterbi of score - gamma * cost for every gamma: paths, scores, costs."""
        g = np.asarray(gammas, dtype=np.float64)
        start = self.s_start[None] - g[:, None] * self.c_start[None]
        edges = self.s_edges[None] - g[:, None, None, None] * self.c_edges[None]
        paths, _ = _viterbi_folded(start, edges)
        s, c = self.evaluate(paths)
        return paths, s, c

    def _find_fastest(self) -> Decoded:
        allowed_s = np.isfinite(self.s_start)
        allowed_e = np.isfinite(self.s_edges)
        start = np.where(allowed_s, -self.c_start, NEG)
        edges = np.where(allowed_e, -self.c_edges, NEG)
        idx, _ = _viterbi_folded(start[None], edges[None])
        # second pass with a tiny score bonus to break cost ties toward the better score
        eps = 1e-9 / max(1.0, _finite_range(self.score))
        start2 = np.where(allowed_s, -self.c_start + eps * self.s_start, NEG)
        edges2 = np.where(allowed_e, -self.c_edges + eps * self.s_edges, NEG)
        idx2, _ = _viterbi_folded(start2[None], edges2[None])
        s, c = self.evaluate(np.vstack([idx, idx2]))
        k = 1 if c[1] <= c[0] and s[1] >= s[0] else 0
        return Decoded(np.vstack([idx, idx2])[k], float(s[k]), float(c[k]), solver="fastest")

    def _cost_range(self) -> float:
        return _finite_range(self.cost)

    # --------------------------------------------------------------- exact
    def exact(self, budget: float) -> Decoded:
        """The best-scoring path with cost <= budget (no duality gap).

        Label-setting dynamic program: per node and choice, the Pareto set of partial
        (cost, score) paths; a label is dropped when its cheapest completion breaks the
        budget, or when the Lagrangian bound on its best completion cannot beat the
        Lagrangian incumbent.
        """
        lag = self.lagrangian(budget)
        if lag.dual_bound is not None and lag.dual_bound <= lag.score:
            return Decoded(lag.idx, lag.score, lag.cost, lag.gamma, lag.dual_bound, "exact")
        gamma = float(lag.gamma or 0.0)
        best = _pareto_labels(self, budget, gamma, lag.score)
        if best is None or best[1] < lag.score:
            idx, s, c = lag.idx, lag.score, lag.cost
        else:
            idx, s, c = best
        return Decoded(idx, s, c, gamma, lag.dual_bound, "exact")

    def pareto_front(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The exact score/cost Pareto front: paths (P, m), costs (P,), scores (P,),
        sorted by cost; for any budget the exact answer is the last point under it."""
        return _pareto_labels(self, None, None, None, front=True)


def _finite_range(chain: Chain) -> float:
    vals = np.concatenate([u[np.isfinite(u)] for u in chain.unary]
                          + [p[np.isfinite(p)].ravel() for p in chain.pairwise] + [np.zeros(1)])
    return float(np.abs(vals).max() * chain.m)


def _pareto_labels(prob: BudgetProblem, budget, gamma, incumbent, front: bool = False):
    m, S = prob.m, prob.score.S
    s_start, s_edges = prob.s_start, prob.s_edges
    c_start, c_edges = prob.c_start, prob.c_edges
    # Backward bounds: cheapest completion cost and best completion of score - gamma*cost
    cmin = np.zeros((m, S))
    lagb = np.zeros((m, S))
    big = np.where(np.isfinite(s_edges), c_edges, np.inf)
    for k in range(m - 2, -1, -1):
        cmin[k] = np.min(big[k] + cmin[k + 1][None, :], axis=1)
        if gamma is not None:
            lagb[k] = np.max(s_edges[k] - gamma * c_edges[k] + lagb[k + 1][None, :], axis=1)
    tol_c = 1e-9 * max(1.0, abs(budget)) if budget is not None else 0.0

    def keep(state, cost, score):
        ok = np.isfinite(score)
        if budget is not None:
            ok &= cost + cmin[k_cur][state] <= budget + tol_c
            if gamma is not None and incumbent is not None and np.isfinite(incumbent):
                ub = score + lagb[k_cur][state] + gamma * (budget - cost)
                ok &= ub >= incumbent - 1e-9 * max(1.0, abs(incumbent))
        return ok

    # labels at the current node: state, cost, score, parent pointer into previous level
    k_cur = 0
    state = np.arange(S)
    cost, score = c_start.copy(), s_start.copy()
    ok = keep(state, cost, score)
    state, cost, score = state[ok], cost[ok], score[ok]
    parents: list[np.ndarray] = [np.full(state.size, -1)]
    states: list[np.ndarray] = [state]
    for e in range(m - 1):
        k_cur = e + 1
        n = state.size
        if n == 0:
            return None
        # expand every label to every next choice
        ns = np.tile(np.arange(S), n)
        par = np.repeat(np.arange(n), S)
        ps = state[par]
        nc = cost[par] + c_edges[e, ps, ns]
        nsc = score[par] + s_edges[e, ps, ns]
        ok = keep(ns, nc, nsc)
        ns, par, nc, nsc = ns[ok], par[ok], nc[ok], nsc[ok]
        # dominance within each next choice: sort by (state, cost, -score) and keep a
        # label only if it beats every cheaper label of its state
        order = np.lexsort((-nsc, nc, ns))
        ns, par, nc, nsc = ns[order], par[order], nc[order], nsc[order]
        keepm = np.zeros(ns.size, dtype=bool)
        bounds = np.searchsorted(ns, np.arange(S + 1))
        for b in range(S):
            lo, hi = bounds[b], bounds[b + 1]
            if hi > lo:
                seg = nsc[lo:hi]
                prev = np.maximum.accumulate(np.concatenate(([NEG], seg[:-1])))
                keepm[lo:hi] = seg > prev
        ns, par, nc, nsc = ns[keepm], par[keepm], nc[keepm], nsc[keepm]
        state, cost, score = ns, nc, nsc
        parents.append(par)
        states.append(state)

    def backtrack(j):
        idx = np.empty(m, dtype=np.int64)
        for k in range(m - 1, -1, -1):
            idx[k] = states[k][j]
            j = parents[k][j]
        return idx

    if state.size == 0:
        return None
    if front:
        order = np.lexsort((-score, cost))
        s_sorted = score[order]
        prev = np.maximum.accumulate(np.concatenate(([NEG], s_sorted[:-1])))
        sel = order[s_sorted > prev]
        paths = np.array([backtrack(j) for j in sel])
        s_chk, c_chk = prob.evaluate(paths)
        return paths, c_chk, s_chk
    feas = cost <= budget
    if not np.any(feas):
        return None
    cand = np.flatnonzero(feas)
    j = cand[np.argmax(score[cand])]
    idx = backtrack(j)
    s_chk, c_chk = prob.evaluate(idx)
    if c_chk[0] > budget:  # re-check with the canonical summation
        return None
    return idx, float(s_chk[0]), float(c_chk[0])
