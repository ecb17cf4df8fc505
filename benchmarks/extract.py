"""Width graphs of torchvision models: what is found, what is held, and how fast.

    python benchmarks/extract.py [--resolution 224] [--repeats 3] [--timm | --dense]

For each model: searchable and total width variables, layers, held widths by reason,
and the extraction time (torch.fx trace + one run for the shapes + the check run of the
narrowest configuration; the module's construction excluded, median of --repeats). Then
the wall time of the command `aows space show --model torchvision:resnet50` in a fresh
process (Python start, imports and the model's construction included), median of 3.
``--dense``: torchvision's segmenters and detectors' backbones (``NAME.backbone``: the
backbone and its feature pyramid) instead.
Targets: extraction of resnet50 < 5 s, the command < 10 s.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import subprocess
import sys
import time

import torch

from aows.extract import extract
from aows.models import load_model

MODELS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
          "regnet_x_400mf"]
TIMM = ["resnet18", "resnet50d", "efficientnet_b0", "mobilenetv3_small_100", "regnety_002",
        "convnext_atto"]  # --timm (where timm is installed): its own layers and names
DENSE = ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50",
         "fasterrcnn_mobilenet_v3_large_fpn.backbone", "retinanet_resnet50_fpn.backbone",
         "ssdlite320_mobilenet_v3_large.backbone"]  # --dense: maps and pyramids out


def held_summary(space) -> str:
    kinds = collections.Counter()
    for h in space.held_fixed():
        for r in h["reasons"]:
            kinds[r.split(" '")[0].split(" (")[0].split(" at ")[0]] += 1
    return "; ".join(f"{k} x{n}" for k, n in kinds.items())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timm", action="store_true", help="timm's models instead")
    ap.add_argument("--dense", action="store_true",
                    help="torchvision's segmenters and detectors' backbones instead")
    args = ap.parse_args()
    source, models = (("timm", TIMM) if args.timm else ("torchvision", DENSE) if args.dense
                      else ("torchvision", MODELS))
    torch.set_num_threads(2)
    shape = (3, args.resolution, args.resolution)
    print(f"{source} models at {args.resolution} px, extraction time median of "
          f"{args.repeats}")
    print("| model | searchable / variables | layers | extraction | held (reason x count) |")
    print("|---|---|---|---|---|")
    for name in models:
        module = load_model(f"{source}:{name}")
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            space = extract(module, shape, name=name)
            times.append(time.perf_counter() - t)
        print(f"| {name} | {space.n_searchable} / {space.n_vars} | {space.n_layers} | "
              f"{statistics.median(times):.2f} s | {held_summary(space)} |")
    if args.timm or args.dense:
        return
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aows.cli", "space", "show", "--model",
                        "torchvision:resnet50"], check=True, capture_output=True)
        walls.append(time.perf_counter() - t)
    print(f"`aows space show --model torchvision:resnet50` (fresh process): median "
          f"{statistics.median(walls):.2f} s of {', '.join(f'{w:.2f}' for w in walls)}")


if __name__ == "__main__":
    main()
