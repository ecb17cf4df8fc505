"""Your trained model, faster, now: a model pruned to a uniform width multiplier straight
from its weights (channels ordered by importance first), against the original.

    python examples/prune_now.py [--model torchvision:resnet18] [--multiplier 0.5]
        [--epochs 3] [--out examples_out/prune_now]

The "trained model" is trained here for --epochs on the handwritten digits that ship with
scikit-learn (nothing can be downloaded); with your own, give `--model file.py:FUNCTION`
(or a torchvision name and `--weights`). The same from the command line:
`aows export --model M --weights W --config WIDTHS --data D --out DIR`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import aows
from aows.latency.measure import time_configs
from aows.latency.protocol import Protocol
from aows.latency.target import Target
from aows.train.data import digits_data
from aows.train.finetune import FinetuneConfig, evaluate, finetune


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="torchvision:resnet18")
    ap.add_argument("--weights", default=None, help="your model's tensors-only state_dict")
    ap.add_argument("--multiplier", type=float, default=0.5)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3, help="training of the stand-in model")
    ap.add_argument("--out", default="examples_out/prune_now")
    args = ap.parse_args(argv)
    out = Path(args.out)
    data = digits_data(resolution=args.resolution, batch=64)
    weights = args.weights
    if weights is None:  # a stand-in for your trained model: trained on the digits here
        space = aows.get_space(args.model, resolution=args.resolution, classes=data.classes)
        model = space.load_module()
        finetune(model, data.train, None, FinetuneConfig(epochs=args.epochs, progress=False,
                                                         device="cpu"),
                 out / "user_model", data.steps_per_epoch)
        weights = out / "weights.pt"
        torch.save(model.state_dict(), weights)
    space = aows.get_space(args.model, resolution=args.resolution, classes=data.classes,
                           weights=str(weights))
    original = space.load_module()

    config = space.multiplier_config(args.multiplier)
    pruned, order = aows.export_from_model(space, config, "l1", lambda: data.train(0))
    aows.save_final(out / "pruned", pruned, space, config, importance="l1")

    ms = time_configs(space, [space.widest(), config], Target("torch-cpu", threads=1),
                      Protocol(warmup=2, rounds=5, runs=3, chunk=2))
    rows = {}
    for (name, net, cfg), t in zip([("original", original, space.widest()),
                                    (f"pruned {args.multiplier:g}x", pruned, config)], ms):
        rows[name] = {"top1": evaluate(net, data.val(0))["top1"], "ms": float(t),
                      "params": sum(p.numel() for p in net.parameters()),
                      "macs": space.flops(cfg)}
    base = rows["original"]["ms"]
    print("| network | top-1 (no fine-tuning) | ms/image | speed-up | parameters | MMACs |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {100 * r['top1']:.1f} % | {r['ms']:.3f} | {base / r['ms']:.2f}x | "
              f"{r['params'] / 1e6:.2f} M | {r['macs'] / 1e6:.1f} |")
    print(f"{out / 'pruned'}: config.json + weights.pt (fine-tune it with `aows finetune`)")
    return rows


if __name__ == "__main__":
    main()
