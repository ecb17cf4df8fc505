"""Multi-objective bucket elimination: Pareto sets of (cost, score) labels per separator
assignment, merged bucket by bucket, pruned by the budget and by Lagrangian bounds
against an incumbent or known front points. See ``aows.graph``."""

from __future__ import annotations

import itertools
import math

import numpy as np

from aows.chain import NEG
from aows.graph.model import _reduce_max

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


def pareto_keep(group: np.ndarray, cost: np.ndarray, score: np.ndarray) -> np.ndarray:
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

    def __init__(self, prob, budget=None, gamma=None, incumbent=None,
                 front: _FrontBounds | None = None):
        # prob: the ``aows.graph.budget.GraphBudgetProblem`` that runs this elimination
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
            keep = pareto_keep(z, cost, score)
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
                keep = pareto_keep(z, cost, score)
                z, i_f, i_g, cost, score = z[keep], i_f[keep], i_g[keep], cost[keep], score[keep]
                n = 0
        sure, live, kl = screen(cost - rest["c"][z], score + rest["s"][z])
        z, i_f, i_g, cost, score = z[live], i_f[live], i_g[live], cost[live], score[live]
        sure, kl = sure[live], kl[live]
        if n:
            keep = pareto_keep(z, cost, score)
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
            sel = pareto_keep(grp, F.cost, F.score)
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


def _best_under(prob, run: _LabelRun, budget: float):
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
