"""How long `aows export --model` takes: prune a model now, its channels ordered by
importance (target: ResNet-50 at 224 px in under 10 s).

    python benchmarks/export_speed.py [--model torchvision:resnet50] [--resolution 224]
        [--importance l1] [--repeats 3]

Each repeat runs the command as a user would (a fresh process: imports, the width graph
of the module, the ordering, the slice at a uniform 0.5x, writing the folder), without
--data (no BatchNorm re-estimation) and without ONNX; the wall time of each and their
median are printed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from aows.extract import model_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="torchvision:resnet50")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--importance", default="l1")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target", type=float, default=10.0, help="seconds")
    args = ap.parse_args()
    space = model_space(args.model, resolution=args.resolution)
    config = ",".join(map(str, space.multiplier_config(0.5)))
    times = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "aows.cli", "export", "--model", args.model,
                   "--resolution", str(args.resolution), "--config", config,
                   "--importance", args.importance, "--out", f"{tmp}/final"]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if done.returncode != 0:
                sys.exit(done.stderr)
    times.sort()
    med = times[len(times) // 2]
    print(f"aows export --model {args.model} at {args.resolution} px, --importance "
          f"{args.importance}, uniform 0.5x: " + ", ".join(f"{t:.2f} s" for t in times)
          + f"; median {med:.2f} s against the {args.target:g} s target: "
          + ("met" if med < args.target else "NOT met"))


if __name__ == "__main__":
    main()
