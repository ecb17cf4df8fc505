"""Fine-tuning a final (plain) network, from inherited weights or from scratch, and
evaluating it: the usual recipe in one readable loop.

SGD with momentum; learning rate linear warm-up then cosine to 0, per iteration, scaled
by the global batch / 256; label smoothing; optional mixup; no weight decay on
BatchNorm parameters and biases. DDP via torchrun, AMP and channels_last on CUDA, a
checkpoint (weights-only) after every epoch and on SIGTERM / Ctrl-C, exact resume.
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
from torch import nn

from aows.errors import AowsError
from aows.train.runtime import (
    Amp,
    all_sum,
    dist_info,
    load_checkpoint,
    lr_at,
    progress_bar,
    resolve_device,
    save_checkpoint,
    settings_diff,
    signal_flag,
    tensorboard_log,
)


@dataclass
class FinetuneConfig:
    epochs: int = 10
    batch_size: int = 64  # per process
    lr: float = 0.1  # for a global batch of 256
    warmup_epochs: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 4e-5  # not on BatchNorm parameters or biases
    label_smoothing: float = 0.1
    mixup: float = 0.0  # Beta(alpha, alpha) mixing; 0 turns it off
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None  # None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA
    progress: bool = True


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv / linear weights only (not BN parameters, not biases)."""
    decay, no_decay = [], []
    for m in net.modules():
        for name, p in m.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(m, (nn.Conv2d, nn.Linear))
            (decay if is_weight else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(net: nn.Module, batches: Iterable, device: torch.device | str = "cpu",
             amp: Amp | None = None, channels_last: bool = False) -> dict:
    """Top-1 and top-5 accuracy (top-k with k = min(5, classes)), summed across
    processes under torch.distributed."""
    device = torch.device(device)
    net.eval()
    counts = {"top1": 0.0, "top5": 0.0, "n": 0.0}
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (amp.autocast() if amp is not None else torch.autocast("cpu", enabled=False)):
            logits = net(x).float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, 1).indices
        counts["top1"] += float((top[:, 0] == y).sum())
        counts["top5"] += float((top == y[:, None]).any(1).sum())
        counts["n"] += y.numel()
    counts = all_sum(counts, dist_info()[1])
    n = max(counts["n"], 1)
    return {"top1": counts["top1"] / n, "top5": counts["top5"] / n, "images": int(counts["n"])}


def finetune(net: nn.Module, batches: Callable[[int], Iterable],
             val_batches: Callable[[int], Iterable] | None, cfg: FinetuneConfig,
             out: str | Path, steps_per_epoch: int, log: Callable[[str], None] = print,
             resume: bool = False, should_stop: Callable[[], bool] | None = None) -> dict:
    """Fine-tune a final network in place.

    Args:
        net: the plain network (``aows.final.load_final``).
        batches: ``batches(epoch)`` yields this process's (images, labels), the same
            sequence for the same epoch.
        val_batches: the same for validation (None: no evaluation).
        cfg: the recipe (``FinetuneConfig``).
        out: folder; rank 0 writes ``finetune.pt`` (checkpoint) and ``metrics.jsonl``.
        steps_per_epoch: batches per epoch (the learning-rate schedule needs it).
        log: where progress lines go.
        resume: continue from ``out``/finetune.pt (same settings required).
        should_stop: polled between steps (default: SIGTERM / Ctrl-C).

    Returns:
        The last evaluation ({"top1", "top5", ...}) and "stopped" (whether a stop request
        ended the run early, after saving).
    """
    if steps_per_epoch < 1:
        raise AowsError("fine-tuning needs at least one batch per epoch: lower --batch-size")
    rank, world = dist_info()
    device = resolve_device(cfg.device)
    out = Path(out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net.to(device)
    use_cl = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if use_cl:
        net.to(memory_format=torch.channels_last)
    base_lr = cfg.lr * cfg.batch_size * world / 256
    opt = torch.optim.SGD(param_groups(net, cfg.weight_decay), lr=base_lr,
                          momentum=cfg.momentum, nesterov=True)
    amp = Amp(device, cfg.amp)
    pos = {"epoch": 0, "iteration": 0, "world": world, "history": []}
    ckpt = out / "finetune.pt"
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        diff = settings_diff(state["config"], asdict(cfg))
        if state["position"]["world"] != world:
            diff.append(f"processes: {state['position']['world']} -> {world}")
        if diff:
            raise AowsError(f"{ckpt} was written with other settings ({'; '.join(diff)}); "
                            "resume with the same ones or use a new --out")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        amp.load_state_dict(state["scaler"])
        rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["torch_rng"])
        pos = state["position"]
        log(f"resumed fine-tuning from {ckpt}: epoch {pos['epoch'] + 1}, "
            f"step {pos['iteration']}")
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP
        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None)
    restore = None
    if should_stop is None:
        should_stop, restore = signal_flag()

    def save():
        if rank == 0:
            save_checkpoint(ckpt, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                   "scaler": amp.state_dict(), "np_rng": rng.bit_generator.state,
                                   "torch_rng": torch.get_rng_state(), "position": pos,
                                   "config": asdict(cfg)})

    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    result = {"top1": None, "top5": None, "stopped": False}
    try:
        for epoch in range(pos["epoch"], cfg.epochs):
            model.train()
            t0, seen, loss_sum, correct = time.time(), 0, 0.0, 0.0
            bar = progress_bar(cfg.progress and rank == 0, steps_per_epoch, epoch, cfg.epochs,
                               "fine-tune")
            for it, (x, y) in enumerate(batches(epoch)):
                if it < pos["iteration"]:
                    if bar is not None:
                        bar.update(1)
                    continue
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if use_cl:
                    x = x.contiguous(memory_format=torch.channels_last)
                for g in opt.param_groups:
                    g["lr"] = lr_at(epoch * steps_per_epoch + it, total, warmup, base_lr)
                lam, perm = 1.0, None
                if cfg.mixup > 0:
                    lam = float(rng.beta(cfg.mixup, cfg.mixup))
                    perm = torch.from_numpy(rng.permutation(x.shape[0])).to(device)
                    x = lam * x + (1 - lam) * x[perm]
                opt.zero_grad(set_to_none=True)
                with amp.autocast():
                    logits = model(x).float()
                loss = lam * F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                if perm is not None:
                    loss = loss + (1 - lam) * F.cross_entropy(
                        logits, y[perm], label_smoothing=cfg.label_smoothing)
                amp.backward(loss)
                amp.step(opt)
                loss_sum += float(loss.detach()) * y.numel()
                correct += float((logits.detach().argmax(1) == y).sum())
                seen += y.numel()
                pos["iteration"] = it + 1
                stop = all_sum({"stop": float(should_stop())}, world)["stop"] > 0
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_sum / seen:.3f}", refresh=False)
                    bar.update(1)
                if stop:
                    if bar is not None:
                        bar.close()
                    save()
                    log(f"fine-tuning stopped at epoch {epoch + 1}, step {it + 1}: {ckpt} "
                        "written; resume with --resume")
                    result["stopped"] = True
                    return result
            if bar is not None:
                bar.close()
            sums = all_sum({"loss": loss_sum, "correct": correct, "seen": seen}, world)
            rec = {"epoch": epoch + 1, "seconds": round(time.time() - t0, 2),
                   "loss": sums["loss"] / max(sums["seen"], 1),
                   "train_top1": sums["correct"] / max(sums["seen"], 1),
                   "lr": opt.param_groups[0]["lr"]}
            if val_batches is not None:
                ev = evaluate(net, val_batches(epoch), device, amp, use_cl)
                rec.update(val_top1=ev["top1"], val_top5=ev["top5"])
                result.update(top1=ev["top1"], top5=ev["top5"])
            pos.update(epoch=epoch + 1, iteration=0)
            pos["history"].append(rec)
            if rank == 0:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(rec) + "\n")
                tensorboard_log(out, rec)
            save()
            log(f"fine-tune epoch {epoch + 1}/{cfg.epochs}: loss {rec['loss']:.3f}, train "
                f"top-1 {100 * rec['train_top1']:.1f} %"
                + (f", val top-1 {100 * rec['val_top1']:.1f} %, top-5 "
                   f"{100 * rec['val_top5']:.1f} %" if "val_top1" in rec else ""))
        if result["top1"] is None and pos["history"]:
            last = pos["history"][-1]
            result.update(top1=last.get("val_top1"), top5=last.get("val_top5"))
        return result
    finally:
        if restore is not None:
            restore()
