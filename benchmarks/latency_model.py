"""Accuracy and speed of the latency model on this machine, against the noise floor.

    python benchmarks/collect_latency.py     # the timings (about 30 min, resumable)
    python benchmarks/latency_model.py [--data benchmarks/out] [--figures docs/figures]
    python benchmarks/latency_model.py --space resnet18 --resolution 64 \
        --train train_cover.jsonl --data benchmarks/out/resnet18_64   # a residual space

MobileNet-v1 space at 128 px, torch-cpu, batch 1, 1 thread. Trains on the first n of
2000 biased / 2000 uniform networks, validates on 300 uniform held-out networks, and
compares with the test-retest noise floor (the same 300 re-timed later), a per-layer
lookup table, and a FLOPs-proportional fit. Latencies are drift-normalised by the chunk
anchors (the default of `aows latency fit`), with the raw numbers printed alongside.
Prints every number and writes latency_model.json and the two figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from aows.catalogue import get_space
from aows.latency.fit import DEFAULT_K, DEFAULT_SMOOTH, Fitter, fit, fit_flops
from aows.latency.model import LatencyModel
from aows.latency.store import read_samples
from aows.latency.validate import error_metrics, scatter_plot, test_retest

SIZES = (100, 200, 300, 500, 1000, 2000)
PRIORS = {  # name: (K, smooth)
    "paper prior (K=100)": (100.0, 0.0),
    "no prior": (0.0, 0.0),
    "ours (K={K:g}, smooth={s:g})": (DEFAULT_K, DEFAULT_SMOOTH),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="benchmarks/out")
    ap.add_argument("--figures", default="docs/figures")
    ap.add_argument("--grid", action="store_true", help="also sweep K x smooth at 500 / 2000")
    ap.add_argument("--space", default="mobilenet_v1")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--train", default="train_biased.jsonl", help="training set in --data")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw the learning curve from latency_model.json")
    args = ap.parse_args()
    data, figs = Path(args.data), Path(args.figures)
    figs.mkdir(parents=True, exist_ok=True)
    tag = f"{args.space}_{args.resolution}".replace("mobilenet_v1_", "cpu")
    curve_png = "latency_learning_curve.png" if tag == "cpu128" else f"latency_curve_{tag}.png"
    if args.replot:
        saved = json.loads((data / "latency_model.json").read_text())
        plot_curves(saved["curves_nrmse"], saved["noise_floor"]["nrmse"],
                    saved["lookup_table"]["nrmse"], figs / curve_png)
        return
    space = get_space(args.space, resolution=args.resolution)
    biased = read_samples(data / args.train, space)
    kind = args.train.removeprefix("train_").removesuffix(".jsonl")
    uniform = (read_samples(data / "train_uniform.jsonl", space)
               if (data / "train_uniform.jsonl").exists() else biased.subset(np.arange(0)))
    big = min(2000, len(biased))
    out_sizes = [n for n in SIZES if n < big] + [big]
    held = read_samples(data / "heldout.jsonl", space)
    retest = read_samples(data / "heldout_retest.jsonl", space)
    lut = LatencyModel.load(data / "lut.json", space)
    # Every set is drift-normalised to one reference state (the median anchor of the
    # biased training set), as `aows latency fit/validate` do by default; raw alongside.
    ref = biased.anchor_reference()
    y, y_raw = held.normalised(ref), held.latency_ms
    out: dict = {"n_biased": len(biased), "n_uniform": len(uniform), "n_heldout": len(held),
                 "anchor_ref_ms": ref}

    noise = test_retest(held.by_config(ref), retest.by_config(ref))
    noise_raw = test_retest(held.by_config(), retest.by_config())
    out["noise_floor"], out["noise_floor_raw"] = noise, noise_raw
    lut_m = error_metrics(lut.predict_many(held.configs), y)
    out["lookup_table"] = lut_m
    hdr = biased.header["target"]
    print(f"target: {hdr['backend']} on {hdr['device']}, {hdr['threads']} thread(s), batch "
          f"{hdr['batch_size']}; held-out: {len(held)} uniform networks, mean "
          f"{y.mean():.3f} ms/image")
    anchors = [a for a in biased.anchors + uniform.anchors if a]
    print(f"anchor network: min {min(anchors):.3f} ms, median {np.median(anchors):.3f} ms "
          f"over {len(anchors)} timed networks")
    print(f"noise floor (test-retest NRMSE, each network re-timed ~half the collection later):"
          f" {100 * noise['nrmse']:.2f} % drift-normalised (MAPE {100 * noise['mape']:.2f} %, "
          f"max {100 * noise['max_abs_pct_err']:.1f} %); {100 * noise_raw['nrmse']:.2f} % raw")
    print(f"lookup table (layers alone):      {100 * lut_m['nrmse']:.2f} %  "
          f"(bias {100 * lut_m['bias_pct']:+.1f} %)")

    fitter = Fitter(space)
    names = {n.format(K=DEFAULT_K, s=DEFAULT_SMOOTH): v for n, v in PRIORS.items()}
    curves: dict = {}
    for src_name, src in ((kind, biased), ("uniform", uniform)):
        for n in out_sizes:
            if n > len(src):
                continue
            sub = src.subset(np.arange(n))
            fl = error_metrics(fit_flops(space, sub).predict_many(held.configs),
                               held.normalised(sub.anchor_reference()))
            curves.setdefault(f"FLOPs fit ({src_name})", {})[n] = fl["nrmse"]
            for name, (K, lam) in names.items():
                x = fitter.fit_x(sub.configs, sub.normalised(ref), K, lam)
                m = fitter_predict(space, x, held.configs)
                curves.setdefault(f"{name} ({src_name})", {})[n] = error_metrics(m, y)["nrmse"]
    out["curves_nrmse"] = curves
    print("\nheld-out NRMSE by number of timed training networks:")
    print(f"  {'predictor':44s}" + "".join(f"{n:>8d}" for n in out_sizes))
    for name, c in curves.items():
        print(f"  {name:44s}" + "".join(f"{100 * c[n]:7.2f}%" if n in c else f"{'':8s}"
                                        for n in out_sizes))

    # default model at `big` (2000) training networks: full metrics, fit time, scatter
    t = []
    for _ in range(5):
        t0 = time.perf_counter()
        model = fit(space, biased.subset(np.arange(big)))
        t.append(time.perf_counter() - t0)
    model.save(data / "latency.json")
    y2000 = model.comparable(held)
    met = error_metrics(model.predict_many(held.configs), y2000)
    out["default_model_2000"] = met
    met_raw = error_metrics(model.predict_many(held.configs), y_raw)
    out["default_model_2000_raw"] = met_raw
    out["fit_seconds_2000"] = {"median": float(np.median(t)), "min": float(np.min(t)),
                               "solver": model.meta["fit"]["solver"]}
    flops_m = error_metrics(fit_flops(space, biased).predict_many(held.configs), y2000)
    out["flops_fit_2000"] = flops_m
    print(f"\ndefault model on {big} {kind} networks: NRMSE {100 * met['nrmse']:.2f} %, "
          f"MAPE {100 * met['mape']:.2f} %, max {100 * met['max_abs_pct_err']:.1f} %, "
          f"within 5 % {100 * met['within_5pct']:.0f} %, within 10 % "
          f"{100 * met['within_10pct']:.0f} %; against raw timings NRMSE "
          f"{100 * met_raw['nrmse']:.2f} % (raw noise floor {100 * noise_raw['nrmse']:.2f} %)")
    print(f"FLOPs fit on the same {big}: NRMSE {100 * flops_m['nrmse']:.2f} %; lookup table "
          f"{100 * lut_m['nrmse']:.2f} % (bias {100 * lut_m['bias_pct']:+.1f} %)")
    print(f"fit time, {big} networks: median {np.median(t):.3f} s (min {np.min(t):.3f} s) "
          f"[{model.meta['fit']['solver']}]")
    m500 = fit(space, biased.subset(np.arange(min(500, big))))
    met500 = error_metrics(m500.predict_many(held.configs), m500.comparable(held))
    out["default_model_500"] = met500
    print(f"default model on {min(500, big)} {kind} networks:  NRMSE "
          f"{100 * met500['nrmse']:.2f} %")
    print(f"lookup table / model: {lut_m['nrmse'] / met['nrmse']:.2f}x the error; FLOPs fit / "
          f"model: {flops_m['nrmse'] / met['nrmse']:.2f}x")
    print(f"targets: NRMSE <= noise floor ({100 * noise['nrmse']:.2f} %) at {big} and 500: "
          f"{'met' if met['nrmse'] <= noise['nrmse'] else 'NOT met'} / "
          f"{'met' if met500['nrmse'] <= noise['nrmse'] else 'NOT met'}; fit < 0.5 s: "
          f"{'met' if np.median(t) < 0.5 else 'NOT met'}; noise floor <= 4 %: "
          f"{'met' if noise['nrmse'] <= 0.04 else 'NOT met'}")

    for n in sorted({min(500, big), big}):
        t0 = time.perf_counter()
        auto = fit(space, biased.subset(np.arange(n)), K="auto", smooth="auto")
        dt = time.perf_counter() - t0
        am = error_metrics(auto.predict_many(held.configs), auto.comparable(held))
        out[f"auto_{n}"] = {"K": auto.meta["fit"]["K"], "smooth": auto.meta["fit"]["smooth"],
                            "nrmse": am["nrmse"], "seconds": dt}
        print(f"-K auto --smooth auto on {n}: K={auto.meta['fit']['K']:g}, "
              f"smooth={auto.meta['fit']['smooth']:g}, NRMSE {100 * am['nrmse']:.2f} % "
              f"({dt:.1f} s)")

    if args.grid:
        grid = {}
        for n in (200, 500, 2000):
            sub = biased.subset(np.arange(n))
            for K in (0.0, 10.0, 100.0, 1000.0):
                for lam in (0.0, 0.1, 1.0, 10.0, 100.0):
                    x = fitter.fit_x(sub.configs, sub.normalised(ref), K, lam)
                    e = error_metrics(fitter_predict(space, x, held.configs), y)["nrmse"]
                    grid[f"n={n},K={K:g},smooth={lam:g}"] = e
                    print(f"  grid n={n:5d} K={K:6g} smooth={lam:6g}: {100 * e:.2f} %")
        out["grid"] = grid

    plot_curves(curves, noise["nrmse"], lut_m["nrmse"], figs / curve_png)
    scatter_plot(model.predict_many(held.configs), y2000, figs / f"latency_fit_{tag}.png",
                 title=f"{space.name} space, {args.resolution} px, torch-cpu 1 thread: "
                       f"{len(held)} held-out",
                 noise_nrmse=noise["nrmse"],
                 extra={"lookup table": (lut.predict_many(held.configs), y2000),
                        "FLOPs fit": (fit_flops(space, biased).predict_many(held.configs),
                                      y2000)})
    (data / "latency_model.json").write_text(json.dumps(out, indent=2))
    print(f"\nfigures: {figs}/{curve_png}, {figs}/latency_fit_{tag}.png; "
          f"numbers: {data}/latency_model.json")


def fitter_predict(space, x, configs):
    from aows.latency.fit import design_matrix
    return design_matrix(space, configs) @ x


def plot_curves(curves, noise, lut, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8))
    predictors = list(dict.fromkeys(name.rsplit(" (", 1)[0] for name in curves))
    for name, c in curves.items():
        base, sampler = name.rsplit(" (", 1)
        ns = sorted(int(n) for n in c)
        ax.plot(ns, [100 * c[n] if n in c else 100 * c[str(n)] for n in ns],
                "--" if sampler.startswith("uniform") else "-", marker="o", ms=3, label=name,
                color=f"C{predictors.index(base)}")
    ax.axhline(100 * noise, color="k", lw=1, ls=":", label="noise floor (test-retest)")
    ax.axhline(100 * lut, color="C7", lw=1, ls="-.", label="lookup table")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("timed training networks")
    ax.set_ylabel("held-out NRMSE (%)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title("solid: biased (or cover) sampling, dashed: uniform sampling", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
