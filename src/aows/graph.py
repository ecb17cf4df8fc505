"""Width graphs: the chain solvers of ``aows.chain`` on pairwise MRFs of small treewidth.

AOWS scores a width configuration c with a pairwise MRF (the paper's OWS: unary scores
per width from the slimmable supernet, pairwise latency terms per layer) and decodes it
by dynamic programming; for a plain network the MRF is a chain. Residual networks tie
widths: the output width S of a stage is shared by every block of that stage, so the
decision graph is a hub with triangles (S - a - b - S for a bottleneck block with inner
widths a, b) rather than a chain. Its treewidth stays small (2 for ResNet-50), so the
same exact computations still run in polynomial time, by variable elimination:

- max-sum (the paper's Viterbi decode) with argmax back-tracking;
- log-space sum-product: marginals (bucket tree, up and down) and exact joint samples of
  p_T(c) ~ exp(score / T), the distribution AOWS samples from;
- the latency-constrained decode (OWS): the Lagrangian relaxation, walked exactly on
  the upper convex hull (``chain.LagrangianProblem``, shared with the chain), and the
  exact budgeted optimum with no duality gap: multi-objective bucket elimination, that
  is Pareto sets of (cost, score) labels per separator assignment, pruned by the budget
  and by Lagrangian bounds against an incumbent (the hull walk's answer, improved by
  greedy single-width moves);
- the exact Pareto front: the same elimination, pruned against known configurations
  (hull vertices and greedy ones) with Lagrangian bounds per cost range.

Elimination order: greedy min-fill (ties: min degree, then index). A variable's bucket
holds its own terms and its children's messages over its scope {v} U separator(v);
separators larger than ``MAX_WIDTH`` are refused with a ``GraphError`` (never solved
approximately). Variables with one choice are folded into their neighbours' unaries.
Everything is numpy on dense bucket tables and flat label arrays; no torch, no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from aows.chain import (
    NEG,
    BudgetError,
    Decoded,
    LagrangianProblem,
    _gumbel_argmax,
    _logsumexp,
    sample_marginals,
)
from aows.errors import AowsError

MAX_WIDTH = 3


class GraphError(AowsError, ValueError):
    """A width graph that cannot be solved exactly here (e.g. its treewidth is too large)."""


# ================================================================= structure
def _min_fill_order(n: int, edges: Iterable[tuple[int, int]],
                    fresh_first: bool = False) -> tuple[list[int], list[set]]:
    """Greedy min-fill elimination order (ties: fewest neighbours, then lowest index) and
    every variable's separator: its neighbours, fill-in included, when it is eliminated.

    ``fresh_first`` adds a tie-break before the index: the variable into which fewer
    eliminated variables have flowed. Max-sum does not care, but the Pareto label sets
    grow with the part of the graph already summarised in a bucket: a stage width that
    carries its blocks' labels should be eliminated when its separator is smallest,
    after the fresh inner widths next to it (ResNet: scope (S1, S2), not (S1, a, S2))."""
    adj = [set() for _ in range(n)]
    for i, j in edges:
        adj[i].add(j)
        adj[j].add(i)
    alive = set(range(n))
    order: list[int] = []
    seps: list[set] = [set() for _ in range(n)]
    mass = [0] * n
    while alive:
        best = None
        for v in alive:
            nb = sorted(adj[v])
            fill = sum(1 for a, b in itertools.combinations(nb, 2) if b not in adj[a])
            key = (fill, len(nb), mass[v] if fresh_first else 0, v)
            if best is None or key < best:
                best = key
        v = best[-1]
        for a, b in itertools.combinations(adj[v], 2):
            adj[a].add(b)
            adj[b].add(a)
        for a in adj[v]:
            adj[a].discard(v)
        seps[v] = set(adj[v])
        for a in seps[v]:
            mass[a] += 1 + mass[v]
        adj[v] = set()
        order.append(v)
        alive.remove(v)
    return order, seps


def _reduce_max(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.max(x, axis=axes) if axes else x


def _reduce_lse(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return _logsumexp(x, axes) if axes else x


class _Plan:
    """The bucket tree of one elimination order, shared by every pass.

    Buckets 0..n-1 are the variables; bucket ``n`` is a virtual root with an empty scope
    whose children are the roots of the connected components, so a disconnected graph
    is one tree (the other components' totals reach a component as its outside message).
    Scopes are ordered by elimination position, v first: a child's separator is then a
    subsequence of its parent's scope, and a message broadcasts into the parent's table
    by a plain reshape, with no transpose.
    """

    def __init__(self, sizes: np.ndarray, edges: set[tuple[int, int]],
                 fresh_first: bool = False):
        n = len(sizes)
        self.n, self.sizes = n, sizes
        order, seps = _min_fill_order(n, edges, fresh_first)
        self.order = order
        self.pos = np.empty(n, dtype=np.int64)
        self.pos[order] = np.arange(n)
        self.sep = [tuple(sorted(seps[v], key=lambda u: self.pos[u])) for v in range(n)]
        self.width = max((len(s) for s in self.sep), default=0)
        if self.width > MAX_WIDTH:
            v = max(range(n), key=lambda u: (len(self.sep[u]), -self.pos[u]))
            raise GraphError(
                f"the width graph has induced width {self.width} (variable {v} is eliminated "
                f"together with variables {list(self.sep[v])}), above MAX_WIDTH = {MAX_WIDTH}: "
                "it is not solved exactly here, and no approximation is made; tie fewer "
                "widths together or split the graph into smaller searches")
        root = n
        self.root = root
        self.scope = [(v, *self.sep[v]) for v in range(n)] + [()]
        self.shape = [tuple(int(sizes[u]) for u in sc) for sc in self.scope]
        self.parent = [self.sep[v][0] if self.sep[v] else root for v in range(n)] + [-1]
        self.children: list[list[int]] = [[] for _ in range(n + 1)]
        for v in order:
            self.children[self.parent[v]].append(v)
        # how a child's message (axes = its separator) broadcasts into its parent's scope,
        # and which of the parent's axes the outside message to the child sums out
        self.bshape: list[tuple[int, ...]] = [()] * (n + 1)
        self.raxes: list[tuple[int, ...]] = [()] * (n + 1)
        for c in range(n):
            ps = self.scope[self.parent[c]]
            sc = set(self.sep[c])
            self.bshape[c] = tuple(int(sizes[u]) if u in sc else 1 for u in ps)
            self.raxes[c] = tuple(k for k, u in enumerate(ps) if u not in sc)
        # shape that puts a bucket's outside message (axes = separator) under its scope
        self.oshape = [(1, *self.shape[v][1:]) for v in range(n)] + [()]
        self.up = order + [root]
        self.down = [root] + order[::-1]
        self._proj: dict[tuple, np.ndarray] = {}  # projections, for _LabelRun

    # --------------------------------------------------------------- tables
    def local_terms(self, unary: Sequence[np.ndarray],
                    pairs: Mapping[tuple[int, int], np.ndarray]) -> list[tuple]:
        """Per variable's bucket: (its unary, {u: table (S_v, S_u)} of the pairwise terms
        it holds, those whose earlier-eliminated end it is). A term touching a one-choice
        variable is a unary of its other end (folded), so it adds nothing to the
        structure."""
        sizes = self.sizes
        uni = [np.array(u, dtype=np.float64) for u in unary]
        held: list[dict[int, np.ndarray]] = [{} for _ in range(self.n)]
        for (i, j), t in pairs.items():
            if sizes[j] == 1:
                uni[i] = uni[i] + t[:, 0]
            elif sizes[i] == 1:
                uni[j] = uni[j] + t[0, :]
            else:
                b, o, t = (i, j, t) if self.pos[i] < self.pos[j] else (j, i, t.T)
                held[b][o] = held[b][o] + t if o in held[b] else t
        return [(uni[v], held[v]) for v in range(self.n)]

    def local_tables(self, terms: list[tuple]) -> list[np.ndarray]:
        """Dense table over each bucket's scope of its local terms; the root's is 0."""
        tabs = []
        for v, (u, held) in enumerate(terms):
            scope, sizes = self.scope[v], self.sizes
            t = np.zeros(self.shape[v]) + u.reshape((-1,) + (1,) * (len(scope) - 1))
            for o, p in held.items():
                shp = [1] * len(scope)
                shp[0], shp[scope.index(o)] = sizes[v], sizes[o]
                t = t + p.reshape(shp)
            tabs.append(t)
        return tabs + [np.zeros(())]

    # --------------------------------------------------------------- passes
    # Tables have the bucket's scope as leading axes; ``batch`` trailing axes (several
    # Lagrange multipliers at once) ride along untouched.
    def upward(self, local: list[np.ndarray], reduce, batch: tuple = ()) -> tuple[list, list]:
        """Bucket tables (local terms plus children's messages) and messages (the table
        with the bucket's variable reduced out); the root's table is the total."""
        tables: list = [None] * (self.n + 1)
        msgs: list = [None] * (self.n + 1)
        for b in self.up:
            t = local[b]
            for c in self.children[b]:
                t = t + msgs[c].reshape(self.bshape[c] + batch)
            tables[b] = t
            msgs[b] = reduce(t, (0,)) if b != self.root else t
        return tables, msgs

    def downward(self, local: list[np.ndarray], msgs: list, reduce,
                 batch: tuple = ()) -> list:
        """Outside messages: for every bucket, the reduction of every term outside its
        subtree, as a table over its separator. The sum over the other children is
        taken from prefix and suffix sums (no subtraction, which -inf would break)."""
        out: list = [None] * (self.n + 1)
        out[self.root] = np.zeros(batch)
        for b in self.down:
            kids = self.children[b]
            if not kids:
                continue
            base = local[b] + out[b].reshape(self.oshape[b] + batch)
            exps = [msgs[c].reshape(self.bshape[c] + batch) for c in kids]
            pre = [base]
            for e in exps[:-1]:
                pre.append(pre[-1] + e)
            suf = None
            for j in range(len(kids) - 1, -1, -1):
                excl = pre[j] if suf is None else pre[j] + suf
                out[kids[j]] = reduce(excl, self.raxes[kids[j]])
                suf = exps[j] if suf is None else suf + exps[j]
        return out

    def maxsum_batch(self, local: list[np.ndarray]) -> np.ndarray:
        """Max-sum for G problems at once (a trailing axis of size G on every table):
        the best assignments (G, n)."""
        G = local[self.root].shape[-1]
        msgs: list = [None] * (self.n + 1)
        arg: list = [None] * self.n
        for v in self.order:
            t = local[v]
            for c in self.children[v]:
                t = t + msgs[c].reshape(self.bshape[c] + (G,))
            arg[v] = t.argmax(axis=0)
            msgs[v] = t.max(axis=0)
        x = np.zeros((G, self.n), dtype=np.int64)
        rows = np.arange(G)
        for v in self.order[::-1]:
            x[:, v] = arg[v][(*(x[:, s] for s in self.sep[v]), rows)]
        return x

    def maxsum(self, local: list[np.ndarray]) -> tuple[np.ndarray, float]:
        """Best assignment and its value; ties go to the lowest index of each variable
        given its separator."""
        msgs: list = [None] * (self.n + 1)
        arg: list = [None] * self.n
        for v in self.order:
            t = local[v]
            for c in self.children[v]:
                t = t + msgs[c].reshape(self.bshape[c])
            arg[v] = t.argmax(axis=0)
            msgs[v] = t.max(axis=0)
        total = float(sum(msgs[r] for r in self.children[self.root]))
        x = np.zeros(self.n, dtype=np.int64)
        for v in self.order[::-1]:
            x[v] = arg[v][tuple(x[s] for s in self.sep[v])]
        return x, total


# ================================================================ the graph
class WidthGraph:
    """Pairwise MRF over width choices: variables 0..n-1 with ``sizes[v]`` choices.

    ``unary[v]`` has shape (S_v,); each pairwise term ((i, j), table) has i != j and shape
    (S_i, S_j). Several terms on the same pair, in either orientation, are summed.
    Entries may be -inf (forbidden configurations); NaN and +inf are refused. The score
    of an assignment c is sum_v unary[v][c_v] + sum_(i,j) pairwise[i,j][c_i, c_j].
    """

    def __init__(self, unary: Sequence[np.ndarray],
                 pairwise: Mapping[tuple[int, int], np.ndarray]
                 | Iterable[tuple[tuple[int, int], np.ndarray]] = ()):
        unary = [np.asarray(u, dtype=np.float64).reshape(-1) for u in unary]
        if not unary:
            raise ValueError("a width graph needs at least one variable")
        for v, u in enumerate(unary):
            if u.size == 0:
                raise ValueError(f"variable {v} has no choices")
            if np.any(np.isnan(u)) or np.any(np.isposinf(u)):
                raise ValueError(f"unary table of variable {v} has NaN or +inf entries")
        self.n = len(unary)
        self.sizes = np.array([u.size for u in unary], dtype=np.int64)
        items = pairwise.items() if isinstance(pairwise, Mapping) else pairwise
        pairs: dict[tuple[int, int], np.ndarray] = {}
        for key, table in items:
            i, j = (int(k) for k in key)
            if i == j or not (0 <= i < self.n and 0 <= j < self.n):
                raise ValueError(f"pairwise term ({i}, {j}) needs two different variables "
                                 f"among 0..{self.n - 1}")
            t = np.asarray(table, dtype=np.float64)
            if t.shape != (self.sizes[i], self.sizes[j]):
                raise ValueError(f"pairwise term ({i}, {j}) has shape {t.shape}, expected "
                                 f"{(int(self.sizes[i]), int(self.sizes[j]))}")
            if np.any(np.isnan(t)) or np.any(np.isposinf(t)):
                raise ValueError(f"pairwise term ({i}, {j}) has NaN or +inf entries")
            if i > j:
                i, j, t = j, i, t.T
            pairs[(i, j)] = pairs[(i, j)] + t if (i, j) in pairs else t.copy()
        self._unary = unary
        self._pairs = dict(sorted(pairs.items()))
        self._order: tuple[list[int], list[set]] | None = None
        self._plan: _Plan | None = None

    # ---------------------------------------------------------------- views
    @property
    def unary(self) -> list[np.ndarray]:
        return [u.copy() for u in self._unary]

    @property
    def pairwise(self) -> dict[tuple[int, int], np.ndarray]:
        """The summed pairwise tables, one per pair (i < j), shape (S_i, S_j)."""
        return {k: t.copy() for k, t in self._pairs.items()}

    @property
    def edges(self) -> list[tuple[int, int]]:
        return list(self._pairs)

    def _structure(self) -> set[tuple[int, int]]:
        """Edges that constrain elimination: one-choice variables are folded away."""
        return {(i, j) for i, j in self._pairs if self.sizes[i] > 1 and self.sizes[j] > 1}

    def order(self) -> list[int]:
        """Elimination order: greedy min-fill (ties: min degree, then index) on the
        interaction graph, edges to one-choice variables left out (they are folded)."""
        if self._order is None:
            self._order = _min_fill_order(self.n, self._structure())
        return list(self._order[0])

    def width(self) -> int:
        """Induced width of ``order()``: the largest separator size (1 for a chain or a
        tree, 2 for triangles sharing a hub)."""
        self.order()
        return max((len(s) for s in self._order[1]), default=0)

    def _solver_plan(self) -> _Plan:
        """The bucket tree of ``order()`` (refuses graphs wider than MAX_WIDTH)."""
        if self._plan is None:
            self._plan = _Plan(self.sizes, self._structure())
        return self._plan

    def _local(self, scale: float = 1.0) -> list[np.ndarray]:
        plan = self._solver_plan()
        tabs = plan.local_tables(plan.local_terms(self._unary, self._pairs))
        return tabs if scale == 1.0 else [t * scale for t in tabs]

    # --------------------------------------------------------------- scores
    def scores(self, idx: np.ndarray) -> np.ndarray:
        """Scores of many assignments, idx of shape (K, n) choice indices."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.ndim != 2 or idx.shape[1] != self.n:
            raise ValueError(f"expected assignments of shape (K, {self.n}), got {idx.shape}")
        if np.any(idx >= self.sizes[None]) or np.any(idx < 0):
            raise IndexError("choice index out of range")
        total = np.zeros(idx.shape[0])
        for v, u in enumerate(self._unary):
            total = total + u[idx[:, v]]
        for (i, j), t in self._pairs.items():
            total = total + t[idx[:, i], idx[:, j]]
        return total

    def score(self, idx: Sequence[int]) -> float:
        return float(self.scores(np.asarray(idx)[None])[0])

    # ------------------------------------------------------------- decoding
    def maxsum(self) -> tuple[np.ndarray, float]:
        """Best assignment and its score (the paper's Viterbi decode, by variable
        elimination with argmax back-tracking)."""
        return self._solver_plan().maxsum(self._local())

    def marginals(self, temperature: float = 1.0) -> list[np.ndarray]:
        """Per-variable marginals of p_T(c) ~ exp(score(c) / T): sum-product up the bucket
        tree, outside messages down, all in log space (stable for tiny T and -inf)."""
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        plan = self._solver_plan()
        local = self._local(1.0 / temperature)
        tables, msgs = plan.upward(local, _reduce_lse)
        if not np.isfinite(tables[plan.root]):
            raise ValueError("every assignment has score -inf: no distribution to take "
                             "marginals of")
        out = plan.downward(local, msgs, _reduce_lse)
        marg = []
        for v in range(self.n):
            belief = tables[v] + out[v].reshape(plan.oshape[v])
            lm = _reduce_lse(belief, tuple(range(1, belief.ndim)))
            marg.append(np.exp(lm - _reduce_lse(lm, (0,))))
        return marg

    def sample(self, rng: np.random.Generator, n: int, temperature: float = 1.0,
               method: str = "joint") -> np.ndarray:
        """n assignments (n, nvars) from p_T(c) ~ exp(score / T) (AOWS sampling).

        method="joint": exact joint samples: sum-product elimination, then every variable
        drawn in reverse elimination order from p(c_v | its separator), which is its
        bucket table (the subtree below it summed out) at the drawn separator values.
        method="marginal": every variable drawn independently from its marginal (not a
        sample of the joint distribution).
        """
        if method == "marginal":
            return sample_marginals(rng, self.marginals(temperature), n)
        if method != "joint":
            raise ValueError(f"unknown sampling method '{method}' (joint | marginal)")
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        plan = self._solver_plan()
        tables, _ = plan.upward(self._local(1.0 / temperature), _reduce_lse)
        if not np.isfinite(tables[plan.root]):
            raise ValueError("every assignment has score -inf: nothing to sample")
        out = np.empty((n, self.n), dtype=np.int64)
        for v in plan.order[::-1]:
            t = tables[v]
            # rows: the n samples' separator values; the table's first axis stays free
            logits = t[(slice(None), *(out[:, s] for s in plan.sep[v]))]
            logits = np.broadcast_to(logits.T if plan.sep[v] else logits, (n, t.shape[0]))
            out[:, v] = _gumbel_argmax(rng, logits)
        return out

    # ---------------------------------------------------------- brute force
    def brute_force(self) -> tuple[np.ndarray, np.ndarray]:
        """All assignments (K, n) and their scores; for tests on small graphs."""
        allc = np.array(list(itertools.product(*(range(s) for s in self.sizes))),
                        dtype=np.int64)
        return allc, self.scores(allc)


def _finite_range(g: WidthGraph) -> float:
    vals = [u[np.isfinite(u)] for u in g.unary] + \
        [t[np.isfinite(t)].ravel() for t in g.pairwise.values()] + [np.zeros(1)]
    return float(np.abs(np.concatenate(vals)).max() * (g.n + len(g.edges)))


# ================================================================== budgets
class GraphBudgetProblem(LagrangianProblem):
    """Maximise score(c) subject to cost(c) <= budget on two width graphs of the same
    variables (the paper's OWS: unaries from the supernet, latency as a pairwise model).

    ``cost`` entries must be finite. Both graphs are eliminated along one order, that of
    the union of their edges. The Lagrangian hull walk is the chain's (shared code);
    ``exact`` and ``pareto_front`` are multi-objective bucket elimination.
    """

    def __init__(self, score: WidthGraph, cost: WidthGraph):
        if score.n != cost.n or np.any(score.sizes != cost.sizes):
            raise ValueError("score and cost graphs must have the same variables and choices")
        if not all(np.all(np.isfinite(t)) for t in cost.unary + list(cost.pairwise.values())):
            raise ValueError("latency (cost) tables must be finite")
        self.score, self.cost = score, cost
        self.n, self.sizes = score.n, score.sizes
        structure = score._structure() | cost._structure()
        self.plan = _Plan(self.sizes, structure, fresh_first=True)
        self.s_terms = self.plan.local_terms(score._unary, score._pairs)
        self.c_terms = self.plan.local_terms(cost._unary, cost._pairs)
        self.s_local = self.plan.local_tables(self.s_terms)
        self.c_local = self.plan.local_tables(self.c_terms)
        self._terms: tuple | None = None
        self._factors: list[list[tuple]] | None = None
        super().__init__()

    # ------------------------------------------------------------- helpers
    def evaluate(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.atleast_2d(idx)
        return self.score.scores(idx), self.cost.scores(idx)

    def _local_factors(self) -> list[list[tuple]]:
        """Per bucket, its local terms as label factors (one label per allowed assignment)
        with their dense score and cost tables shaped to broadcast over the bucket's
        scope. v's unary is folded into its smallest pairwise term (one merge less)."""
        if self._factors is None:
            plan = self.plan
            self._factors = []
            for b in range(self.n):
                (su, sp), (cu, cp) = self.s_terms[b], self.c_terms[b]
                nd = len(plan.scope[b])
                others = sorted(set(sp) | set(cp), key=lambda w: (plan.sizes[w], plan.pos[w]))
                terms = []
                for k, u in enumerate(others):
                    zero = np.zeros((plan.sizes[b], plan.sizes[u]))
                    s2, c2 = sp.get(u, zero), cp.get(u, zero)
                    if k == 0:
                        s2, c2 = s2 + su[:, None], c2 + cu[:, None]
                    terms.append(((b, u), s2, c2))
                if not terms:
                    terms.append(((b,), su, cu))
                facs = []
                for scope, s2, c2 in terms:
                    scope = tuple(sorted(scope, key=lambda w: plan.pos[w]))
                    shape = tuple(int(plan.sizes[w]) for w in scope)
                    s1, c1 = s2.ravel(), c2.ravel()
                    z = np.flatnonzero(np.isfinite(s1))
                    ptr = np.searchsorted(z, np.arange(s1.size + 1))
                    bshape = [1] * nd
                    for w in scope:
                        bshape[plan.scope[b].index(w)] = int(plan.sizes[w])
                    s2, c2 = s2.reshape(bshape), c2.reshape(bshape)
                    bc = np.where(np.isfinite(s2), -c2, NEG)
                    facs.append((scope, shape, z, ptr, c1[z], s1[z], s2, c2, bc))
                self._factors.append(facs)
        return self._factors

    def _lagrangian_local(self, gamma: float) -> list[np.ndarray]:
        return [s - gamma * c for s, c in zip(self.s_local, self.c_local)]

    def _decode_one(self, gamma: float) -> Decoded:
        x, _ = self.plan.maxsum(self._lagrangian_local(gamma))
        s, c = self.evaluate(x)
        d = Decoded(x, float(s[0]), float(c[0]))
        self._hull.setdefault(d.cost, d)
        return d

    def _decode(self, gammas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Max-sum of score - gamma * cost for every gamma (one batched pass):
        assignments, scores, costs."""
        g = np.atleast_1d(np.asarray(gammas, dtype=np.float64))
        paths = self.plan.maxsum_batch([s[..., None] - c[..., None] * g
                                        for s, c in zip(self.s_local, self.c_local)])
        s, c = self.evaluate(paths)
        return paths, s, c

    def _find_fastest(self) -> Decoded:
        allowed = [np.isfinite(s) for s in self.s_local]
        eps = 1e-9 / max(1.0, _finite_range(self.score))
        cands = []
        for bonus in (0.0, eps):  # second pass: cost ties broken toward the better score
            local = [np.where(a, -c + (bonus * s if bonus else 0.0), NEG)
                     for a, c, s in zip(allowed, self.c_local, self.s_local)]
            cands.append(self.plan.maxsum(local)[0])
        s, c = self.evaluate(np.array(cands))
        if not np.isfinite(s).any():
            raise BudgetError("every configuration has score -inf: none can be chosen")
        k = 1 if c[1] <= c[0] and s[1] >= s[0] else 0
        return Decoded(cands[k], float(s[k]), float(c[k]), solver="fastest")

    def _cost_range(self) -> float:
        return _finite_range(self.cost)

    # --------------------------------------------------------------- exact
    def exact(self, budget: float) -> Decoded:
        """The best-scoring configuration with cost <= budget (no duality gap).

        The Lagrangian hull walk gives gamma, the dual bound and a feasible incumbent,
        which greedy single-width moves from the hull vertices on either side of the
        budget try to improve; if the dual bound equals the incumbent's score it is
        optimal. Otherwise multi-objective bucket elimination (``_LabelRun``) keeps, per
        separator assignment, the Pareto set of partial (cost, score) labels that can
        still fit the budget and beat the incumbent (the better the incumbent, the fewer).
        """
        lag = self.lagrangian(budget)
        if lag.dual_bound is not None and lag.dual_bound <= lag.score:
            return Decoded(lag.idx, lag.score, lag.cost, lag.gamma, lag.dual_bound, "exact")
        gamma = float(lag.gamma or 0.0)
        inc = (lag.idx, lag.score, lag.cost)
        above = [d for c, d in self._hull.items() if c > budget]
        starts = [lag.idx] + ([min(above, key=lambda d: d.cost).idx] if above else [])
        X, s, c, fits = self._greedy(np.array(starts), np.full(len(starts), budget))
        for k in np.flatnonzero(fits):
            if s[k] > inc[1]:
                inc = (X[k], float(s[k]), float(c[k]))
        if lag.dual_bound is not None and lag.dual_bound <= inc[1]:
            return Decoded(inc[0], inc[1], inc[2], gamma, lag.dual_bound, "exact")
        best = _best_under(self, _LabelRun(self, budget, gamma, inc[1]), budget)
        if best is not None and best[1] >= inc[1]:
            inc = best
        return Decoded(inc[0], inc[1], inc[2], gamma, lag.dual_bound, "exact")

    def _greedy(self, X: np.ndarray, budgets: np.ndarray, max_moves: int = 100,
                chunk: int = 256):
        """Configurations near the rows of X (incumbents and known front points, never
        answers), all rows at once: while over its budget, the single-width change losing
        the least score per unit of cost saved; then, while one fits, the single-width
        change gaining the most score. Every move's change comes from delta tables: the
        terms on each variable at each of its values, the others fixed, gathered in one
        indexing of the stacked term tables and summed per variable (``reduceat``).
        Returns the configurations, their scores and costs (re-evaluated) and whether
        each fits its budget."""
        ts, tc, u, start = self._term_stack()
        S = ts.shape[1]
        X = np.array(X, dtype=np.int64)
        budgets = np.asarray(budgets, dtype=np.float64)
        s, c = self.evaluate(X)
        active = np.flatnonzero(np.isfinite(s))
        e = np.arange(u.size)[None]
        for _ in range(max_moves):
            moved = []
            for lo in range(0, active.size, chunk):
                rows = active[lo: lo + chunk]
                Xa, r = X[rows], np.arange(rows.size)
                cols = Xa[:, u]
                ls = np.add.reduceat(ts[e, cols], start, axis=1)  # (rows, n, S)
                lc = np.add.reduceat(tc[e, cols], start, axis=1)
                ds = (ls - np.take_along_axis(ls, Xa[:, :, None], axis=2)).reshape(r.size, -1)
                dc = (lc - np.take_along_axis(lc, Xa[:, :, None], axis=2)).reshape(r.size, -1)
                over = c[rows] > budgets[rows]
                fine = np.isfinite(ds)
                okr = (dc < 0) & fine
                ratio = np.where(okr, -ds / np.where(okr, -dc, 1.0), np.inf)
                gain = np.where((c[rows, None] + dc <= budgets[rows, None]) & (ds > 0) & fine,
                                ds, NEG)
                k = np.where(over, ratio.argmin(axis=1), gain.argmax(axis=1))
                ok = np.where(over, np.isfinite(ratio[r, k]), np.isfinite(gain[r, k]))
                k, rows, r = k[ok], rows[ok], r[ok]
                X[rows, k // S] = k % S
                s[rows] += ds[r, k]
                c[rows] += dc[r, k]
                moved.append(rows)
            active = np.concatenate(moved) if moved else active[:0]
            if not active.size:
                break
        s, c = self.evaluate(X)
        return X, s, c, c <= budgets

    def _term_stack(self) -> tuple:
        """Every term on every variable v, for ``_greedy``: stacked tables (E, S, S) of
        score and cost indexed [term, value of the other end u, value of v] (a gather by
        u then copies contiguous rows), the other end of each term, and where each
        variable's terms start (they are sorted by v). v's unary is a term of its own
        with u = v, constant along u. Axes are padded to the largest choice count S
        (padding: score -inf, cost 0)."""
        if self._terms is None:
            S = int(self.sizes.max())
            sp, cp = self.score._pairs, self.cost._pairs
            per = [[(v, self.score._unary[v][:, None], self.cost._unary[v][:, None])]
                   for v in range(self.n)]
            for i, j in sorted(set(sp) | set(cp)):
                zero = np.zeros((self.sizes[i], self.sizes[j]))
                t_s, t_c = sp.get((i, j), zero), cp.get((i, j), zero)
                per[i].append((j, t_s, t_c))
                per[j].append((i, t_s.T, t_c.T))
            flat = [t for terms in per for t in terms]
            ts = np.full((len(flat), S, S), NEG)
            tc = np.zeros((len(flat), S, S))
            for k, (_, t_s, t_c) in enumerate(flat):
                ts[k, : S if t_s.shape[1] == 1 else t_s.shape[1], : t_s.shape[0]] = t_s.T
                tc[k, : S if t_c.shape[1] == 1 else t_c.shape[1], : t_c.shape[0]] = t_c.T
            u = np.array([t[0] for t in flat], dtype=np.int64)
            start = np.cumsum([0] + [len(terms) for terms in per[:-1]])
            self._terms = (ts, tc, u, start)
        return self._terms

    def pareto_front(self, ranges: int = 32, probes: int = 10, span: float = 0.005
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The exact score/cost Pareto front: assignments (P, n), costs (P,), scores (P,),
        sorted by cost with strictly increasing scores; for any budget the exact answer
        is the last point under it.

        Known front points first, cheaply: the upper convex hull's vertices (max-sum
        alone, ``hull_vertices``; chords shorter than ``span`` of the cost range are not
        split), and between every two of them the greedy single-width search
        (``_greedy``) at ``probes`` budgets, from both ends. The multi-objective
        elimination then drops every label whose completions these points all dominate
        (Lagrangian bounds over ``ranges`` cost ranges, ``_FrontBounds``). The parameters
        change the speed only: the closer the known points are to the front, the fewer
        labels are left; what is left always includes every front point.
        """
        fast, top = self.fastest(), self.best_unconstrained()
        hull = self.hull_vertices((top.cost - fast.cost) * span)
        Hc = np.array([d.cost for d in hull])
        Hs = np.array([d.score for d in hull])
        if len(hull) > 1 and probes > 0:
            HX = np.array([d.idx for d in hull])
            t = np.linspace(0.0, 1.0, probes + 1)[1:]
            a = np.repeat(np.arange(len(hull) - 1), t.size)
            budgets = Hc[a] + np.tile(t, len(hull) - 1) * (Hc[a + 1] - Hc[a]) * (1 - 1e-9)
            _, s, c, _ = self._greedy(np.vstack([HX[a], HX[a + 1]]), np.r_[budgets, budgets])
            Hc, Hs = np.r_[Hc, c[np.isfinite(s)]], np.r_[Hs, s[np.isfinite(s)]]
        k = _pareto_keep(np.zeros(Hc.size, dtype=np.int64), Hc, Hs)
        run = _LabelRun(self, front=_FrontBounds(Hc[k], Hs[k], ranges))
        if run.root is None:
            return (np.zeros((0, self.n), dtype=np.int64), np.zeros(0), np.zeros(0))
        paths = run.backtrack(np.arange(run.root.cost.size))
        s, c = self.evaluate(paths)
        return paths, c, s

    def hull_vertices(self, min_span: float = 0.0) -> list[Decoded]:
        """Every vertex of the upper convex hull of (cost, score) from the fastest to the
        best configuration, by cost: a chord between two known vertices is split by the
        max-sum decode at its slope when that finds a point above it; all chords of one
        round in one batched pass. Known vertices and adjacent pairs are reused and
        recorded (the Lagrangian hull walk then needs no decode). Chords shorter in cost
        than ``min_span`` are left unsplit (then not every vertex is returned)."""
        fast, top = self.fastest(), self.best_unconstrained()
        pts = {d.cost: d for d in self._hull.values() if fast.cost <= d.cost <= top.cost}
        pts[fast.cost], pts[top.cost] = fast, top
        known = sorted(pts.values(), key=lambda d: d.cost)
        # keep strictly increasing scores (the fastest may tie the next in score)
        known = [d for k, d in enumerate(known) if k == 0 or d.score > known[k - 1].score]
        pend = list(zip(known[:-1], known[1:]))
        while pend:
            pend = [(a, b) for a, b in pend if (a.cost, b.cost) not in self._adjacent
                    and b.cost - a.cost >= min_span]
            if not pend:
                break
            g = np.array([(b.score - a.score) / (b.cost - a.cost) for a, b in pend])
            paths, s, c = self._decode(g)
            nxt = []
            for (a, b), x, sk, ck, gk in zip(pend, paths, s, c, g):
                ref = a.score - gk * a.cost
                if sk - gk * ck > ref + 1e-12 * max(1.0, abs(ref)) and a.cost < ck < b.cost:
                    d = Decoded(x, float(sk), float(ck))
                    self._hull.setdefault(d.cost, d)
                    pts[d.cost] = d
                    nxt += [(a, d), (d, b)]
                else:
                    self._adjacent.add((a.cost, b.cost))
            pend = nxt
        out = sorted(pts.values(), key=lambda d: d.cost)
        return [d for k, d in enumerate(out) if k == 0 or d.score > out[k - 1].score]


# ============================================== multi-objective elimination
_LOCAL, _MSG, _MERGE = 0, 1, 2


class _Factor:
    """Pareto labels over the assignments of a scope (variables by elimination position).

    Labels are sorted by group z (flat assignment of the scope, C order) with group
    pointers ``ptr``; within a group, by cost with strictly increasing scores. ``kind``
    says how to read a label's assignment back: a local term (its z), a child's message
    (``src`` = (child's final factor, its separator size, child), ``idx`` = label there),
    or a merge of two factors (``src`` = (f, g), ``idx`` = (label in f, label in g)).
    ``bnd`` holds dense bound tables over the bucket's scope (broadcastable), one per
    bound channel of the run: "c" minus the cheapest cost of any of its labels, "s" the
    best score, "l" the best score - gamma * cost (a trailing axis, one per gamma).
    """

    __slots__ = ("scope", "shape", "z", "ptr", "cost", "score", "kind", "src", "idx", "bnd")

    def __init__(self, scope, shape, z, cost, score, kind, src=None, idx=None, ptr=None):
        self.scope, self.shape = scope, shape
        self.z, self.cost, self.score = z, cost, score
        self.ptr = np.searchsorted(z, np.arange(math.prod(shape) + 1)) if ptr is None else ptr
        self.kind, self.src, self.idx = kind, src, idx
        self.bnd: dict[str, np.ndarray] = {}

    @property
    def groups(self) -> int:
        return self.ptr.size - 1


def _pareto_keep(group: np.ndarray, cost: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of the labels that no label of their group dominates (lower or equal cost
    and higher or equal score; of exact duplicates one stays), sorted by (group, cost).

    Sorted by (group, cost), a label survives iff its score beats every earlier score of
    its group (``_group_record``); of labels of equal group and cost that survive, only
    the last, the best, stays. The sort is an unstable argsort of the costs, then a
    stable (radix, for 16-bit groups) argsort of the groups."""
    n = group.size
    if n <= 1:
        return np.arange(n)
    if n < 4096:  # small: fewer numpy calls win; the score is replaced by its dense rank
        order = np.lexsort((-score, cost, group))
        _, rank = np.unique(score[order], return_inverse=True)
        key = group[order] * n + rank.reshape(-1)
        keep = np.empty(n, dtype=bool)
        keep[0] = True
        keep[1:] = key[1:] > np.maximum.accumulate(key)[:-1]
        return order[keep]
    order = np.argsort(cost)
    if group.max() > group.min():
        g = group[order]
        if g.max() < 65536:
            g = g.astype(np.uint16)
        order = order[np.argsort(g, kind="stable")]
    g, c = group[order], cost[order]
    keep = _group_record(g, score[order])
    k = np.flatnonzero(keep)
    tie = (g[k[1:]] == g[k[:-1]]) & (c[k[1:]] == c[k[:-1]])
    keep[k[:-1][tie]] = False
    return order[keep]


def _group_record(g: np.ndarray, s: np.ndarray) -> np.ndarray:
    """For s in runs of equal g: is s above every earlier s of its run (a record)?

    A running maximum per run, without a Python loop over the runs: the runs are laid
    out as the columns of a -inf padded matrix and accumulated down them. The few
    runs much longer than the average (which would make the padding large) are
    accumulated one by one instead."""
    n = s.size
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, n])
    prev = np.empty(n)
    long = sizes > max(64, 4 * n // starts.size)
    for a, m in zip(starts[long], sizes[long]):
        prev[a] = NEG
        prev[a + 1: a + m] = np.maximum.accumulate(s[a: a + m - 1])
    if not long.all():
        short = np.repeat(~long, sizes)
        st, sz = starts[~long], sizes[~long]
        row = np.repeat(np.arange(st.size), sz)
        col = np.arange(row.size) - np.repeat(np.cumsum(sz) - sz, sz)
        # one column per run: the accumulation then runs along contiguous rows
        mat = np.full((int(sz.max()), st.size), NEG)
        mat[col, row] = s[short]
        acc = np.maximum.accumulate(mat, axis=0)
        prev[short] = np.where(col > 0, acc[np.maximum(col - 1, 0), row], NEG)
    return s > prev


def _seg_search(arr: np.ndarray, lo: np.ndarray, hi: np.ndarray, target: np.ndarray,
                strict: bool) -> np.ndarray:
    """Per window lo..hi of ``arr`` (increasing within a window): the first index whose
    value is >= target (> target if ``strict``); hi if none. A vectorised binary search,
    all windows at once."""
    lo, hi = lo.copy(), hi.copy()
    live = np.flatnonzero(lo < hi)
    while live.size:
        mid = (lo[live] + hi[live]) // 2
        v, t = arr[mid], target[live]
        right = v < t if not strict else v <= t
        lo[live[right]] = mid[right] + 1
        hi[live[~right]] = mid[~right]
        live = live[lo[live] < hi[live]]
    return lo


def _ragged_pairs(counts: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For items i with counts[i] partners at starts[i], starts[i] + 1, ...: every pair
    (i, partner), as two flat arrays (a ragged Minkowski product without a Python loop)."""
    total = int(counts.sum())
    rep = np.repeat(np.arange(counts.size), counts)
    first = np.cumsum(counts) - counts
    partner = np.arange(total) - np.repeat(first - starts, counts)
    return rep, partner


class _FrontBounds:
    """What the Pareto-front run prunes against: known configurations K (real ones, with
    their exact costs and scores), non-dominated, so that the costs Kc and scores Ks are
    both strictly increasing, and the steps of their staircase (step k: costs
    [Kc[k], Kc[k+1]), best known score Ks[k]) cut into ranges of consecutive steps, each
    with a Lagrange multiplier (the slope of its chord). A front point is never
    dominated by K, so its labels always survive the test below.

    A label whose completions all have cost >= c_lb, score <= A0 and, for each range's
    gamma, score <= A + gamma * cost, can only make front points at costs c where one of
    these bounds reaches stair(c). Over the steps of range j below the cost where the
    staircase passes A0, that is A_j + max_k (gamma_j * Kc[k+1] - Ks[k]) >= 0 (the line
    is highest at a step's right end): a range maximum, from a sparse table.
    """

    def __init__(self, Kc: np.ndarray, Ks: np.ndarray, ranges: int):
        self.Kc, self.Ks = Kc, Ks
        self.tol_c = 1e-9 * max(1.0, float(np.abs(Kc).max()))
        self.tol_s = 1e-9 * max(1.0, float(np.abs(Ks).max()))
        steps = Kc.size - 1
        cuts = np.unique(np.round(np.linspace(0, steps, min(ranges, steps) + 1)).astype(int))
        self.start, self.end = cuts[:-1], cuts[1:] - 1  # inclusive step ranges
        self.gammas = (Ks[cuts[1:]] - Ks[cuts[:-1]]) / (Kc[cuts[1:]] - Kc[cuts[:-1]])
        if steps == 0:
            return
        self.range_of = np.repeat(np.arange(self.gammas.size), self.end - self.start + 1)
        table = [self.gammas[self.range_of] * Kc[1:] - Ks[:-1]]
        while 2 ** len(table) <= steps:
            h = 2 ** (len(table) - 1)
            prev = table[-1]
            table.append(np.concatenate([np.maximum(prev[:-h], prev[h:]), prev[-h:]]))
        self.table = np.array(table)

    def screen(self, cost_lb: np.ndarray, A0: np.ndarray):
        """The cheap part of the test, per label: ``sure`` (below the first known point,
        or may reach the best known score: kept unproven), ``live`` (the staircase at
        its cheapest completion does not beat A0 already), and kl, the step of its
        cheapest completion (the first step to prove)."""
        klo = np.searchsorted(self.Kc, cost_lb - self.tol_c, side="right") - 1
        sure = (klo < 0) | (A0 + self.tol_s >= self.Ks[-1])
        live = sure | (self.Ks[np.maximum(klo, 0)] <= A0 + self.tol_s)
        return sure, live, klo

    def last_step(self, A0: np.ndarray) -> np.ndarray:
        """The last step to prove: the staircase beats A0 from the next known point on."""
        return np.searchsorted(self.Ks, A0 + self.tol_s, side="right") - 1

    def prove(self, kl: np.ndarray, kh: np.ndarray, A) -> np.ndarray:
        """Which labels are dominated on all their steps kl..kh, given ``A(i, j)`` their
        Lagrangian intercepts for ranges j. A label is cleared as soon as one range fails
        to prove it dominated; ranges are tried from the cheap end, and only the labels
        still undecided go on to the next."""
        dominated = np.ones(kl.size, dtype=bool)
        if not self.gammas.size:
            return dominated
        todo = np.arange(kl.size)
        j, jend = self.range_of[kl], self.range_of[kh]
        while todo.size:
            lo, hi = np.maximum(kl, self.start[j]), np.minimum(kh, self.end[j])
            p = np.frexp(hi - lo + 1)[1] - 1  # floor(log2), exactly
            m = np.maximum(self.table[p, lo], self.table[p, hi - (1 << p) + 1])
            fail = A(todo, j) + m >= -self.tol_s
            dominated[todo[fail]] = False
            go = ~fail & (j < jend)
            todo, kl, kh, j, jend = todo[go], kl[go], kh[go], j[go] + 1, jend[go]
        return dominated


class _LabelRun:
    """One run of multi-objective bucket elimination (``GraphBudgetProblem``'s exact
    decode and Pareto front).

    Every bucket starts from a pool of factors: its local terms (v's unary, each pairwise
    term it holds) and its children's messages. The two factors whose merge is expected
    to make the fewest candidate labels are merged first (a ragged Minkowski sum per
    assignment of the union scope, then a dominance filter per assignment), so that
    messages over {v} alone meet at |S_v| groups, not at every assignment of the scope.
    Eliminating v keeps, per separator assignment, the non-dominated labels over v's
    values. The virtual root merges the components' messages: its labels are the front.

    Pruning bounds "all else" (everything outside a label) by the bucket's outside
    messages (downward max passes) plus the upward bounds of the factors still in the
    pool. With a budget (exact decode), a label is dropped when its cost plus the
    cheapest completion exceeds the budget, or when its score - gamma * cost plus the
    best Lagrangian completion plus gamma * budget is below the incumbent. For the front
    (``front``), when all its completions are dominated by known front points.
    """

    def __init__(self, prob: GraphBudgetProblem, budget=None, gamma=None, incumbent=None,
                 front: _FrontBounds | None = None):
        self.plan = prob.plan
        self.prob, self.front = prob, front
        self.budget, self.gamma, self.incumbent = budget, gamma, incumbent
        self.lagb = (budget is not None and gamma is not None and incumbent is not None
                     and bool(np.isfinite(incumbent)))
        self.bounded = budget is not None or front is not None
        self.gammas = np.array([gamma], dtype=np.float64) if self.lagb else \
            (front.gammas if front is not None and front.gammas.size else None)
        self.up: dict[str, list] = {}
        self.out: dict[str, list] = {}
        self.batch: dict[str, tuple] = {}
        if self.bounded:
            self._channel("c", [np.where(np.isfinite(s), -c, NEG)
                                for s, c in zip(prob.s_local, prob.c_local)], ())
        if self.gammas is not None:
            g = self.gammas
            self._channel("l", [s[..., None] - c[..., None] * g
                                for s, c in zip(prob.s_local, prob.c_local)], (g.size,))
        if front is not None:
            self._channel("s", prob.s_local, ())
        if budget is not None:
            self.tol_c = 1e-9 * max(1.0, abs(budget))
        if self.lagb:
            self.tol_s = 1e-9 * max(1.0, abs(incumbent))
        self.root: _Factor | None = self._run()

    def _channel(self, name: str, local: list[np.ndarray], batch: tuple) -> None:
        _, up = self.plan.upward(local, _reduce_max, batch)
        self.up[name], self.batch[name] = up, batch
        self.out[name] = self.plan.downward(local, up, _reduce_max, batch)

    # --------------------------------------------------------------- bounds
    def _rest(self, b: int, scope: tuple, others: list[_Factor]) -> dict[str, np.ndarray]:
        """Per bound channel, the bound on all but one factor of bucket b (its outside
        and ``others``) as a table over ``scope``'s flat assignments, maximised over the
        bucket's variables not in ``scope``."""
        plan = self.plan
        full = plan.shape[b]
        keep = {plan.scope[b].index(u) for u in scope}
        axes = tuple(k for k in range(len(full)) if k not in keep)
        res = {}
        for name, out in self.out.items():
            batch = self.batch[name]
            acc = out[b].reshape(plan.oshape[b] + batch)
            for f in others:
                acc = acc + f.bnd[name]
            acc = np.broadcast_to(acc, full + batch)
            red = np.max(acc, axis=axes) if axes else acc
            res[name] = np.ascontiguousarray(red).reshape((-1,) + batch)
        return res

    def _ok(self, z, cost, score, rest: dict[str, np.ndarray]) -> np.ndarray:
        """Budget pruning (exact decode)."""
        ok = cost - rest["c"][z] <= self.budget + self.tol_c
        if self.lagb:
            g = self.gamma
            ok &= (score - g * cost + rest["l"][z, 0] + g * self.budget
                   >= self.incumbent - self.tol_s)
        return ok

    # ------------------------------------------------------------- factors
    def _locals(self, b: int) -> list[_Factor]:
        out = []
        for scope, shape, z, ptr, cost, score, s2, c2, bc in self.prob._local_factors()[b]:
            f = _Factor(scope, shape, z, cost, score, _LOCAL, ptr=ptr)
            if self.bounded:
                f.bnd["c"] = bc
            if self.gammas is not None:
                f.bnd["l"] = s2[..., None] - c2[..., None] * self.gammas
            if self.front is not None:
                f.bnd["s"] = s2
            out.append(f)
        return out

    def _merge(self, b: int, f: _Factor, g: _Factor, others: list[_Factor]) -> _Factor:
        pos = self.plan.pos
        scope = tuple(sorted(set(f.scope) | set(g.scope), key=lambda u: pos[u]))
        shape = tuple(int(self.plan.sizes[u]) for u in scope)
        pf, pg = self._proj(scope, shape, f.scope), self._proj(scope, shape, g.scope)
        rest = self._rest(b, scope, others) if self.bounded else None
        # every (assignment of the union scope, label of f) ...
        rep1, i_f = _ragged_pairs(np.diff(f.ptr)[pf], f.ptr[pf])
        # ... with the labels of g in its group, or only those in a window that can pass
        gg = pg[rep1]
        lo, hi = g.ptr[gg], g.ptr[gg + 1]
        if self.front is not None:
            lo, hi = self._window(rep1, f.cost[i_f], f.score[i_f], g, lo, hi, rest)
        rep2, i_g = _ragged_pairs(np.maximum(hi - lo, 0), lo)
        z, i_f = rep1[rep2], i_f[rep2]
        cost, score = f.cost[i_f] + g.cost[i_g], f.score[i_f] + g.score[i_g]
        if self.front is not None:
            z, i_f, i_g, cost, score = self._front_prune(rest, z, i_f, i_g, cost, score)
            keep = slice(None)
        else:
            if self.bounded:
                ok = self._ok(z, cost, score, rest)
                z, i_f, i_g, cost, score = z[ok], i_f[ok], i_g[ok], cost[ok], score[ok]
            keep = _pareto_keep(z, cost, score)
        h = _Factor(scope, shape, z[keep], cost[keep], score[keep], _MERGE, (f, g),
                    (i_f[keep], i_g[keep]))
        if self.front is not None:
            h.bnd = self._label_bounds(h, self._bshape(b, scope))
        elif self.bounded:
            h.bnd = {k: f.bnd[k] + g.bnd[k] for k in f.bnd}
        return h

    def _window(self, zh, cf, sf, g: _Factor, lo, hi, rest, rounds: int = 3):
        """For every (assignment zh, label of f with cost cf and score sf): the labels of
        g, a group sorted by cost with increasing scores, that can pass the screen form
        a window lo..hi (front mode). Too expensive: its completions cost at least
        cf + d + the rest's cheapest, and the known point above the best score it can
        reach caps that. Too poor: the staircase at its cheapest completion must not
        beat what it can reach. The ends are found by a binary search per window, all
        windows at once; as the window shrinks, its own ends give tighter best score and
        cheapest cost, so a few rounds narrow it further. The screen then tests every
        candidate left in it."""
        F, rc, rs = self.front, -rest["c"][zh], rest["s"][zh]
        for _ in range(rounds):
            ok = hi > lo
            first, last = np.where(ok, lo, 0), np.where(ok, hi - 1, 0)
            kstar = np.searchsorted(F.Ks, sf + g.score[last] + rs + F.tol_s, side="right")
            dmax = np.where(kstar < F.Ks.size, F.Kc[np.minimum(kstar, F.Ks.size - 1)]
                            - cf - rc + 2 * F.tol_c, np.inf)
            k0 = np.searchsorted(F.Kc, cf + g.cost[first] + rc - F.tol_c, side="right") - 1
            tmin = np.where(k0 >= 0, F.Ks[np.maximum(k0, 0)] - sf - rs - 2 * F.tol_s, NEG)
            new_lo = _seg_search(g.score, lo, hi, tmin, strict=False)
            new_hi = _seg_search(g.cost, new_lo, hi, dmax, strict=True)
            if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
                break
            lo, hi = new_lo, new_hi
        return lo, hi

    def _label_bounds(self, f: _Factor, bshape: tuple) -> dict[str, np.ndarray]:
        """Bound tables of a factor from its own labels (per group: the cheapest cost,
        best score, best score - gamma * cost; -inf for an empty group), shaped to
        broadcast over the bucket's scope. They are tighter than the dense upward
        messages: labels pruned below can no longer be part of a completion."""
        ptr = f.ptr
        full = ptr[1:] > ptr[:-1]
        first = ptr[:-1][full]
        out = {}
        for k in self.up:
            batch = self.batch[k]
            t = np.full((f.groups,) + batch, NEG)
            if k == "c":
                t[full] = -f.cost[first]
            elif k == "s":
                t[full] = f.score[ptr[1:][full] - 1]  # scores increase along a group
            elif first.size:
                lag = f.score[:, None] - f.cost[:, None] * self.gammas[None]
                t[full] = np.maximum.reduceat(lag, first, axis=0)
            out[k] = t.reshape(bshape + batch)
        return out

    def _front_prune(self, rest, z, i_f, i_g, cost, score):
        """Front mode: the cheap screen, the dominance filter, then the range proofs on
        the survivors only (the proofs cost most). The filters commute (a label dominated
        in its group has weaker bounds than the one dominating it), so when a sample
        shows that the screen would pass nearly everything (far from the root, where
        the rest's bounds are loose), the dominance filter goes first."""
        screen = self.front.screen
        n = z.size
        if n > 65536:
            k = np.arange(0, n, n // 1024)
            _, live, _ = screen(cost[k] - rest["c"][z[k]], score[k] + rest["s"][z[k]])
            if live.mean() > 0.8:
                keep = _pareto_keep(z, cost, score)
                z, i_f, i_g, cost, score = z[keep], i_f[keep], i_g[keep], cost[keep], score[keep]
                n = 0
        sure, live, kl = screen(cost - rest["c"][z], score + rest["s"][z])
        z, i_f, i_g, cost, score = z[live], i_f[live], i_g[live], cost[live], score[live]
        sure, kl = sure[live], kl[live]
        if n:
            keep = _pareto_keep(z, cost, score)
            z, i_f, i_g, cost, score = z[keep], i_f[keep], i_g[keep], cost[keep], score[keep]
            sure, kl = sure[keep], kl[keep]
        ok = self._front_proofs(rest, z, cost, score, sure, kl)
        return z[ok], i_f[ok], i_g[ok], cost[ok], score[ok]

    def _front_proofs(self, rest, z, cost, score, sure, kl) -> np.ndarray:
        """The range proofs of ``_FrontBounds.prove`` for the labels not ``sure``."""
        todo = np.flatnonzero(~sure)
        zt, st, ct, gam = z[todo], score[todo], cost[todo], self.gammas
        kh = self.front.last_step(st + rest["s"][zt])
        drop = self.front.prove(kl[todo], kh,
                                lambda i, j: st[i] - gam[j] * ct[i] + rest["l"][zt[i], j])
        ok = np.ones(z.size, dtype=bool)
        ok[todo[drop]] = False
        return ok

    def _bshape(self, b: int, scope: tuple) -> tuple:
        return tuple(int(self.plan.sizes[u]) if u in scope else 1 for u in self.plan.scope[b])

    def _proj(self, scope: tuple, shape: tuple, sub: tuple) -> np.ndarray:
        """Flat index into ``sub``'s assignments of every flat assignment of ``scope``."""
        cache = self.plan._proj
        key = (scope, sub)
        if key not in cache:
            G = math.prod(shape)
            if not sub:
                cache[key] = np.zeros(G, dtype=np.int64)
            else:
                coords = np.unravel_index(np.arange(G), shape)
                cache[key] = np.ravel_multi_index(
                    [coords[scope.index(u)] for u in sub],
                    tuple(int(self.plan.sizes[u]) for u in sub))
        return cache[key]

    # ----------------------------------------------------------------- run
    def _run(self) -> _Factor | None:
        plan = self.plan
        msgs: dict[int, _Factor] = {}
        for b in plan.up:
            pool = [] if b == plan.root else self._locals(b)
            for c in plan.children[b]:
                m = msgs.pop(c)
                if self.front is not None:
                    m.bnd = self._label_bounds(m, plan.bshape[c])
                elif self.bounded:
                    m.bnd = {k: up[c].reshape(plan.bshape[c] + self.batch[k])
                             for k, up in self.up.items()}
                pool.append(m)
            while len(pool) > 1:
                i, j = self._pick(pool)
                others = [f for k, f in enumerate(pool) if k != i and k != j]
                pool = others + [self._merge(b, pool[i], pool[j], others)]
            F = pool[0]
            if F.cost.size == 0:
                return None
            if b == plan.root:
                return F
            # eliminate v, the first axis of its scope: the separator index is z mod rest
            rest = math.prod(F.shape[1:])
            grp = F.z % rest
            sel = _pareto_keep(grp, F.cost, F.score)
            msgs[b] = _Factor(F.scope[1:], F.shape[1:], grp[sel], F.cost[sel], F.score[sel],
                              _MSG, (F, rest, b), sel)
        raise AssertionError("the virtual root is the last bucket")

    def _pick(self, pool: list[_Factor]) -> tuple[int, int]:
        """The pair expected to make the fewest candidates: labels per group of each,
        times the number of assignments of the union scope."""
        sizes = self.plan.sizes
        best = None
        for i, j in itertools.combinations(range(len(pool)), 2):
            f, g = pool[i], pool[j]
            G = math.prod(int(sizes[u]) for u in set(f.scope) | set(g.scope))
            est = f.cost.size * g.cost.size * G / (f.groups * g.groups)
            if best is None or est < best[0]:
                best = (est, i, j)
        return best[1], best[2]

    # ------------------------------------------------------------ read back
    def backtrack(self, J: np.ndarray) -> np.ndarray:
        """Assignments (len(J), n) of the root's labels J, vectorised over the labels."""
        out = np.zeros((len(J), self.plan.n), dtype=np.int64)
        stack = [(self.root, np.asarray(J, dtype=np.int64))]
        while stack:
            f, idx = stack.pop()
            if f.kind == _MERGE:
                stack.append((f.src[0], f.idx[0][idx]))
                stack.append((f.src[1], f.idx[1][idx]))
            elif f.kind == _MSG:
                F, rest, v = f.src
                j = f.idx[idx]
                out[:, v] = F.z[j] // rest
                stack.append((F, j))
        return out


def _best_under(prob: GraphBudgetProblem, run: _LabelRun, budget: float):
    """The best root label under the budget, re-checked with the canonical summation
    (``evaluate``): never a configuration over the budget."""
    if run.root is None:
        return None
    cost, score = run.root.cost, run.root.score
    cand = np.flatnonzero(cost <= budget + 1e-9 * max(1.0, abs(budget)))
    if cand.size == 0:
        return None
    cand = cand[np.argsort(-score[cand], kind="stable")][:8]
    paths = run.backtrack(cand)
    s, c = prob.evaluate(paths)
    ok = np.flatnonzero(c <= budget)
    if ok.size == 0:
        return None
    k = ok[np.argmax(s[ok])]
    return paths[k], float(s[k]), float(c[k])
