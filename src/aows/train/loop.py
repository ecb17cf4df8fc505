"""Supernet training, the whole loop in one place (method.md sections 2 and 3).

Every step (sandwich rule + in-place distillation): the widest configuration on the
labels; the narrowest on the widest one's soft predictions; G sampled configurations,
each on its own slice of the batch, also on the soft predictions; one optimiser step.
For every image of a sampled configuration, d = CE(c) - CE(widest) feeds the unary
statistics. OWS samples uniformly; AOWS samples from p_T with the current unaries and
the gamma of the budget, T following seed section B after the warm-up.

A checkpoint (weights-only torch: model, optimiser, unary statistics, RNG states,
position) is written atomically after every epoch and when ``should_stop`` turns true
(SIGTERM or Ctrl-C by default) at a step boundary; ``resume`` continues from it as if
never stopped, given the same ``batches``.

Not built yet (issue #4): DDP, AMP/channels_last, data sets, the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aows.errors import AowsError
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
    batch_size: int = 64  # the batches' size; scales the learning rate
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
                   log: Callable[[str], None] = print, resume: bool = False,
                   should_stop: Callable[[], bool] | None = None
                   ) -> tuple[SlimmableNetwork, UnaryStats]:
    """Train the supernet; ``batches(epoch)`` yields (images, labels) for one epoch, the
    same sequence every time it is called for that epoch. Writes ``out``/unaries.json,
    ``out``/metrics.jsonl and ``out``/checkpoint.pt after every epoch."""
    if cfg.method not in ("ows", "aows"):
        raise AowsError("--method must be 'ows' or 'aows'")
    if cfg.method == "aows" and (latency is None or cfg.budget is None):
        raise AowsError("--method aows needs a latency model and a budget: give --latency "
                        "latency.json --budget MS")
    if latency is not None:
        latency.check_space(space)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = SlimmableNetwork(space)
    stats = UnaryStats([len(c) for c in space.searchable_choices], cfg.unary_mode,
                       cfg.unary_window)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr * cfg.batch_size / 256,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    pos = {"epoch": 0, "iteration": 0, "it_per_epoch": 0, "seen": 0, "sums": _zero_sums()}
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        if state["config"] != asdict(cfg):
            raise AowsError(f"{ckpt} was written with another configuration; resume with "
                            "the same settings or use a new output folder")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        stats.load_state_dict(state["stats"])
        rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["torch_rng"])
        pos = state["position"]
        log(f"resumed from {ckpt}: epoch {pos['epoch'] + 1}, step {pos['iteration']}")
    restore = None
    if should_stop is None:
        should_stop, restore = _signal_flag()
    try:
        return _epochs(space, batches, cfg, out, latency, log, should_stop, net, stats, opt,
                       rng, pos, ckpt)
    finally:
        if restore is not None:
            restore()


def _epochs(space, batches, cfg, out, latency, log, stop, net, stats, opt, rng, pos, ckpt):
    widest, narrowest = space.widest(), space.narrowest()

    def save():
        save_checkpoint(ckpt, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                               "stats": stats.state_dict(), "np_rng": rng.bit_generator.state,
                               "torch_rng": torch.get_rng_state(), "position": pos,
                               "config": asdict(cfg)})

    T = None
    for epoch in range(pos["epoch"], cfg.epochs):
        net.train()
        t0 = time.time()
        for it, (x, y) in enumerate(batches(epoch)):
            if it < pos["iteration"]:
                continue  # done before the interruption
            B = x.shape[0]
            if B > cfg.batch_size:
                raise AowsError(f"batch of {B} images but batch_size={cfg.batch_size}: the "
                                "learning rate is scaled by batch_size, set it to the batches'")
            progress = epoch + (it / pos["it_per_epoch"] if pos["it_per_epoch"] else 0.0)
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
            out_min = net(x, narrowest)
            loss_min = _distill(out_min, soft)
            loss_min.backward()
            sums = pos["sums"]
            sums["acc_max"] += float((logits.detach().argmax(1) == y).sum())
            sums["acc_min"] += float((out_min.detach().argmax(1) == y).sum())
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
            pos["seen"] += B
            pos["iteration"] = it + 1
            if stop():
                save()
                log(f"stopped at epoch {epoch + 1}, step {it + 1}: {ckpt} written; resume "
                    "with the same command and --resume")
                return net, stats
        seen = pos["seen"]
        pos.update(epoch=epoch + 1, iteration=0, it_per_epoch=pos["iteration"], seen=0)
        stats.end_epoch()
        save_unaries(out / "unaries.json", stats.unaries(), space, epoch=epoch + 1,
                     method=cfg.method, config=asdict(cfg))
        rec = {"epoch": epoch + 1, "images": seen, "seconds": round(time.time() - t0, 2),
               **{(k if k.startswith("acc") else f"loss_{k}"): v / max(seen, 1)
                  for k, v in pos["sums"].items()},
               "temperature": T}
        pos["sums"] = _zero_sums()
        if latency is not None and cfg.budget is not None:
            found = search(Problem(latency, stats.unaries()), cfg.budget, "exact")
            rec.update(decoded=found["config"], predicted_latency_ms=found[
                "predicted_latency_ms"])
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        save()
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss max {rec['loss_max']:.3f}, min "
            f"{rec['loss_min']:.3f}; train top-1 widest {100 * rec['acc_max']:.1f} %, "
            f"narrowest {100 * rec['acc_min']:.1f} %; "
            f"{seen / max(rec['seconds'], 1e-9):.0f} images/s"
            + (f", OWS decode {rec['predicted_latency_ms']:.3f} ms" if "decoded" in rec else ""))
    return net, stats


def _zero_sums() -> dict:
    return {"max": 0.0, "min": 0.0, "sampled": 0.0, "acc_max": 0.0, "acc_min": 0.0}


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a temp file renamed over the old checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Tensors, dicts and numbers only: nothing is unpickled beyond that."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _signal_flag():
    """A flag raised by SIGTERM or Ctrl-C, checked between steps; and a function that
    puts the previous handlers back."""
    flag = {"stop": False}
    previous = {}

    def handler(signum, frame):
        flag["stop"] = True

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)

    def restore():
        for sig, h in previous.items():
            signal.signal(sig, h)
    return (lambda: flag["stop"]), restore


def _distill(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """In-place distillation: cross-entropy against the widest network's soft labels."""
    return -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
