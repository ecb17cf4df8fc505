"""Timing through ``--remote``: the protocol's overhead, the agreement with local timing,
and a fleet's speed-up, with local stand-ins for the target (``--remote env``: the runner
on this machine through a real pipe).

    python benchmarks/remote.py [--resolution 64] [--repeats 3] [--fleet-count 200]

1. Overhead (target: <= 10 % more wall time): one chunk at the default chunk size
   (50 networks, the default protocol) of the `mobilenet_v1` space, ONNX Runtime with
   1 thread, collected in-process and through ``--remote env``, alternately
   ``--repeats`` times each (the same networks: uniform sampler, same seed); the median
   wall time of each and their ratio.
2. Agreement: the two collections' drift-normalised timings of the same networks
   against each other (NRMSE), beside the noise floor: two in-process collections of
   them against each other.
3. Fleet (target: <= 0.6x the time of one device): ``--fleet-count`` networks through
   one device and through two (``--remote env`` twice, each runner one thread, on this
   machine's cores); wall times and their ratio. Every network is built and exported to
   ONNX by this one process whatever the fleet (torch's exporter is not thread-safe), so
   the export's share of one device's wall time bounds what a fleet can save: the time
   of exporting the same networks in-process is printed with the bound it implies
   (export + the rest / devices).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aows.cli import main as aows
from aows.latency.store import read_samples


def collect(out: Path, count: int, res: int, remotes: list[str]) -> float:
    args = ["latency", "generate", "--space", "mobilenet_v1", "--resolution", str(res),
            "--backend", "onnxruntime", "--threads", "1", "--uniform", "--count", str(count),
            "-o", str(out), "-q"]
    for r in remotes:
        args += ["--remote", r]
    if remotes:
        args += ["--remote-python", sys.executable]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = aows(args)
    if code != 0:
        raise SystemExit(f"aows {' '.join(args)} failed ({code})")
    return time.perf_counter() - t0


def nrmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.mean(b))


def normalised(path: Path) -> np.ndarray:
    s = read_samples(path)
    return s.normalised(s.anchor_reference())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fleet-count", type=int, default=200)
    ap.add_argument("--parts", default="123", help="which parts to run, e.g. 3")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "1" in args.parts or "2" in args.parts:
            overhead_and_agreement(tmp, args)
        if "3" in args.parts:
            fleet(tmp, args)


def overhead_and_agreement(tmp: Path, args) -> None:
    if True:
        local, remote = [], []
        for k in range(args.repeats):
            local.append(collect(tmp / f"local{k}.jsonl", 50, args.resolution, []))
            remote.append(collect(tmp / f"remote{k}.jsonl", 50, args.resolution, ["env"]))
        lm, rm = float(np.median(local)), float(np.median(remote))
        print(f"1. one chunk of 50 networks at {args.resolution} px: in-process "
              f"{lm:.2f} s, through --remote env {rm:.2f} s (median of {args.repeats}); "
              f"overhead {100 * (rm / lm - 1):+.1f} % (target <= +10 %)", flush=True)
        floor = float(np.median([nrmse(normalised(tmp / f"local{k}.jsonl"),
                                       normalised(tmp / f"local{k + 1}.jsonl"))
                                 for k in range(args.repeats - 1)]))
        agree = float(np.median([nrmse(normalised(tmp / f"remote{k}.jsonl"),
                                       normalised(tmp / f"local{k}.jsonl"))
                                 for k in range(args.repeats)]))
        print(f"2. the same networks, drift-normalised: remote against local NRMSE "
              f"{100 * agree:.2f} %; noise floor (local against local) {100 * floor:.2f} %",
              flush=True)


def fleet(tmp: Path, args) -> None:
    from aows.catalogue import get_space
    from aows.nn import build_network
    from aows.onnx_export import onnx_bytes
    one = collect(tmp / "one.jsonl", args.fleet_count, args.resolution, ["env"])
    two = collect(tmp / "two.jsonl", args.fleet_count, args.resolution, ["env", "env"])
    space = get_space("mobilenet_v1", resolution=args.resolution)
    t0 = time.perf_counter()
    for c in read_samples(tmp / "one.jsonl").configs:
        onnx_bytes(build_network(space, c), space.input_shape(1))
    export = time.perf_counter() - t0
    bound = (export + (one - export) / 2) / one
    print(f"3. {args.fleet_count} networks: one device {one:.1f} s, a fleet of two "
          f"{two:.1f} s; ratio {two / one:.2f} (target <= 0.6). Building and exporting "
          f"them here takes {export:.1f} s ({100 * export / one:.0f} % of one device's "
          f"time): two devices can reach {bound:.2f} at best on this machine")


if __name__ == "__main__":
    main()
