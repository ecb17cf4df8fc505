"""The width graph: a pairwise MRF over width variables, its elimination plan (greedy
min-fill), and the exact computations on it by variable elimination: max-sum with
argmax back-tracking, log-space sum-product (marginals, exact joint samples of
p_T(c) ~ exp(score / T)). See ``aows.graph``."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from aows import brute
from aows.chain import (
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


def induced_width(n: int, edges: Iterable[tuple[int, int]]) -> int:
    """The induced width of the greedy min-fill orders the solvers use (with and without
    the ``fresh_first`` tie-break), the larger of the two: whether a graph of ``n``
    variables and these edges (between variables of several choices) is eliminated."""
    edges = set(edges)
    return max(max((len(s) for s in _min_fill_order(n, edges, fresh)[1]), default=0)
               for fresh in (False, True))


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
        """All assignments (K, n) and their scores (``aows.brute``: small graphs only)."""
        return brute.brute_force(self.sizes, self.scores)
