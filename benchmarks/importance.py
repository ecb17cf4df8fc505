"""Which channels to keep: top-1 straight after slicing a trained model, per importance
criterion, at uniform width multipliers (no training after the slice; BatchNorm
statistics re-estimated on training batches, as `aows export --data` does).

    python benchmarks/importance.py [--models torchvision:resnet18 torchvision:mobilenet_v2]
        [--data digits] [--resolution 32] [--epochs 30] [--out benchmarks/out/importance]

Each model is first trained on the data as "the user's model" (the library's fine-tuning
recipe from random initialisation; tensors-only weights cached in --out, so a rerun only
slices). Then, for every multiplier and criterion: the trained module's channels are
ordered by the criterion (``aows.importance``), sliced to the uniform configuration
(``SearchSpace.multiplier_config``), BatchNorm re-estimated on --calib batches, and
evaluated on the validation split. The standard error of a top-1 p on n validation images
is sqrt(p (1 - p) / n); the verdict lines compare each criterion with the leading slices
("none") in those units: the target is never more than 1 SE below at any multiplier and
more than 3 SE above at 0.5 and 0.35. The leading slices of a model trained from a
random initialisation are one random choice of channels, so the mean and spread of
--random random orders are printed too: which channels a slice keeps can move top-1 by
more than the validation split's standard error.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from aows.extract import model_space
from aows.importance import CRITERIA, channel_order, order_channels, permute_channels
from aows.io import load_tensors
from aows.nn.bn import reestimate_bn
from aows.nn.modelnet import slice_module
from aows.train.data import get_data
from aows.train.finetune import FinetuneConfig, evaluate, finetune


def trained_model(spec: str, data, args) -> torch.nn.Module:
    """The user's model: trained once on the data, its weights cached in --out."""
    out = Path(args.out)
    tag = spec.replace(":", "_").replace("/", "_")
    cache = out / f"{tag}_{args.resolution}px_{args.epochs}ep_wd{args.weight_decay:g}.pt"
    space = model_space(spec, resolution=args.resolution, classes=data.classes)
    module = space.load_module()
    if cache.exists():
        module.load_state_dict(load_tensors(cache, "weights"))
        return space, module.eval()
    torch.manual_seed(args.seed)
    for m in module.modules():  # a fresh initialisation per seed
        if hasattr(m, "reset_parameters") and m is not module:
            m.reset_parameters()
    cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         warmup_epochs=1.0, label_smoothing=0.0, seed=args.seed,
                         weight_decay=args.weight_decay,
                         device="cpu", progress=False)
    t0 = time.perf_counter()
    res = finetune(module, data.train, data.val, cfg, out / f"{tag}_train", data.steps_per_epoch)
    print(f"{spec}: trained {args.epochs} epochs in {time.perf_counter() - t0:.0f} s, "
          f"top-1 {100 * res['top1']:.2f} %")
    out.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in module.state_dict().items()}, cache)
    return space, module.eval()


def sliced_top1(space, module, criterion, multiplier, data, args, seed=None) -> float:
    """Top-1 of the module ordered by ``criterion`` (or, with ``seed``, by a random
    permutation of every variable) and sliced at ``multiplier``."""
    m = copy.deepcopy(module)
    if seed is not None:
        rng = np.random.default_rng(seed)
        permute_channels(m, space, {v: rng.permutation(len(p)) for v, p in
                                    channel_order(m, space, "none").items()})
    elif criterion != "none":
        order_channels(m, space, criterion, data.train(0))
    net = slice_module(m, space, space.multiplier_config(multiplier))
    reestimate_bn(net, (x for x, _ in islice(data.train(1), args.calib)))
    return evaluate(net, data.val(0))["top1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+",
                    default=["torchvision:resnet18", "torchvision:mobilenet_v2"])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--weight-decay", type=float, default=5e-4,
                    help="of the user's model's training (the usual CIFAR recipe's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calib", type=int, default=8, help="BatchNorm re-estimation batches")
    ap.add_argument("--multipliers", type=float, nargs="+", default=[0.75, 0.5, 0.35])
    ap.add_argument("--criteria", nargs="+", default=list(CRITERIA))
    ap.add_argument("--random", type=int, default=5,
                    help="random channel orders, a reference: the leading slices of a model "
                    "trained from a random initialisation are one such order")
    ap.add_argument("--out", default="benchmarks/out/importance")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    data = get_data(args.data, args.resolution, args.batch_size, args.seed)
    results = {}
    for spec in args.models:
        space, module = trained_model(spec, data, args)
        full = evaluate(module, data.val(0))
        n = full["images"]
        print(f"\n{spec} at {args.resolution} px: {space.n_searchable} searchable widths, "
              f"full width top-1 {100 * full['top1']:.2f} % on {n} validation images")
        print("criterion  " + "  ".join(f"{m:>6.2f}x" for m in args.multipliers))
        rows = {}
        for crit in args.criteria:
            t0 = time.perf_counter()
            rows[crit] = [sliced_top1(space, module, crit, m, data, args)
                          for m in args.multipliers]
            print(f"{crit:<9}  " + "  ".join(f"{100 * p:6.2f} %" for p in rows[crit])
                  + f"   ({time.perf_counter() - t0:.1f} s)")
        rand = np.array([[sliced_top1(space, module, None, m, data, args, seed=k)
                          for m in args.multipliers] for k in range(args.random)])
        print(f"{'random':<9}  " + "  ".join(f"{100 * p:6.2f} %" for p in rand.mean(0))
              + f"   (mean of {args.random} random orders; sd "
              + ", ".join(f"{100 * p:.1f}" for p in rand.std(0)) + " points)")
        base = rows.get("none")
        if base is not None:
            for crit, vals in rows.items():
                if crit == "none":
                    continue
                se = [np.sqrt(max(b * (1 - b), 1.0 / n) / n) for b in base]
                z = [(v - b) / s for v, b, s in zip(vals, base, se)]
                never_below = all(d >= -1 for d in z)
                above = all(d > 3 for d, m in zip(z, args.multipliers) if m <= 0.5)
                print(f"{crit} - none, in standard errors: "
                      + ", ".join(f"{m:.2f}x {d:+.1f}" for m, d in zip(args.multipliers, z))
                      + f": never 1 SE below {'met' if never_below else 'NOT met'}, "
                      f"3 SE above at <= 0.5x {'met' if above else 'NOT met'}")
        results[spec] = {"full_top1": full["top1"], "images": n,
                         "multipliers": args.multipliers, "top1": rows,
                         "random_mean": rand.mean(0).tolist(),
                         "random_sd": rand.std(0).tolist()}
    path = Path(args.out) / "importance.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"\n{path}")


if __name__ == "__main__":
    main()
