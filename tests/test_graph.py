"""The width-graph solvers against brute force, the chain solvers, and a MILP."""

import itertools

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp
from scipy import stats

from aows.brute import brute_force_problem, brute_front
from aows.chain import BudgetError, BudgetProblem, Chain
from aows.graph import (
    MAX_WIDTH,
    GraphBudgetProblem,
    GraphError,
    WidthGraph,
)
from aows.graph.labels import _best_under, _FrontBounds, _LabelRun

STRUCTURES = ("tree", "cycle", "triangles", "hub", "disconnected", "dense")


def random_edges(rng, n, kind):
    """Edge lists of the shapes residual networks make (and a few more)."""
    if kind == "tree":
        return [(int(rng.integers(0, v)), v) for v in range(1, n)]
    if kind == "cycle":
        return [(v, (v + 1) % n) for v in range(n)] if n >= 3 else [(0, 1)]
    if kind == "triangles":  # S - a - b - S, then a tail
        edges = [(0, 1), (1, 2), (2, 0)] if n >= 3 else [(0, 1)]
        return edges + [(v - 1, v) for v in range(3, n)]
    if kind == "hub":  # a hub with several triangles and maybe a pendant
        edges = []
        for a in range(1, n - 1, 2):
            edges += [(0, a), (a, a + 1), (a + 1, 0)]
        return edges + ([(0, n - 1)] if n % 2 == 0 else [])
    if kind == "disconnected":
        k = int(rng.integers(1, n))
        left = [(int(rng.integers(0, v)), v) for v in range(1, k)]
        right = [(v - 1, v) for v in range(k + 1, n)]
        if n - k >= 3 and rng.random() < 0.5:
            right.append((k, n - 1))
        return left + right
    if kind == "dense":
        return [(i, j) for i, j in itertools.combinations(range(n), 2) if rng.random() < 0.6]
    raise ValueError(kind)


def random_graph(rng, kind=None, n=None, max_s=4, neg_inf=0.1, ties=False, sizes=None):
    """A random graph of the given shape, of induced width at most MAX_WIDTH (a dense
    draw over the limit is drawn again)."""
    while True:
        g = _random_graph(rng, kind, n, max_s, neg_inf, ties, sizes)
        if g.width() <= MAX_WIDTH:
            return g


def _random_graph(rng, kind, n, max_s, neg_inf, ties, sizes):
    kind = kind or STRUCTURES[int(rng.integers(len(STRUCTURES)))]
    n = n or int(rng.integers(2, 7))
    sizes = rng.integers(1, max_s + 1, size=n) if sizes is None else sizes
    draw = (lambda *sh: rng.integers(-2, 3, size=sh).astype(float)) if ties else \
        (lambda *sh: rng.normal(size=sh))
    unary = [draw(s) for s in sizes]
    pairwise = []
    for i, j in random_edges(rng, n, kind):
        if rng.random() < 0.5:  # either orientation
            pairwise.append(((j, i), draw(sizes[j], sizes[i])))
        else:
            pairwise.append(((i, j), draw(sizes[i], sizes[j])))
    for arr in unary + [t for _, t in pairwise]:
        arr[rng.random(arr.shape) < neg_inf] = -np.inf
    return WidthGraph(unary, pairwise)


def random_problem(rng, kind=None, n=None, ties=False, neg_inf=0.05, max_s=4):
    while True:
        try:
            return _random_problem(rng, kind, n, ties, neg_inf, max_s)
        except GraphError:  # the union of both graphs' edges is too wide: draw again
            continue


def _random_problem(rng, kind, n, ties, neg_inf, max_s):
    score = random_graph(rng, kind, n, max_s=max_s, neg_inf=neg_inf, ties=ties)
    sizes = score.sizes
    # the cost graph has its own edges: the structure is the union of both
    edges = list(score.edges) + random_edges(rng, score.n, "tree")
    cost_u = [rng.uniform(0, 1, size=s) for s in sizes]
    cost_p = [((i, j), rng.uniform(0, 2, size=(sizes[i], sizes[j]))) for i, j in edges]
    if ties:
        cost_u = [np.round(c * 4) / 4 for c in cost_u]
        cost_p = [(e, np.round(c * 4) / 4) for e, c in cost_p]
    return GraphBudgetProblem(score, WidthGraph(cost_u, cost_p))


# ----------------------------------------------------------------- inference
@pytest.mark.parametrize("ties", [False, True])
def test_maxsum_equals_brute_force(ties):
    rng = np.random.default_rng(0)
    for it in range(400):
        g = random_graph(rng, STRUCTURES[it % len(STRUCTURES)], ties=ties)
        _, scores = g.brute_force()
        idx, best = g.maxsum()
        if np.isneginf(scores.max()):
            assert np.isneginf(best)
            continue
        assert best == pytest.approx(scores.max(), abs=1e-12)
        assert g.score(idx) == pytest.approx(best, abs=1e-12)


def test_marginals_match_brute_force():
    rng = np.random.default_rng(1)
    checked = 0
    for it in range(300):
        g = random_graph(rng, STRUCTURES[it % len(STRUCTURES)], neg_inf=0.05)
        allc, scores = g.brute_force()
        if not np.isfinite(scores.max()):
            with pytest.raises(ValueError):
                g.marginals()
            continue
        for T in (1.0, 0.3, 1e-4):
            w = np.exp((scores - scores.max()) / T)
            w /= w.sum()
            marg = g.marginals(T)
            for v, mv in enumerate(marg):
                ref = np.bincount(allc[:, v], weights=w, minlength=g.sizes[v])
                np.testing.assert_allclose(mv, ref, atol=1e-9)
        checked += 1
    assert checked > 250


def test_marginals_stable_at_tiny_temperature():
    rng = np.random.default_rng(2)
    g = random_graph(rng, "hub", n=7, max_s=6, neg_inf=0.0, sizes=np.full(7, 6))
    idx, _ = g.maxsum()
    marg = g.marginals(1e-6)
    assert all(np.all(np.isfinite(m)) for m in marg)
    assert [int(np.argmax(m)) for m in marg] == list(idx)


def _chi2_pvalue(g, smp):
    """Goodness of fit of samples to p(c) ~ exp(score(c)); cells expecting fewer than 5
    draws are pooled, and no draw may land on a forbidden configuration."""
    allc, scores = g.brute_force()
    p = np.exp(scores - scores.max())
    p /= p.sum()
    keys = np.ravel_multi_index(smp.T, g.sizes)
    ref_keys = np.ravel_multi_index(allc.T, g.sizes)
    counts = np.bincount(keys, minlength=int(np.prod(g.sizes)))[ref_keys]
    assert counts[p == 0].sum() == 0
    expect = len(smp) * p
    small = expect < 5
    obs = np.r_[counts[~small], counts[small].sum()]
    exp = np.r_[expect[~small], expect[small].sum()]
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp)[1]


@pytest.mark.parametrize("method", ["joint", "marginal"])
def test_samples_chi_square(method):
    # a triangle S - a - b - S with strong couplings: the joint is far from a product
    rng = np.random.default_rng(3)
    sizes = [3, 2, 3]
    g = WidthGraph([rng.normal(size=s) for s in sizes],
                   [((0, 1), np.array([[2.0, -2], [0, 0], [-2, 2]])),
                    ((1, 2), np.array([[2.0, 0, -2], [-2, 0, 2]])),
                    ((2, 0), 2 * np.eye(3) - 1 + 0.3 * rng.normal(size=(3, 3)))])
    n = 20000
    smp = g.sample(np.random.default_rng(4), n, temperature=1.0, method=method)
    pval = _chi2_pvalue(g, smp)
    if method == "joint":
        assert pval > 1e-3, pval
    else:
        # independent draws match the marginals but not the joint distribution
        assert pval < 1e-6
        for v, mv in enumerate(g.marginals()):
            np.testing.assert_allclose(np.bincount(smp[:, v], minlength=g.sizes[v]) / n, mv,
                                       atol=0.02)


def test_joint_samples_on_random_graphs():
    rng = np.random.default_rng(5)
    pvals = []
    for it in range(12):
        g = random_graph(rng, STRUCTURES[it % len(STRUCTURES)], n=5, max_s=3, neg_inf=0.1)
        if not np.isfinite(g.brute_force()[1].max()):
            continue
        smp = g.sample(rng, 6000, temperature=0.7)
        g07 = WidthGraph([u / 0.7 for u in g.unary],
                         [(e, t / 0.7) for e, t in g.pairwise.items()])
        pvals.append(_chi2_pvalue(g07, smp))
    assert len(pvals) >= 8 and min(pvals) > 1e-4, pvals


def test_sampling_at_tiny_temperature_returns_maxsum():
    rng = np.random.default_rng(6)
    g = random_graph(rng, "hub", n=7, neg_inf=0.0, sizes=np.full(7, 7))
    idx, _ = g.maxsum()
    assert np.all(g.sample(rng, 50, temperature=1e-7) == idx[None])


# ------------------------------------------------------------------ structure
def test_terms_on_a_pair_are_summed_in_either_orientation():
    t, u = np.arange(6.0).reshape(2, 3), np.ones((3, 2))
    g = WidthGraph([np.zeros(3), np.zeros(2)], [((1, 0), t), ((0, 1), u), ((1, 0), t)])
    np.testing.assert_array_equal(g.pairwise[(0, 1)], 2 * t.T + u)
    assert g.score([2, 1]) == 2 * t[1, 2] + u[2, 1]
    with pytest.raises(ValueError, match="two different variables"):
        WidthGraph([np.zeros(2)], [((0, 0), np.zeros((2, 2)))])
    with pytest.raises(ValueError, match="shape"):
        WidthGraph([np.zeros(2), np.zeros(3)], {(0, 1): np.zeros((3, 2))})


def test_order_and_width():
    triangles = WidthGraph([np.zeros(3)] * 5, [((0, a), np.zeros((3, 3))) for a in range(1, 5)]
                           + [((1, 2), np.zeros((3, 3))), ((3, 4), np.zeros((3, 3)))])
    assert triangles.width() == 2
    # no fill-in anywhere; ties go to fewer neighbours, then to the lower index
    assert triangles.order() == [1, 2, 0, 3, 4]
    chain = WidthGraph([np.zeros(2)] * 4, [((k, k + 1), np.zeros((2, 2))) for k in range(3)])
    assert chain.width() == 1


def test_wider_than_max_width_is_refused():
    n = MAX_WIDTH + 3  # a clique of n variables has induced width n - 1
    g = WidthGraph([np.zeros(2)] * n,
                   [((i, j), np.ones((2, 2))) for i, j in itertools.combinations(range(n), 2)])
    assert g.width() == n - 1
    with pytest.raises(GraphError, match=f"induced width {n - 1}.*not solved exactly"):
        g.maxsum()
    with pytest.raises(GraphError, match="variables"):
        g.marginals()
    with pytest.raises(GraphError):
        GraphBudgetProblem(g, WidthGraph([np.ones(2)] * n, []))
    assert np.isfinite(g.brute_force()[1]).all()  # scoring still works


def test_one_choice_variables_are_folded():
    # a one-choice variable tied to everything (like a fixed input width) adds no width
    rng = np.random.default_rng(7)
    n = 6
    sizes = np.r_[1, rng.integers(2, 4, size=n - 1)]
    pairs = [((0, v), rng.normal(size=(1, sizes[v]))) for v in range(1, n)]
    pairs += [((v, 0), rng.normal(size=(sizes[v], 1))) for v in range(1, n)]
    pairs += [((v, v + 1), rng.normal(size=(sizes[v], sizes[v + 1]))) for v in range(1, n - 1)]
    g = WidthGraph([rng.normal(size=s) for s in sizes], pairs)
    assert g.width() == 1
    _, scores = g.brute_force()
    assert g.maxsum()[1] == pytest.approx(scores.max())
    prob = GraphBudgetProblem(g, WidthGraph([rng.uniform(size=s) for s in sizes],
                                            [(e, np.abs(t)) for e, t in pairs]))
    assert prob.plan.width == 1
    fc, fs = brute_front(prob)
    _, costs, scores = prob.pareto_front()
    np.testing.assert_allclose(costs, fc)
    np.testing.assert_allclose(scores, fs)


# -------------------------------------------------------------------- budgets
@pytest.mark.parametrize("ties", [False, True])
def test_budgeted_decoders_against_brute_force(ties):
    rng = np.random.default_rng(8)
    checked = 0
    for it in range(250):
        prob = random_problem(rng, STRUCTURES[it % len(STRUCTURES)], ties=ties)
        allc, s, c = brute_force_problem(prob)
        fin = np.isfinite(s)
        if not fin.any():
            continue
        budgets = list(rng.uniform(c[fin].min(), c[fin].max() * 1.05, size=4))
        budgets += list(rng.choice(c[fin], size=3))  # exactly on a configuration's cost
        for budget in budgets:
            ref = s[fin & (c <= budget)].max()
            ex = prob.exact(budget)
            lag = prob.lagrangian(budget)
            assert ex.cost <= budget and lag.cost <= budget
            assert ex.score == pytest.approx(ref, abs=1e-9)
            s_chk, c_chk = prob.evaluate(ex.idx)
            assert s_chk[0] == ex.score and c_chk[0] == ex.cost
            assert lag.score <= ex.score + 1e-9 <= lag.dual_bound + 2e-9
            bis = prob.lagrangian_bisection(budget)
            assert bis.cost <= budget and bis.score <= ex.score + 1e-9
        checked += 1
    assert checked > 200


@pytest.mark.parametrize("ties", [False, True])
def test_label_elimination_alone_with_tight_incumbents(ties):
    # exact() often needs no elimination (the greedy incumbent meets the dual bound), so
    # the pruned elimination is checked on its own: with the Lagrangian incumbent, and
    # with the optimum itself, the tightest incumbent that must not prune it away
    rng = np.random.default_rng(13)
    for it in range(150):
        prob = random_problem(rng, STRUCTURES[it % len(STRUCTURES)], ties=ties)
        allc, s, c = brute_force_problem(prob)
        fin = np.isfinite(s)
        if not fin.any():
            continue
        for budget in rng.choice(c[fin], size=3):
            ref = s[fin & (c <= budget)].max()
            lag = prob.lagrangian(budget)
            for incumbent in (lag.score, ref):
                best = _best_under(prob, _LabelRun(prob, budget, lag.gamma, incumbent), budget)
                assert best is not None and best[2] <= budget
                assert best[1] == pytest.approx(ref, abs=1e-9)


def test_budget_below_fastest_is_an_error():
    rng = np.random.default_rng(9)
    prob = random_problem(rng, "hub", n=5, neg_inf=0.0)
    fast = prob.fastest()
    allc, _ = prob.score.brute_force()
    assert fast.cost == pytest.approx(prob.cost.scores(allc).min())
    with pytest.raises(BudgetError, match="below the fastest"):
        prob.exact(fast.cost * 0.99)
    with pytest.raises(BudgetError, match=f"{fast.cost:.4g}"):
        prob.lagrangian(fast.cost * 0.99)


@pytest.mark.parametrize("ties", [False, True])
def test_pareto_front_matches_brute_force(ties):
    rng = np.random.default_rng(10)
    for it in range(150):
        prob = random_problem(rng, STRUCTURES[it % len(STRUCTURES)], ties=ties, neg_inf=0.05)
        if not np.isfinite(prob.score.brute_force()[1]).any():
            continue
        paths, costs, scores = prob.pareto_front()
        fc, fs = brute_front(prob)
        assert np.all(np.diff(costs) > 0) and np.all(np.diff(scores) > 0)
        np.testing.assert_allclose(costs, fc, rtol=0, atol=1e-12)
        np.testing.assert_allclose(scores, fs, rtol=0, atol=1e-12)
        s_chk, c_chk = prob.evaluate(paths)
        np.testing.assert_array_equal(s_chk, scores)
        np.testing.assert_array_equal(c_chk, costs)


@pytest.mark.parametrize("ties", [False, True])
def test_front_elimination_with_weak_and_perfect_known_points(ties):
    # pareto_front() seeds the elimination with near-front points; here it gets only the
    # two ends (little pruning), or the whole front (the tightest: every front point is
    # a known point, its labels must survive the bounds with nothing to spare)
    rng = np.random.default_rng(14)
    for it in range(120):
        prob = random_problem(rng, STRUCTURES[it % len(STRUCTURES)], ties=ties)
        if not np.isfinite(prob.score.brute_force()[1]).any():
            continue
        fc, fs = brute_front(prob)
        ends = np.unique([0, fc.size - 1])
        for Kc, Ks, ranges in ((fc[ends], fs[ends], 1), (fc, fs, 1), (fc, fs, 8)):
            run = _LabelRun(prob, front=_FrontBounds(Kc, Ks, ranges))
            s, c = prob.evaluate(run.backtrack(np.arange(run.root.cost.size)))
            np.testing.assert_allclose(c, fc, rtol=0, atol=1e-12)
            np.testing.assert_allclose(s, fs, rtol=0, atol=1e-12)


# ------------------------------------------------------------- against chain
def test_chain_shaped_graph_equals_chain():
    rng = np.random.default_rng(11)
    for _ in range(60):
        m = int(rng.integers(2, 7))
        sizes = rng.integers(1, 5, size=m)
        unary = [rng.normal(size=s) for s in sizes]
        pair = [rng.normal(size=(sizes[k], sizes[k + 1])) for k in range(m - 1)]
        for arr in unary + pair:
            arr[rng.random(arr.shape) < 0.05] = -np.inf
        ch = Chain(unary, pair)
        g = WidthGraph(unary, [((k, k + 1), p) for k, p in enumerate(pair)])
        best = ch.viterbi()[1]
        if not np.isfinite(best):
            continue
        assert g.maxsum()[1] == pytest.approx(best, abs=1e-12)
        for a, b in zip(ch.marginals(0.5), g.marginals(0.5)):
            np.testing.assert_allclose(a, b, atol=1e-12)
        cu = [rng.uniform(size=s) for s in sizes]
        cp = [rng.uniform(0, 2, size=(sizes[k], sizes[k + 1])) for k in range(m - 1)]
        bp = BudgetProblem(ch, Chain(cu, cp))
        gp = GraphBudgetProblem(g, WidthGraph(cu, [((k, k + 1), p) for k, p in enumerate(cp)]))
        assert gp.fastest().cost == pytest.approx(bp.fastest().cost)
        assert gp.best_unconstrained().score == pytest.approx(bp.best_unconstrained().score)
        _, c1, s1 = bp.pareto_front()
        _, c2, s2 = gp.pareto_front()
        np.testing.assert_allclose(c1, c2)
        np.testing.assert_allclose(s1, s2)
        for budget in rng.uniform(bp.fastest().cost, bp.best_unconstrained().cost * 1.1, 5):
            assert gp.exact(budget).score == pytest.approx(bp.exact(budget).score)
            a, b = bp.lagrangian(budget), gp.lagrangian(budget)
            assert a.score == pytest.approx(b.score) and a.gamma == pytest.approx(b.gamma)


# --------------------------------------------------------- ResNet-50 and MILP
def resnet_like(seed, levels=14, blocks=(3, 4, 6, 3)):
    """Stem width s0, stage widths S1..S4, inner widths (a, b) per bottleneck block;
    FLOPs-shaped latencies (conv1 S_in -> a, conv2 a -> b, conv3 b -> S_out, downsample
    S_in -> S_out in a stage's first block; residual adds on S; classifier on S4) and
    concave noisy unaries. S_in is the previous stage width in a stage's first block."""
    rng = np.random.default_rng(seed)
    lin = np.linspace(0.2, 1.5, levels)
    choices, c_un, c_pair = [], {}, []

    def var(base):
        w = np.maximum(np.round(base * lin / 8) * 8, 8)
        for k in range(1, w.size):
            w[k] = max(w[k], w[k - 1] + 8)
        choices.append(w)
        return len(choices) - 1

    def conv(cin, cout, k, res):
        f = np.outer(choices[cin] if isinstance(cin, int) else cin,
                     choices[cout] if isinstance(cout, int) else cout) * k * k * res * res
        return 0.005 + 8e-9 * f * rng.uniform(0.9, 1.1, size=f.shape)

    s0 = var(64)
    c_un[s0] = conv(np.array([3.0]), s0, 7, 112)[0]
    stages = [var(b) for b in (256, 512, 1024, 2048)]
    prev = s0
    for k, (nb, res, inner) in enumerate(zip(blocks, (56, 28, 14, 7), (64, 128, 256, 512))):
        S = stages[k]
        for blk in range(nb):
            a, b = var(inner), var(inner)
            s_in, r1 = (prev, res if k == 0 else 2 * res) if blk == 0 else (S, res)
            c_pair += [((s_in, a), conv(s_in, a, 1, r1)), ((a, b), conv(a, b, 3, res)),
                       ((b, S), conv(b, S, 1, res))]
            if blk == 0:
                c_pair.append(((s_in, S), conv(s_in, S, 1, r1)))
        c_un[S] = nb * 8e-8 * choices[S] * res * res
        prev = S
    c_un[stages[3]] = c_un[stages[3]] + conv(stages[3], np.array([1000.0]), 1, 1)[:, 0]
    s_un = []
    for c in choices:
        a = rng.uniform(0.02, 0.3)
        s_un.append(a * np.log(c / c.max()) + rng.normal(0, 0.05 * a, c.size))
    cost = WidthGraph([c_un.get(v, np.zeros(levels)) for v in range(len(choices))], c_pair)
    return GraphBudgetProblem(WidthGraph(s_un), cost)


def milp_optimum(prob: GraphBudgetProblem, budget: float) -> float:
    """Independent exact answer: binary choices x per variable, pairwise choices y per
    edge (continuous in [0, 1]: with one-hot x, the marginal constraints force y to be
    the one-hot product), one budget row."""
    sizes = prob.sizes
    xoff = np.r_[0, np.cumsum(sizes)]
    s_pairs, c_pairs = prob.score.pairwise, prob.cost.pairwise
    edges = sorted(set(s_pairs) | set(c_pairs))
    yoff = np.r_[0, np.cumsum([sizes[i] * sizes[j] for i, j in edges])] + xoff[-1]
    nvar = int(yoff[-1])
    obj, cost = np.zeros(nvar), np.zeros(nvar)
    for v in range(prob.n):
        obj[xoff[v]:xoff[v + 1]] = prob.score.unary[v]
        cost[xoff[v]:xoff[v + 1]] = prob.cost.unary[v]
    rows, cols, vals, lo, hi = [], [], [], [], []

    def add(entries, lb, ub):
        r = len(lo)
        for j, val in entries:
            rows.append(r)
            cols.append(j)
            vals.append(val)
        lo.append(lb)
        hi.append(ub)

    for v in range(prob.n):
        add([(xoff[v] + a, 1.0) for a in range(sizes[v])], 1, 1)
    for e, (i, j) in enumerate(edges):
        zero = np.zeros((sizes[i], sizes[j]))
        obj[yoff[e]:yoff[e + 1]] = s_pairs.get((i, j), zero).ravel()
        cost[yoff[e]:yoff[e + 1]] = c_pairs.get((i, j), zero).ravel()
        for a in range(sizes[i]):
            add([(yoff[e] + a * sizes[j] + b, 1.0) for b in range(sizes[j])]
                + [(xoff[i] + a, -1.0)], 0, 0)
        for b in range(sizes[j]):
            add([(yoff[e] + a * sizes[j] + b, 1.0) for a in range(sizes[i])]
                + [(xoff[j] + b, -1.0)], 0, 0)
    add([(k, val) for k, val in enumerate(cost) if val != 0], -np.inf, budget)
    A = sp.csr_matrix((vals, (rows, cols)), shape=(len(lo), nvar))
    integrality = np.zeros(nvar)
    integrality[: xoff[-1]] = 1
    res = scipy.optimize.milp(-obj, constraints=scipy.optimize.LinearConstraint(A, lo, hi),
                              integrality=integrality, bounds=scipy.optimize.Bounds(0, 1),
                              options={"mip_rel_gap": 1e-9})
    assert res.success, res.message
    return -res.fun


@pytest.mark.slow
def test_exact_equals_milp_on_resnet50_graph():
    prob = resnet_like(0)
    assert prob.n == 5 + 2 * 16 and prob.plan.width == 2
    lo, hi = prob.fastest().cost, prob.best_unconstrained().cost
    for frac in (0.3, 0.6):
        budget = lo + frac * (hi - lo)
        ex = prob.exact(budget)
        assert ex.cost <= budget
        assert ex.score == pytest.approx(milp_optimum(prob, budget), abs=1e-6)
        lag = prob.lagrangian(budget)
        assert lag.score <= ex.score + 1e-9 <= lag.dual_bound + 2e-9


def test_front_and_exact_agree_on_resnet_like_graph():
    prob = resnet_like(1, levels=6, blocks=(2, 2, 3, 2))
    _, costs, scores = prob.pareto_front()
    assert np.all(np.diff(costs) > 0) and np.all(np.diff(scores) > 0)
    rng = np.random.default_rng(12)
    for budget in rng.uniform(costs[0], costs[-1], 25):
        ex = prob.exact(budget)
        k = np.searchsorted(costs, budget, side="right") - 1
        assert ex.cost <= budget and ex.score == pytest.approx(scores[k], abs=1e-12)
