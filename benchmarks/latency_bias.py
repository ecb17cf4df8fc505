"""Where the latency model's bias comes from, and what removes it (issue: a fit that holds
whatever it was trained on).

    python benchmarks/latency_bias.py [--data benchmarks/data/cpu128]

On the MobileNet-v1 set at 128 px (benchmarks/collect_latency.py: 2000 biased, 1000
uniform, 300 uniform held-out networks, timed in alternating blocks), prints for every
training set and size the held-out NRMSE and bias, drift-normalised by the anchors and
raw (as a file without anchors, the reference implementation's layout, is fitted):

1. by training distribution: biased / uniform / cover (biased until every unknown is
   timed, then uniform: ``aows latency generate --cover``, the default of ``aows run``);
2. across distributions: a model fitted on one predicts the other;
3. candidate remedies on the biased set: the prior weights, and importance weights that
   make the training configurations look uniform (a logistic density ratio on the
   one-hot widths), and a non-additive term in the network's weight bytes.
4. the weight of a refinement timing in the fit (``REFINE_WEIGHT``).
5. which 500: the bias of a fit on 500 biased networks depends on which 500 of the
   sequence (the biased sampler's mix changes as it goes), against uniform slices; and
   non-additive size terms, max(0, MB - t), which do not remove it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from aows.catalogue import get_space
from aows.latency.fit import Fitter, design_matrix, fit
from aows.latency.store import Samples, read_samples
from aows.latency.validate import error_metrics, test_retest


def _row(name: str, m: dict) -> str:
    return f"  {name:46s} NRMSE {100 * m['nrmse']:5.2f} %   bias {100 * m['bias_pct']:+5.2f} %"


def _importance_weights(space, configs, seed=0, clip=10.0):
    """p_uniform / p_train at each training configuration, from a logistic classifier
    of one-hot widths (training set vs 4000 uniform draws), clipped, mean 1."""
    from sklearn.linear_model import LogisticRegression

    def onehot(cs):
        idx = space.indices_many(cs)
        width = int(idx.max()) + 1
        out = np.zeros((idx.shape[0], idx.shape[1] * width))
        for j in range(idx.shape[1]):
            out[np.arange(idx.shape[0]), j * width + idx[:, j]] = 1
        return out

    uni = space.uniform_sample(np.random.default_rng(seed), 4000)
    X = np.vstack([onehot(configs), onehot(uni)])
    t = np.r_[np.zeros(len(configs)), np.ones(len(uni))]
    p = LogisticRegression(C=1.0, max_iter=2000).fit(X, t).predict_proba(onehot(configs))[:, 1]
    w = p / (1 - p)
    w = np.minimum(w / w.mean(), clip)
    return w / w.mean()


def _weight_mb(space, configs) -> np.ndarray:
    from aows.nn import build_network
    return np.array([sum(p.numel() for p in build_network(space, c).parameters())
                     for c in configs]) * 4 / 2 ** 20


def _with_weight_bytes(space, fitter, configs, y, iters=6, phi=None, mb=None):
    """The fit plus gamma * phi(weight MB of the network) (default phi: the identity), by
    backfitting."""
    mb = _weight_mb(space, configs) if mb is None else mb
    f = mb if phi is None else phi(mb)
    A = design_matrix(space, configs)
    gamma = 0.0
    for _ in range(iters):
        x = fitter.fit_x(configs, y - gamma * f)
        r = y - A @ x
        (g, _), *_ = np.linalg.lstsq(np.c_[f, np.ones_like(f)], r, rcond=None)
        gamma += g
    return x, gamma


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="benchmarks/data/cpu128")
    args = ap.parse_args()
    data = Path(args.data)
    space = get_space("mobilenet_v1", resolution=128)
    biased = read_samples(data / "train_biased.jsonl", space)
    uniform = read_samples(data / "train_uniform.jsonl", space)
    held = read_samples(data / "heldout.jsonl", space)
    retest = read_samples(data / "heldout_retest.jsonl", space)

    from aows.latency.sampling import BiasedSampler
    state, k = BiasedSampler(space), 0
    while state.coverage() < 1:
        state.update(biased.configs[k])
        k += 1

    def cover(n):
        s = Samples.concat([biased.subset(np.arange(k)), uniform.subset(np.arange(n - k))])
        s.header = biased.header
        return s

    for norm in (True, False):
        ref = biased.anchor_reference() if norm else None
        floor = test_retest(held.by_config(ref), retest.by_config(ref))
        print(f"\n=== {'drift-normalised by the anchors' if norm else 'raw (no anchors)'}: "
              f"test-retest noise floor NRMSE {100 * floor['nrmse']:.2f} % (bias "
              f"{100 * floor['bias_pct']:+.2f} %) on {floor['n']} held-out networks")
        print("1. held-out (uniform) error by training set, default fit:")
        sets = [("biased", biased, (500, 1000, 2000)), ("uniform", uniform, (500, 1000)),
                (f"cover ({k} biased, then uniform)", None, (500, 1000))]
        for name, src, sizes in sets:
            for n in sizes:
                sub = cover(n) if src is None else src.subset(np.arange(n))
                m = fit(space, sub, normalise=norm)
                y = m.comparable(held) if norm else held.latency_ms
                print(_row(f"{name}, {n}", error_metrics(m.predict_many(held.configs), y)))
        print("2. across distributions (500 training networks):")
        for (a, sa), (b, sb) in ((("biased", biased), ("uniform", uniform)),
                                 (("uniform", uniform), ("biased[1000:2000]", biased))):
            m = fit(space, sa.subset(np.arange(500)), normalise=norm)
            other = sb.subset(np.arange(1000, 2000) if b.startswith("biased") else
                              np.arange(1000))
            y = m.comparable(other) if norm else other.latency_ms
            print(_row(f"fitted on {a}, predicting {b}",
                       error_metrics(m.predict_many(other.configs), y)))
        print("3. remedies on 500 biased networks:")
        sub = biased.subset(np.arange(500))
        y = sub.normalised(sub.anchor_reference()) if norm else sub.latency_ms
        yh = held.normalised(sub.anchor_reference()) if norm else held.latency_ms
        fitter = Fitter(space)
        w = _importance_weights(space, sub.configs)
        A = design_matrix(space, held.configs)
        for name, kw in (("default (K=100, smooth=1)", {}),
                         ("smooth=10", {"smooth": 10.0}), ("smooth=100", {"smooth": 100.0}),
                         ("smooth=100, ridge=0.1", {"smooth": 100.0, "ridge": 0.1}),
                         ("importance weights (uniform-like)", {"weights": w})):
            x = fitter.fit_x(sub.configs, y, **kw)
            print(_row(name, error_metrics(A @ x, yh)))
        # biased networks are smaller (9.3 against 12.3 MB of weights on average): a
        # term in the weight bytes would catch a whole-network cache effect
        x, gamma = _with_weight_bytes(space, fitter, sub.configs, y)
        print(_row(f"+ {gamma * 1e3:.1f} us per MB of weights (backfitted)",
                   error_metrics(A @ x + gamma * _weight_mb(space, held.configs), yh)))
    refine_weight(space, biased, held, retest)
    which_500(space, biased, uniform, held)


def which_500(space, biased, uniform, held) -> None:
    """Held-out error of fits on different 500-network slices of the same sets (drift-
    normalised), then size terms on the first 500 biased networks."""
    print("\n5. which 500 networks (drift-normalised):")
    n, nu = len(biased), len(uniform)
    slices = [("biased 0:500 (what `--biased --count 500` times)", biased, np.arange(500)),
              ("biased 500:1000", biased, np.arange(500, 1000)),
              ("biased 1000:1500", biased, np.arange(1000, 1500)),
              ("biased 1500:2000", biased, np.arange(n - 500, n)),
              ("biased, every 4th of 2000", biased, np.arange(0, n, 4)),
              ("uniform 0:500", uniform, np.arange(500)),
              ("uniform 500:1000", uniform, np.arange(nu - 500, nu))]
    for name, src, idx in slices:
        m = fit(space, src.subset(idx))
        print(_row(name, error_metrics(m.predict_many(held.configs), m.comparable(held))))
    sub = biased.subset(np.arange(500))
    ref = sub.anchor_reference()
    y, yh = sub.normalised(ref), held.normalised(ref)
    fitter, A = Fitter(space), design_matrix(space, held.configs)
    mb, mbh = _weight_mb(space, sub.configs), _weight_mb(space, held.configs)
    for t in (6.0, 9.0, 12.0, 15.0):
        x, gamma = _with_weight_bytes(space, fitter, sub.configs, y,
                                      phi=lambda m, t=t: np.maximum(m - t, 0.0), mb=mb)
        print(_row(f"biased 0:500 + gamma * max(0, MB - {t:g})",
                   error_metrics(A @ x + gamma * np.maximum(mbh - t, 0.0), yh)))


def refine_weight(space, biased, held, retest) -> None:
    """The weight of a refinement timing (``aows.latency.fit.REFINE_WEIGHT``): 10
    held-out networks stand in for the picks, added to the training set with their first
    timing at weight w; scored on their retimings (independent noise) and on the other
    290 held-out networks; mean over 6 random draws of the 10."""
    print("\n4. weight of refinement timings (10 held-out networks added at weight w):")
    fitter = Fitter(space)
    for n in (500, 2000):
        sub = biased.subset(np.arange(n))
        ref = sub.anchor_reference()
        first, second = held.by_config(ref), retest.by_config(ref)
        cfgs = list(first)
        for w in (1, 3, 10, 30, 100):
            on_picks, on_others = [], []
            for rep in range(6):
                order = np.random.default_rng(rep).permutation(len(cfgs))
                picks = [cfgs[i] for i in order[:10]]
                others = [cfgs[i] for i in order[10:]]
                x = fitter.fit_x(list(sub.configs) + picks,
                                 np.r_[sub.normalised(ref), [first[c] for c in picks]],
                                 weights=np.r_[np.ones(n), np.full(10, w)])
                on_picks.append(error_metrics(design_matrix(space, picks) @ x,
                                              np.array([second[c] for c in picks]))["nrmse"])
                on_others.append(error_metrics(design_matrix(space, others) @ x,
                                               np.array([first[c] for c in others]))["nrmse"])
            print(f"  {n} biased, w={w:<4d} NRMSE on the picks' retimings "
                  f"{100 * np.mean(on_picks):.2f} %, on the other held-out networks "
                  f"{100 * np.mean(on_others):.2f} %")


if __name__ == "__main__":
    main()
