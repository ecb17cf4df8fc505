"""Biased sampling (the AOWS supplementary, section A) on every built-in space: networks
until every latency unknown has been timed once, against the lower bound.

    python benchmarks/coverage.py [--resolution 224]

Lower bound: a network times at most as many unknowns of a layer type as it has layers
of that type, so covering a type of U unknowns and L layers per network takes at least
ceil(U / L) networks; the bound is the largest over types. No timing is done: coverage
depends only on the configurations the sampler proposes.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from aows.catalogue import get_space
from aows.latency.sampling import BiasedSampler
from aows.spaces import SPACES


def lower_bound(space) -> int:
    keys, _ = space.unknowns()
    unknowns = Counter(t for t, _, _ in keys)
    layers = Counter(layer.type_key for layer in space.layers)
    return max(-(-unknowns[t] // layers[t]) for t in unknowns)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=224)
    args = ap.parse_args()
    print(f"{'space':14s} {'unknowns':>9s} {'networks':>9s} {'lower bound':>12s} {'ratio':>6s}"
          f" {'s/network':>10s}")
    for name in sorted(SPACES):
        space = get_space(name, resolution=args.resolution)
        sampler = BiasedSampler(space)
        t0 = time.perf_counter()
        n = 0
        while sampler.coverage() < 1.0:
            sampler.next()
            n += 1
        dt = (time.perf_counter() - t0) / max(n, 1)
        lb = lower_bound(space)
        print(f"{name:14s} {len(sampler.keys):9d} {n:9d} {lb:12d} {n / lb:6.2f} {dt:10.4f}")


if __name__ == "__main__":
    main()
