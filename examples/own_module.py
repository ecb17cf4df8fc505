"""Your own module, from a file, through the whole method from Python: its width graph,
a latency model of this CPU, an OWS supernet started from its weights, the exact search
under a budget, and the network found, exported as your own class.

    python examples/own_module.py [--epochs 3] [--networks 60] [--resolution 32]
        [--out examples_out/own]

The module is defined below (`build`); aows reads it as `examples/own_module.py:build`,
as `--model` does on the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import aows
from aows.latency.protocol import Protocol
from aows.latency.target import Target
from aows.train.data import digits_data
from aows.train.finetune import evaluate


class Net(nn.Module):
    """A small residual CNN: the addition ties the stem's width to the block's output."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(32, 48, 3, 1, 1, bias=False), nn.BatchNorm2d(48),
                                   nn.ReLU(), nn.Conv2d(48, 32, 3, 1, 1, bias=False),
                                   nn.BatchNorm2d(32))
        self.head = nn.Sequential(nn.Conv2d(32, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU())
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.fc(self.head(x).mean((2, 3)))


def build(num_classes: int = 10) -> nn.Module:
    return Net(num_classes)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--networks", type=int, default=60, help="timed for the latency model")
    ap.add_argument("--resolution", type=int, default=32, help="input size (px)")
    ap.add_argument("--out", default="examples_out/own")
    args = ap.parse_args(argv)
    out = Path(args.out)
    data = digits_data(resolution=args.resolution, batch=64)
    space = aows.get_space(f"{Path(__file__).resolve()}:build", resolution=args.resolution,
                           classes=data.classes)
    print(f"{space.n_searchable} searchable widths; held: "
          + "; ".join(f"{h['name']} = {h['width']}" for h in space.held_fixed()))

    samples = out / "samples.jsonl"
    aows.collect(space, Target("torch-cpu", threads=1),
                 Protocol(warmup=1, rounds=3, runs=2, chunk=20), samples, args.networks,
                 progress=False)
    latency = aows.fit(space, aows.read_samples(samples, space))
    lo, hi = latency.predict(space.narrowest()), latency.predict(space.widest())
    budget = lo + 0.5 * (hi - lo)

    cfg = aows.TrainConfig(epochs=args.epochs, batch_size=64, device="cpu", progress=False)
    supernet, stats = aows.train_supernet(space, data.train, cfg, out / "supernet", latency)
    found = aows.search(aows.Problem(latency, stats.unaries()), budget)
    net = aows.export_config(supernet, found["config"], data.train(0))
    aows.save_final(out / "final", net, space, found["config"])
    top1 = evaluate(net, data.val(0))["top1"]
    print(f"budget {budget:.3f} ms: widths {found['config']}, predicted "
          f"{found['predicted_latency_ms']:.3f} ms, top-1 {100 * top1:.1f} % before "
          f"fine-tuning; {type(net).__name__} in {out / 'final'}")
    return {"config": found["config"], "top1": top1, "budget_ms": budget}


if __name__ == "__main__":
    main()
