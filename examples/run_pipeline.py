"""The whole method from Python: `aows run` with a configuration given as a mapping.

    python examples/run_pipeline.py [--model torchvision:resnet18] [--out examples_out/run]
        [--tiny]

The settings are those of `aows config` (every one, with its default and help); here a
small run on the digits at 32 px. --tiny shrinks it further (seconds, for the tests).
"""

from __future__ import annotations

import argparse

import aows
from aows.pipeline import summary


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="torchvision:resnet18")
    ap.add_argument("--out", default="examples_out/run")
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args(argv)
    cfg = {"model": args.model, "device": "cpu",
           "space": {"resolution": 32, "levels": 5},
           "data": {"name": "digits", "batch_size": 64},
           "latency": {"networks": 200, "heldout": 40},
           "train": {"epochs": 4, "importance": "l1"},
           "finetune": {"epochs": 2}}
    if args.tiny:
        cfg.update(space={"resolution": 16, "levels": 3},
                   data={"name": "fake", "batch_size": 16},
                   latency={"networks": 16, "heldout": 4, "blocks": 1, "refine_budgets": 2,
                            "protocol": {"chunk": 8, "rounds": 2, "runs": 1, "warmup": 1}},
                   train={"epochs": 1, "calib_batches": 2},
                   finetune={"epochs": 1},
                   measure={"repeats": 2, "protocol": {"rounds": 2, "runs": 1,
                                                       "warmup": 1}})
    report = aows.run(aows.load_config(cfg), args.out)
    print(summary(report, args.out))
    return report


if __name__ == "__main__":
    main()
