"""The latency-constrained decode on a width graph: the Lagrangian relaxation walked
exactly on the upper convex hull, the exact budgeted optimum with no duality gap and the
exact Pareto front (multi-objective elimination, ``aows.graph.labels``). See
``aows.graph``."""

from __future__ import annotations

import numpy as np

from aows.chain import (
    NEG,
    BudgetError,
    Decoded,
    LagrangianProblem,
)
from aows.graph.labels import _best_under, _FrontBounds, _LabelRun, pareto_keep
from aows.graph.model import WidthGraph, _Plan


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
        k = pareto_keep(np.zeros(Hc.size, dtype=np.int64), Hc, Hs)
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
