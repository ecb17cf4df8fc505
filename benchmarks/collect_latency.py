"""Collect the timing data of the latency-model benchmark (resumable; rerun to continue).

MobileNet-v1 space at 128 px, batch 1, torch-cpu, 1 thread, default protocol (chunks of
up to 50 networks, 6 interleaved rounds of 5 runs, minimum, anchor check). Under
benchmarks/out/: train_biased.jsonl (2000), train_uniform.jsonl (1000), heldout.jsonl
(300 uniform), heldout_retest.jsonl (the same 300, each timed again about half the
collection later: the noise floor), lut.json (per-layer lookup table).

The sets are timed in 10 alternating blocks, so that all of them see the same states
of the machine: a shared machine drifts by a few % over minutes, and timing the
training set in one period and the held-out set in another would charge that drift to
the model.

    python benchmarks/collect_latency.py [--out benchmarks/out] [--scale 1.0]

Another space: ``--space resnet18 --resolution 64 --train 600 --sampler cover --uniform 0
--heldout 200 --out benchmarks/out/resnet18_64`` (the residual-space benchmark).

A second MobileNet-v1 set without anchors, as the reference implementation's files
are (``benchmarks/latency_targets.py --second``): ``--train 500 --uniform 500
--heldout 200 --no-anchor --no-lut --out benchmarks/out/cpu128_noanchor``.
"""

import argparse
from pathlib import Path

from aows.catalogue import get_space
from aows.latency.backends import Target
from aows.latency.lut import build_lookup_table
from aows.latency.measure import collect_interleaved, heldout_plan
from aows.latency.protocol import Protocol

BLOCKS = 10


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/out")
    ap.add_argument("--scale", type=float, default=1.0, help="shrink all counts (smoke runs)")
    ap.add_argument("--space", default="mobilenet_v1")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--train", type=int, default=2000, help="training networks")
    ap.add_argument("--sampler", default="biased", choices=["biased", "cover"])
    ap.add_argument("--uniform", type=int, default=1000, help="uniform training networks")
    ap.add_argument("--heldout", type=int, default=300)
    ap.add_argument("--no-anchor", action="store_true",
                    help="no anchor network, so no retiming of disturbed chunks")
    ap.add_argument("--no-lut", action="store_true", help="skip the per-layer lookup table")
    args = ap.parse_args()
    out = Path(args.out)
    space = get_space(args.space, resolution=args.resolution)
    target = Target("torch-cpu", batch_size=1, threads=1)
    proto = Protocol(anchor=not args.no_anchor)
    n_train = max(BLOCKS, int(args.train * args.scale))
    n_held = max(2 * BLOCKS, int(args.heldout * args.scale)) // (2 * BLOCKS) * (2 * BLOCKS)
    plan = [(out / f"train_{args.sampler}.jsonl", n_train, args.sampler, {}),
            *heldout_plan(space, out, n_held)]
    if args.uniform:
        plan.insert(1, (out / "train_uniform.jsonl", int(args.uniform * args.scale), "uniform",
                        {"seed": 777}))

    def lut(b):
        if b == BLOCKS // 2 and not args.no_lut and not (out / "lut.json").exists():
            build_lookup_table(space, target, proto).save(out / "lut.json")

    collect_interleaved(space, target, proto, plan, BLOCKS, between=lut)


if __name__ == "__main__":
    main()
