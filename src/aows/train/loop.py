"""Supernet training, the whole loop in one place (method.md sections 2 and 3).

Every step (sandwich rule + in-place distillation): the widest configuration on the
labels; the narrowest on the widest one's soft predictions; G sampled configurations,
each on its own slice of the batch, also on the soft predictions; one optimiser step.
For every image of a sampled configuration, d = CE(c) - CE(widest) feeds the unary
statistics. OWS samples uniformly; AOWS samples from p_T with the current unaries and
the gamma of the budget, T following seed section B after the warm-up.

Not built yet (issue #4): resume, DDP, AMP/channels_last, data sets, the CLI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aows.latency.model import LatencyModel
from aows.nn.slimmable import SlimmableNetwork
from aows.search import Problem, save_unaries, search
from aows.space import SearchSpace
from aows.train.sampler import sample_configs
from aows.train.schedule import temperature
from aows.train.unaries import UnaryStats


@dataclass
class TrainConfig:
    epochs: int = 20
    lr: float = 0.1  # for batch 256; scaled by batch / 256
    momentum: float = 0.9
    weight_decay: float = 1e-5
    sampled: int = 2  # G: sampled configurations per step, each on its own batch slice
    method: str = "ows"  # ows | aows
    budget: float | None = None  # ms/image, required by aows
    sampling: str = "joint"  # joint | marginal (the reference)
    unary_mode: str = "epoch"  # epoch (paper) | window
    unary_window: int = 100_000
    seed: int = 0


def train_supernet(space: SearchSpace, batches: Callable[[int], Iterable],
                   cfg: TrainConfig, out: str | Path, latency: LatencyModel | None = None,
                   log: Callable[[str], None] = print) -> tuple[SlimmableNetwork, UnaryStats]:
    """Train the supernet; ``batches(epoch)`` yields (images, labels) for one epoch.
    Writes ``out``/unaries.json and ``out``/metrics.jsonl after every epoch."""
    if cfg.method not in ("ows", "aows"):
        raise ValueError("method must be 'ows' or 'aows'")
    if cfg.method == "aows" and (latency is None or cfg.budget is None):
        raise ValueError("--method aows needs a latency model and a budget")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = SlimmableNetwork(space)
    stats = UnaryStats([len(c) for c in space.searchable_choices], cfg.unary_mode,
                       cfg.unary_window)
    opt = None
    widest, narrowest = space.widest(), space.narrowest()
    it_per_epoch = None
    for epoch in range(cfg.epochs):
        net.train()
        t0, seen, sums = time.time(), 0, {"max": 0.0, "min": 0.0, "sampled": 0.0}
        for it, (x, y) in enumerate(batches(epoch)):
            B = x.shape[0]
            if opt is None:
                opt = torch.optim.SGD(net.parameters(), lr=cfg.lr * B / 256,
                                      momentum=cfg.momentum, weight_decay=cfg.weight_decay)
            progress = epoch + (it / it_per_epoch if it_per_epoch else 0.0)
            T = temperature(progress, cfg.epochs) if cfg.method == "aows" else None
            idx = sample_configs(rng, cfg.sampled, space, latency,
                                 stats.unaries() if T is not None else None, cfg.budget, T,
                                 cfg.sampling)
            opt.zero_grad(set_to_none=True)
            logits = net(x, widest)
            loss_max = F.cross_entropy(logits, y)
            loss_max.backward()
            soft = logits.detach().softmax(1)
            ce_max = F.cross_entropy(logits.detach(), y, reduction="none")
            loss_min = _distill(net(x, narrowest), soft)
            loss_min.backward()
            for k, part in enumerate(np.array_split(np.arange(B), len(idx))):
                if part.size == 0:
                    continue
                cfg_k = space.config_from_indices(idx[k])
                out_k = net(x[part], cfg_k)
                loss_k = _distill(out_k, soft[part]) * (part.size / B)
                loss_k.backward()
                d = F.cross_entropy(out_k.detach(), y[part], reduction="none") - ce_max[part]
                stats.update(np.repeat(idx[k][None], part.size, axis=0), d.numpy())
                sums["sampled"] += float(loss_k.detach()) * B
            opt.step()
            sums["max"] += float(loss_max.detach()) * B
            sums["min"] += float(loss_min.detach()) * B
            seen += B
        it_per_epoch = it + 1
        stats.end_epoch()
        save_unaries(out / "unaries.json", stats.unaries(), space, epoch=epoch + 1,
                     method=cfg.method, config=asdict(cfg))
        rec = {"epoch": epoch + 1, "images": seen, "seconds": round(time.time() - t0, 2),
               **{f"loss_{k}": v / max(seen, 1) for k, v in sums.items()},
               "temperature": T}
        if latency is not None and cfg.budget is not None:
            found = search(Problem(latency, stats.unaries()), cfg.budget, "exact")
            rec.update(decoded=found["config"], predicted_latency_ms=found[
                "predicted_latency_ms"])
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss max {rec['loss_max']:.3f}, min "
            f"{rec['loss_min']:.3f}, {seen / max(rec['seconds'], 1e-9):.0f} images/s"
            + (f", OWS decode {rec['predicted_latency_ms']:.3f} ms" if "decoded" in rec else ""))
    return net, stats


def _distill(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """In-place distillation: cross-entropy against the widest network's soft labels."""
    return -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
