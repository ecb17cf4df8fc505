"""What one anchor can and cannot correct: the same networks timed quiet and under load.

    python benchmarks/drift.py [--networks 40] [--reps 2]

The protocol scales every timing by (reference anchor / its chunk's anchor), one fixed
network of median width: right if load slows every network by the same factor. This
times ``--networks`` uniformly drawn MobileNet-v1 networks (128 px, torch-cpu, batch 1,
1 thread, the default protocol's rounds and runs, no anchor check) with three candidate
anchors (narrowest, median, widest) in one chunk: quiet, then with a load process on the
other core, then quiet again; each state ``--reps`` times (median). Loads: "memory"
(numpy copying 64 MB arrays: a neighbour streaming memory) and "compute" (a pure Python
loop: a neighbour on the other core's ALUs). Prints, per load, each network's slowdown
against its quiet latency (and its correlation with size) and what is left of it after
the median anchor's multiplicative correction and after an affine one through the
narrowest and widest anchors, against the quiet test-retest noise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np

from aows.catalogue import get_space
from aows.latency.backends import Target
from aows.latency.measure import Timer
from aows.latency.protocol import Protocol

LOADS = {
    "memory": "import numpy as np\na = np.ones(8_000_000); b = np.empty_like(a)\n"
              "while True: np.copyto(b, a)",
    "compute": "x = 0\nwhile True: x = (x * 31 + 7) % 1000003",
}


def _rms(e):
    return 100 * float(np.sqrt(np.mean(e ** 2)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--networks", type=int, default=40)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    space = get_space("mobilenet_v1", resolution=128)
    timer = Timer(space, Target("torch-cpu", batch_size=1, threads=1),
                  Protocol(anchor=False))
    configs = [space.narrowest(), space.median_config(), space.widest(),
               *space.uniform_sample(np.random.default_rng(3), args.networks)]
    runners = [timer.prepare(c) for c in configs]
    seed = iter(range(10 ** 6))

    def state() -> np.ndarray:
        out = [timer.run(runners, np.random.default_rng([11, next(seed)]))[0] * 1e3
               for _ in range(args.reps)]
        return np.median(out, axis=0)

    quiet = state()
    print(f"{args.networks} networks + 3 anchors, one chunk, {args.reps} reps per state")
    for name, code in LOADS.items():
        hog = subprocess.Popen([sys.executable, "-c", code])
        try:
            time.sleep(2)
            loaded = state()
        finally:
            hog.kill()
            hog.wait()
        again = state()
        q = (quiet + again) / 2
        t_q, t_l = q[3:], loaded[3:]
        slow = t_l / t_q
        anchors = ", ".join(f"{v:.2f}" for v in loaded[:3] / q[:3])
        corr = np.corrcoef(slow, t_q)[0, 1]
        print(f"\nload '{name}': anchors slowed by {anchors} (narrowest, median, widest)")
        print(f"  networks slowed by {slow.min():.2f} to {slow.max():.2f} (mean "
              f"{slow.mean():.2f}); correlation with quiet latency {corr:+.2f}")
        retest = _rms(quiet[3:] / again[3:] - 1)
        print(f"  quiet test-retest (before / after): NRMSE {retest:.2f} %")
        mult = t_l * q[1] / loaded[1]
        b, a = np.polyfit(q[[0, 2]], loaded[[0, 2]], 1)
        aff = (t_l - a) / b
        for label, est in (("uncorrected", t_l), ("median anchor (x factor)", mult),
                           (f"affine, narrowest+widest ({b:.3f} x + {a:.3f} ms)", aff)):
            e = est / t_q - 1
            print(f"  {label:44s} error against quiet: RMS {_rms(e):5.2f} %, "
                  f"bias {100 * e.mean():+5.2f} %")
        quiet = again


if __name__ == "__main__":
    main()
