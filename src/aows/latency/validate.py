"""Accuracy of a latency model on timed networks, and the noise floor of the timings."""

from __future__ import annotations

import numpy as np

from aows.latency.defaults import FIT_ORDER_SLACK, FIT_TOLERANCE
from aows.plots import figure


def error_metrics(pred: np.ndarray, meas: np.ndarray) -> dict:
    """RMSE (ms), NRMSE (RMSE / mean measured), MAPE, worst error, bias, hit rates."""
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    err = pred - meas
    pct = np.abs(err) / meas
    rmse = float(np.sqrt(np.mean(err**2)))
    return {
        "n": int(meas.size),
        "rmse_ms": rmse,
        "nrmse": rmse / float(np.mean(meas)),
        "mape": float(np.mean(pct)),
        "max_abs_pct_err": float(np.max(pct)),
        "bias_pct": float(np.mean(err) / np.mean(meas)),
        "within_5pct": float(np.mean(pct <= 0.05)),
        "within_10pct": float(np.mean(pct <= 0.10)),
        "mean_latency_ms": float(np.mean(meas)),
    }


def range_ends(model, samples) -> dict:
    """The widest and the narrowest networks where ``samples`` timed them (every
    training collection starts with both): timed and predicted ms, and the relative
    error. In a model's space the widest is the user's own model."""
    timed = samples.by_config(model.anchor_ref_ms)
    out = {}
    for name, cfg in (("widest", model.space.widest()), ("narrowest", model.space.narrowest())):
        if tuple(cfg) in timed:
            pred = model.predict(cfg)
            out[name] = {"timed_ms": timed[tuple(cfg)], "predicted_ms": pred,
                         "relative_error": pred / timed[tuple(cfg)] - 1}
    return out


def fit_problems(model, samples, tolerance: float | None = None) -> list[str]:
    """What a freshly fitted model says against trusting it, from what it knows: its
    predictions of the networks scaled uniformly from the narrowest to the widest (a wider
    one predicted faster than a narrower one), of the timed networks against the two ends,
    its errors on the timed ends and on its own timings (and the cross-validated error
    where the fit chose K or smooth). Empty when none; each a phrase ("it ...")."""
    tol = FIT_TOLERANCE if tolerance is None else tolerance
    space, f = model.space, model.meta.get("fit", {})
    out = []
    ladder = [("narrowest", space.narrowest())]
    ladder += [(f"uniform {m:.2g}x", c) for m, c in space.uniform_multiplier_configs()]
    ladder.append(("widest", space.widest()))
    pred = model.predict_many([c for _, c in ladder])
    lo, hi = float(pred[0]), float(pred[-1])
    if hi < lo:
        out.append(f"it predicts the widest configuration faster than the narrowest "
                   f"({hi:.3f} against {lo:.3f} ms)")
    else:
        for (a, _), (b, _), pa, pb in zip(ladder, ladder[1:], pred, pred[1:]):
            if pb < pa * (1 - FIT_ORDER_SLACK):
                out.append(f"it predicts the {b} network faster than the narrower {a} "
                           f"({pb:.3f} against {pa:.3f} ms)")
                break
    timed = model.predict_many(samples.configs)
    below = int(np.sum(timed < lo * (1 - FIT_ORDER_SLACK)))
    above = int(np.sum(timed > hi * (1 + FIT_ORDER_SLACK)))
    for k, than in ((below, "faster than the narrowest"), (above, "slower than the widest")):
        if k:
            out.append(f"it predicts {k} of the {len(samples)} timed networks {than} "
                       "configuration")
    for end, r in range_ends(model, samples).items():
        if abs(r["relative_error"]) > tol:
            out.append(f"it misses the {end} network's timing by "
                       f"{100 * r['relative_error']:+.0f} %")
    mean = float(np.mean(list(samples.by_config(model.anchor_ref_ms).values())))
    if f.get("train_rmse_ms") is not None and f["train_rmse_ms"] > tol * mean:
        out.append(f"it misses its own timings by {100 * f['train_rmse_ms'] / mean:.0f} % "
                   "(NRMSE)")
    if f.get("cv_rmse_ms") and min(f["cv_rmse_ms"].values()) > tol * mean:
        out.append(f"its cross-validated error is "
                   f"{100 * min(f['cv_rmse_ms'].values()) / mean:.0f} % (NRMSE)")
    return out


def test_retest(first: dict, second: dict) -> dict:
    """Noise floor: the same networks timed twice ({config: ms} each), as error metrics
    of one timing against the other, over the configurations both contain."""
    common = [c for c in first if c in second]
    if not common:
        raise ValueError("the two sample files share no configuration")
    a = np.array([first[c] for c in common])
    b = np.array([second[c] for c in common])
    return error_metrics(b, a)


def scatter_plot(pred, meas, path, title: str = "", noise_nrmse: float | None = None,
                 extra: dict | None = None) -> None:
    """Predicted vs measured scatter (ms/image), with the identity line."""
    with figure(path, figsize=(5.2, 5)) as (_, ax):
        _scatter(ax, pred, meas, title, noise_nrmse, extra)


def _scatter(ax, pred, meas, title, noise_nrmse, extra) -> None:
    series = {"model": (np.asarray(pred), np.asarray(meas))}
    series.update(extra or {})
    for name, (p, m) in series.items():
        met = error_metrics(p, m)
        ax.scatter(m, p, s=8, alpha=0.6, label=f"{name}: NRMSE {100 * met['nrmse']:.1f} %")
    lo = min(float(np.min(v)) for pair in series.values() for v in pair)
    hi = max(float(np.max(v)) for pair in series.values() for v in pair)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("measured latency (ms/image)")
    ax.set_ylabel("predicted latency (ms/image)")
    if noise_nrmse is not None:
        title = f"{title}\ntest-retest noise floor: NRMSE {100 * noise_nrmse:.1f} %".strip()
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def check_model(model, samples, retest=None, raw: bool = False
                ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Error of a latency model on timed networks, in the model's units.

    Args:
        model: the ``LatencyModel``.
        samples: timed networks (``Samples``) it did not see.
        retest: the same networks timed again: adds the test-retest noise floor
            (``noise_floor``: its metrics; ``noise_floor_nrmse``, ``noise_floor_n``).
        raw: compare with raw timings, not drift-normalised to the model's reference
            anchor (which is the default where both have anchors).

    Returns:
        (metrics, predicted ms, measured ms); the metrics also give ``raw`` (against the
        raw timings) when the comparison was drift-normalised.
    """
    ref = None if raw or not samples.has_anchors else model.anchor_ref_ms
    pred = model.predict_many(samples.configs)
    y = samples.normalised(ref)
    met = error_metrics(pred, y)
    met["drift_normalised"] = ref is not None
    if ref is not None:
        met["raw"] = error_metrics(pred, samples.latency_ms)
    if retest is not None:
        r = ref if retest.has_anchors else None
        noise = test_retest(samples.by_config(r), retest.by_config(r))
        met.update(noise_floor=noise, noise_floor_nrmse=noise["nrmse"],
                   noise_floor_n=noise["n"])
    return met, pred, y
