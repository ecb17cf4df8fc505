"""Is the bias of a fit on 500 biased networks its sample's or its timing's?

    python benchmarks/retime_slices.py [--data benchmarks/data/cpu128] [--out benchmarks/out]

``latency_bias.py`` (part 5) found that fits on two consecutive slices of the committed
biased sequence, 0:500 and 500:1000, predict the uniform held-out networks with opposite
biases (-1.68 % and +5.04 %). The slices differ in two ways: which networks (the biased
sampler's mix shifts along its sequence) and when they were timed (in different blocks
of the collection, the held-out set in others). This times the three sets again in one
session, shuffled together into the same chunks, so every set sees the same states of
the machine, with the committed data's protocol (torch-cpu, batch 1, 1 thread, chunks
of 50 with an anchor), then the held-out set once more for this session's noise floor.
If the new timings give the same biases, the networks are the cause; if not, the timing
was.

Resumable: every chunk is appended to ``retime.jsonl`` in --out as it is timed (18
minutes in all here). Prints, per set, the ratio of new to committed timings (each
drift-normalised by its session's median anchor), the session's noise floor, then the
held-out NRMSE and bias of the default fit on each slice, with the committed timings and
with the new ones.

Measured here (2026-11-26, torch 2.13.0 CPU build as the committed set): noise floor
5.30 %. Slice 0:500: committed 4.17 %, bias -1.68 %; this session 4.41 %, bias +0.00 %.
Slice 500:1000: committed 7.07 %, +5.04 %; this session 5.49 %, +1.76 %. So about two
thirds of the gap between the slices came from when they were timed (in different
blocks of the collection), and a smaller part, 1.8 points, from which networks they hold.
The machine was slower than when the set was committed: the same networks took 1.26
(held-out) to 1.34 (biased 0:500) times as long after drift normalisation, unevenly
across the sets, so timings from two sessions do not mix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from aows.catalogue import get_space
from aows.latency.fit import Fitter, design_matrix
from aows.latency.measure import Timer
from aows.latency.protocol import Protocol
from aows.latency.store import read_samples
from aows.latency.target import Target
from aows.latency.validate import error_metrics

SETS = {"biased 0:500": ("train_biased.jsonl", slice(0, 500)),
        "biased 500:1000": ("train_biased.jsonl", slice(500, 1000)),
        "held-out": ("heldout.jsonl", slice(0, 300))}
HELD, RETEST = "held-out", "held-out retest"


def _row(name: str, m: dict) -> str:
    return f"  {name:44s} NRMSE {100 * m['nrmse']:5.2f} %   bias {100 * m['bias_pct']:+5.2f} %"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="benchmarks/data/cpu128")
    ap.add_argument("--out", default="benchmarks/out")
    args = ap.parse_args()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    space = get_space("mobilenet_v1", resolution=128)
    files = {f: read_samples(data / f, space) for f, _ in SETS.values()}
    old = {name: files[f].subset(np.arange(len(files[f]))[s]) for name, (f, s) in SETS.items()}

    # every network of the three sets, shuffled into the chunks of one session; then the
    # held-out set again (this session's noise floor); 1300 = 26 chunks of 50 exactly
    jobs = [(name, i) for name, smp in old.items() for i in range(len(smp))]
    jobs = [jobs[k] for k in np.random.default_rng(0).permutation(len(jobs))]
    jobs += [(RETEST, int(i)) for i in np.random.default_rng(1).permutation(len(old[HELD]))]
    protocol = Protocol()
    path = out / "retime.jsonl"
    done = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    timer = Timer(space, Target("torch-cpu", batch_size=1, threads=1), protocol,
                  anchor_min_ms=min((r["anchor_ms"] for r in done), default=float("inf")))
    chunks = range(len(done) // protocol.chunk * protocol.chunk, len(jobs), protocol.chunk)
    with path.open("a") as fh:
        for k in tqdm(chunks, desc="chunks", unit="chunk"):
            part = jobs[k:k + protocol.chunk]
            ms, anchor = timer.time([old[n if n != RETEST else HELD].configs[i]
                                     for n, i in part],
                                    np.random.default_rng([1, k]))
            for (n, i), m in zip(part, ms):
                fh.write(json.dumps({"set": n, "index": i, "latency_ms": float(m),
                                     "anchor_ms": anchor}) + "\n")
            fh.flush()
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    ref_new = float(np.median([r["anchor_ms"] for r in recs]))
    new = {name: np.zeros(len(smp)) for name, smp in old.items()}
    new[RETEST] = np.zeros(len(old[HELD]))
    for r in recs:
        new[r["set"]][r["index"]] = r["latency_ms"] * ref_new / r["anchor_ms"]
    ref_old = files["train_biased.jsonl"].anchor_reference()
    old_y = {name: smp.normalised(ref_old) for name, smp in old.items()}

    print(f"anchors: committed median {ref_old:.3f} ms, this session {ref_new:.3f} ms")
    print("new / committed timing of the same networks (each drift-normalised):")
    for name in SETS:
        r = new[name] / old_y[name]
        print(f"  {name:16s} median {np.median(r):.4f}, mean {r.mean():.4f}, "
              f"spread (IQR) {np.subtract(*np.percentile(r, [75, 25])):.4f}")
    scale = float(np.median(new[HELD] / old_y[HELD]))
    print(_row("held-out: new (rescaled) against committed",
               error_metrics(new[HELD] / scale, old_y[HELD])))
    print(_row("held-out: re-timed in this session (its noise floor)",
               error_metrics(new[RETEST], new[HELD])))

    fitter = Fitter(space)
    A_held = design_matrix(space, old["held-out"].configs)
    print("default fit on each slice, predicting the held-out set of the same session:")
    for name in ("biased 0:500", "biased 500:1000"):
        configs = old[name].configs
        for tag, y, yh in (("committed", old_y[name], old_y["held-out"]),
                           ("this session", new[name], new["held-out"])):
            x = fitter.fit_x(configs, y)
            print(_row(f"{name}, {tag}", error_metrics(A_held @ x, yh)))


if __name__ == "__main__":
    main()
