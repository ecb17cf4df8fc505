"""The chain solvers against brute force on small random chains."""

import numpy as np
import pytest
from scipy import stats

from aows.brute import (
    MAX_CONFIGURATIONS,
    BruteForceError,
    brute_best,
    brute_force_problem,
    configurations,
)
from aows.chain import BudgetError, BudgetProblem, Chain


def random_chain(rng, m=None, max_s=4, neg_inf=0.1, ties=False):
    m = m or int(rng.integers(1, 6))
    sizes = rng.integers(1, max_s + 1, size=m)
    draw = (lambda *sh: rng.integers(-2, 3, size=sh).astype(float)) if ties else \
        (lambda *sh: rng.normal(size=sh))
    unary = [draw(s) for s in sizes]
    pairwise = [draw(sizes[k], sizes[k + 1]) for k in range(m - 1)]
    for arr in unary + pairwise:
        mask = rng.random(arr.shape) < neg_inf
        arr[mask] = -np.inf
    return Chain(unary, pairwise)


def random_problem(rng, m=None, max_s=4, ties=False, neg_inf=0.05):
    score = random_chain(rng, m, max_s, neg_inf=neg_inf, ties=ties)
    sizes = score.sizes
    cost_u = [rng.uniform(0, 1, size=s) for s in sizes]
    cost_p = [rng.uniform(0, 2, size=(sizes[k], sizes[k + 1])) for k in range(len(sizes) - 1)]
    if ties:
        cost_u = [np.round(c * 4) / 4 for c in cost_u]
        cost_p = [np.round(c * 4) / 4 for c in cost_p]
    return BudgetProblem(score, Chain(cost_u, cost_p))


@pytest.mark.parametrize("ties", [False, True])
def test_viterbi_equals_brute_force(ties):
    rng = np.random.default_rng(0)
    for _ in range(300):
        ch = random_chain(rng, ties=ties)
        paths, scores = ch.brute_force()
        idx, best = ch.viterbi()
        assert best == pytest.approx(scores.max()) or (np.isneginf(best) and
                                                     np.isneginf(scores.max()))
        assert ch.score(idx) == pytest.approx(best) or np.isneginf(best)


def test_marginals_match_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(200):
        ch = random_chain(rng, neg_inf=0.05)
        paths, scores = ch.brute_force()
        if not np.isfinite(scores.max()):
            continue
        for T in (1.0, 0.3, 1e-4):
            w = np.exp((scores - scores.max()) / T)
            w /= w.sum()
            marg = ch.marginals(T)
            for k, mk in enumerate(marg):
                assert mk.sum() == pytest.approx(1.0)
                ref = np.bincount(paths[:, k], weights=w, minlength=ch.sizes[k])
                np.testing.assert_allclose(mk, ref, atol=1e-9)


def test_marginals_stable_at_tiny_temperature():
    rng = np.random.default_rng(2)
    ch = random_chain(rng, m=8, max_s=6, neg_inf=0.0)
    idx, _ = ch.viterbi()
    marg = ch.marginals(1e-6)
    assert all(np.all(np.isfinite(mk)) for mk in marg)
    assert [int(np.argmax(mk)) for mk in marg] == list(idx)


@pytest.mark.parametrize("method", ["joint", "marginal"])
def test_samples_chi_square(method):
    rng = np.random.default_rng(3)
    ch = Chain([rng.normal(size=3), rng.normal(size=2), rng.normal(size=3)],
               [rng.normal(size=(3, 2)) * 2, rng.normal(size=(2, 3)) * 2])
    paths, scores = ch.brute_force()
    p = np.exp(scores - scores.max())
    p /= p.sum()
    n = 20000
    smp = ch.sample(np.random.default_rng(4), n, temperature=1.0, method=method)
    keys = np.ravel_multi_index(smp.T, ch.sizes)
    ref_keys = np.ravel_multi_index(paths.T, ch.sizes)
    counts = np.bincount(keys, minlength=int(np.prod(ch.sizes)))[ref_keys]
    chi2, pval = stats.chisquare(counts, n * p)
    if method == "joint":
        assert pval > 1e-3, (chi2, pval)
    else:
        # per-node independent draws match the marginals but not the joint distribution
        assert pval < 1e-6
        for k, mk in enumerate(ch.marginals()):
            freq = np.bincount(smp[:, k], minlength=ch.sizes[k]) / n
            np.testing.assert_allclose(freq, mk, atol=0.02)


def test_sampling_at_tiny_temperature_returns_viterbi():
    rng = np.random.default_rng(5)
    ch = random_chain(rng, m=10, max_s=7, neg_inf=0.0)
    idx, _ = ch.viterbi()
    smp = ch.sample(rng, 50, temperature=1e-7)
    assert np.all(smp == idx[None])


@pytest.mark.parametrize("ties", [False, True])
def test_budgeted_decoders_against_brute_force(ties):
    rng = np.random.default_rng(6)
    checked = 0
    for _ in range(400):
        prob = random_problem(rng, ties=ties)
        paths, s, c = brute_force_problem(prob)
        fin = np.isfinite(s)
        if not fin.any():
            continue
        budget = float(rng.uniform(c[fin].min(), c[fin].max() * 1.05))
        if ties and rng.random() < 0.5:
            budget = float(rng.choice(c[fin]))  # budget exactly on a configuration's cost
        ref = brute_best(prob, budget)
        ex = prob.exact(budget)
        lag = prob.lagrangian(budget)
        assert ex.cost <= budget and lag.cost <= budget
        assert ex.score == pytest.approx(ref, abs=1e-9)
        assert lag.score <= ex.score + 1e-9
        assert lag.dual_bound >= ex.score - 1e-9
        bis = prob.lagrangian_bisection(budget)
        assert bis.cost <= budget and bis.score <= ex.score + 1e-9
        checked += 1
    assert checked > 300


def test_budget_below_fastest_is_an_error():
    rng = np.random.default_rng(7)
    prob = random_problem(rng, m=4, neg_inf=0.0)
    fast = prob.fastest()
    with pytest.raises(BudgetError, match="below the fastest"):
        prob.exact(fast.cost * 0.99)
    with pytest.raises(BudgetError):
        prob.lagrangian(fast.cost * 0.99)


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(8)
    for _ in range(100):
        prob = random_problem(rng, neg_inf=0.0)
        paths, costs, scores = prob.pareto_front()
        assert np.all(np.diff(costs) >= 0) and np.all(np.diff(scores) > 0)
        allp, s, c = brute_force_problem(prob)
        for budget in costs:
            assert scores[costs <= budget].max() == pytest.approx(s[c <= budget].max())


def test_single_choice_layers_and_single_node():
    ch = Chain([np.array([1.0])], [])
    idx, best = ch.viterbi()
    assert list(idx) == [0] and best == 1.0
    ch = Chain([np.zeros(1), np.array([0.0, 2.0]), np.zeros(1)],
               [np.array([[1.0, -1.0]]), np.array([[0.0], [0.5]])])
    assert list(ch.viterbi()[0]) == [0, 1, 0]


def test_brute_force_refuses_large_cases():
    ch = Chain([np.zeros(10)] * 7, [np.zeros((10, 10))] * 6)  # 10**7 paths
    assert 10 ** 7 > MAX_CONFIGURATIONS
    with pytest.raises(BruteForceError, match="10,000,000 configurations"):
        ch.brute_force()
    assert configurations([10] * 6).shape == (10 ** 6, 6)  # at the limit: listed
