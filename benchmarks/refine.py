"""The refinement loop on this machine: is every pick of the search, at 10 budgets,
measured within the noise floor of its prediction after refinement?

    python benchmarks/refine.py [--out benchmarks/out/refine128] [--train 500]
        [--sampler biased] [--rounds 3] [--figures docs/figures]
    python benchmarks/refine.py --space resnet18 --resolution 64 --sampler cover \
        --train 600 --out benchmarks/out/refine_resnet18_64     # a residual space

MobileNet-v1 space at 128 px (or ``--space``), torch-cpu, batch 1, 1 thread, default
protocol. Times
(resumable) ``--train`` networks by ``--sampler`` and 100 uniform held-out networks
twice (the noise floor), interleaved in 5 blocks; fits the default model; then runs
``aows.refine`` with the widest-balanced proxy scores at 10 budgets, the
tolerance being the held-out test-retest NRMSE. Prints, per round: the NRMSE, bias and
worst error on that round's picks (timed after the model that picked them was
fitted), the held-out NRMSE of the same model, and whether every pick was within.
Writes refine.json and refine.png in --out, and the figure to --figures.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from aows.catalogue import get_space
from aows.latency.backends import Target
from aows.latency.fit import fit
from aows.latency.measure import collect_interleaved, heldout_plan
from aows.latency.protocol import Protocol
from aows.latency.store import read_samples
from aows.latency.validate import error_metrics, test_retest
from aows.refine import refine


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/out/refine128")
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--sampler", default="biased", choices=["biased", "cover", "uniform"])
    ap.add_argument("--heldout", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budgets", type=int, default=10)
    ap.add_argument("--figures", default=None, help="also copy refine.png here")
    ap.add_argument("--space", default="mobilenet_v1")
    ap.add_argument("--resolution", type=int, default=128)
    args = ap.parse_args()
    out = Path(args.out)
    space = get_space(args.space, resolution=args.resolution)
    target, proto = Target("torch-cpu", batch_size=1, threads=1), Protocol()
    t0 = time.time()
    plan = [(out / f"train_{args.sampler}.jsonl", args.train, args.sampler, {}),
            *heldout_plan(space, out, args.heldout)]
    collect_interleaved(space, target, proto, plan, blocks=5)
    t1 = time.time()
    train = read_samples(out / f"train_{args.sampler}.jsonl", space)
    held = read_samples(out / "heldout.jsonl", space)
    retest = read_samples(out / "heldout_retest.jsonl", space)
    model = fit(space, train)
    ref = model.anchor_ref_ms
    floor = test_retest(held.by_config(ref), retest.by_config(ref))
    base = error_metrics(model.predict_many(held.configs), model.comparable(held))
    print(f"{len(train)} {args.sampler} networks, {len(held)} held-out (timed twice): noise "
          f"floor NRMSE {100 * floor['nrmse']:.2f} %; model held-out NRMSE "
          f"{100 * base['nrmse']:.2f} %, bias {100 * base['bias_pct']:+.2f} % "
          f"[timing {t1 - t0:.0f} s this call]")
    rep = refine(space, train, out / "refined", n_budgets=args.budgets, rounds=args.rounds,
                 noise_floor=floor["nrmse"], heldout=held, progress=False)
    print(f"refinement: {len(rep['rounds'])} round(s), {rep.get('timing_seconds', 0):.0f} s "
          f"of timing this call; tolerance {100 * floor['nrmse']:.2f} % per pick")
    print(f"  {'round':>5s} {'picks NRMSE':>12s} {'bias':>8s} {'worst':>8s} "
          f"{'held-out NRMSE':>15s} {'picks retest':>13s}  every pick within")
    for e in rep["rounds"]:
        p = e["picks"]
        print(f"  {e['round']:5d} {100 * p['nrmse']:11.2f}% {100 * p['bias_pct']:+7.2f}% "
              f"{100 * p['max_abs_pct_err']:7.2f}% {100 * e['heldout']['nrmse']:14.2f}% "
              f"{100 * e['retest']['nrmse']:12.2f}%  {'yes' if e['within'] else 'no'}")
    last = rep["rounds"][-1]
    print("  last round's picks (budget ms: predicted / measured, error):")
    for b, c, pr, me, er in zip(last["budgets_ms"], last["configs"], last["predicted_ms"],
                                last["measured_ms"], last["errors"]):
        print(f"    {b:6.3f}: {pr:.3f} / {me:.3f} ms, {100 * er:+.2f} %  "
              f"{','.join(map(str, c))}")
    if "final_heldout" in rep:
        print(f"  model with every round's timings: held-out NRMSE "
              f"{100 * rep['final_heldout']['nrmse']:.2f} %")
    print(f"target, every pick of the last round within the noise floor: "
          f"{'met' if rep['converged'] else 'NOT met'} "
          f"(worst {100 * np.max(np.abs(last['errors'])):.2f} % vs {100 * floor['nrmse']:.2f} %)")
    if args.figures:
        Path(args.figures).mkdir(parents=True, exist_ok=True)
        tag = "" if args.space == "mobilenet_v1" else f"_{args.space}_{args.resolution}"
        shutil.copyfile(out / "refined" / "refine.png",
                        Path(args.figures) / f"latency_refine{tag}.png")


if __name__ == "__main__":
    main()
