"""Collect the timing data of the latency-model benchmark (resumable; rerun to continue).

MobileNet-v1 space at 128 px, batch 1, torch-cpu, 1 thread, default protocol (chunks of
50 networks, 6 interleaved rounds of 5 runs, minimum). Writes under benchmarks/out/:
train_biased.jsonl (2000), heldout.jsonl (300 uniform), heldout_retest.jsonl (the same
300 re-timed later: the noise floor), train_uniform.jsonl (2000), lut.json (per-layer
lookup table). Then run benchmarks/latency_model.py to analyse.

    python benchmarks/collect_latency.py [--out benchmarks/out] [--scale 1.0]
"""

import argparse
from pathlib import Path

from aows.latency.backends import Target
from aows.latency.measure import collect
from aows.latency.protocol import Protocol
from aows.latency.store import read_samples
from aows.space import mobilenet_v1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/out")
    ap.add_argument("--scale", type=float, default=1.0, help="shrink all counts (smoke runs)")
    args = ap.parse_args()
    out = Path(args.out)
    space = mobilenet_v1(resolution=128)
    target = Target("torch-cpu", batch_size=1, threads=1)
    proto = Protocol()
    n = lambda k: max(10, int(k * args.scale))  # noqa: E731
    collect(space, target, proto, out / "train_biased.jsonl", n(2000), "biased")
    collect(space, target, proto, out / "heldout.jsonl", n(300), "uniform", seed=12345)
    held = read_samples(out / "heldout.jsonl")
    collect(space, target, proto, out / "heldout_retest.jsonl", n(300), "given",
            configs=held.configs)
    if not (out / "lut.json").exists():
        from aows.latency.lut import build_lookup_table  # noqa: PLC0415

        build_lookup_table(space, target, proto).save(out / "lut.json")
    collect(space, target, proto, out / "train_uniform.jsonl", n(2000), "uniform", seed=777)


if __name__ == "__main__":
    main()
