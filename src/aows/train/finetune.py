"""Fine-tuning a final (plain) network, from inherited weights or from scratch, and
evaluating it: the usual recipe on the shared training harness (``harness``).

SGD with momentum; learning rate linear warm-up then cosine to 0, per iteration, scaled
by the global batch / 256; label smoothing; optional mixup; no weight decay on
BatchNorm parameters and biases. DDP via torchrun, AMP and channels_last on CUDA, a
checkpoint (``finetune.pt``, weights-only) after every epoch and on SIGTERM / Ctrl-C,
exact resume. The step's loss and accuracy sums stay on the device until the end of the
epoch; in one process a step never waits for the device.

Without labels (a ``teacher``: the user's original model, frozen), the network learns
to match the teacher's outputs instead (``aows.train.objective.distill_loss``, any
output structure; mixup applies to both) and is evaluated by its distillation error
against it (``val_distill``, lower is better).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aows.errors import AowsError
from aows.train.config import FinetuneConfig
from aows.train.harness import Harness
from aows.train.objective import compare_outputs, distill_loss, to_float
from aows.train.runtime import Amp, all_sum, dist_info, run_lock

logger = logging.getLogger(__name__)


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
    top1, top5, n = 0, 0, 0  # becoming device tensors: read once at the end
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with (amp.autocast() if amp is not None else torch.autocast("cpu", enabled=False)):
            logits = net(x)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            what = (f"a {type(logits).__name__}" if not isinstance(logits, torch.Tensor)
                    else f"a tensor of shape {tuple(logits.shape)}")
            raise AowsError(f"the network's output is {what}, not class scores (batch, "
                            "classes): top-1 needs a classifier; compare it with your "
                            "original model instead (`aows evaluate FINAL --model ... "
                            "--weights ...`: the distillation error against it)")
        logits = logits.float()
        k = min(5, logits.shape[1])
        top = logits.topk(k, 1).indices
        top1 = top1 + (top[:, 0] == y).sum()
        top5 = top5 + (top == y[:, None]).any(1).sum()
        n += y.numel()
    counts = all_sum({"top1": float(top1), "top5": float(top5), "n": float(n)},
                     dist_info()[1])
    n = max(counts["n"], 1)
    return {"top1": counts["top1"] / n, "top5": counts["top5"] / n, "images": int(counts["n"])}


def finetune(net: nn.Module, batches: Callable[..., Iterable],
             val_batches: Callable[[int], Iterable] | None, cfg: FinetuneConfig,
             out: str | Path, steps_per_epoch: int, resume: bool = False,
             should_stop: Callable[[], bool] | None = None,
             teacher: nn.Module | None = None) -> dict:
    """Fine-tune a final network in place. Progress lines are logged (``logging``, INFO).

    Args:
        net: the plain network (``aows.final.load_final``).
        batches: ``batches(epoch)`` yields this process's (images, labels), the same
            sequence for the same epoch; if it takes a keyword ``start``, a resumed epoch
            asks it for items ``start``.. only.
        val_batches: the same for validation (None: no evaluation).
        cfg: the recipe (``FinetuneConfig``).
        out: folder; rank 0 writes ``finetune.pt`` (checkpoint) and ``metrics.jsonl``,
            holding its lock (``runtime.run_lock``) for the call.
        steps_per_epoch: batches per epoch (the learning-rate schedule needs it).
        resume: continue from ``out``/finetune.pt (same settings required).
        should_stop: polled between steps (default: SIGTERM / Ctrl-C).
        teacher: the user's original model: learn its outputs, no labels needed
            (distillation; the network may return any output structure).

    Returns:
        The last evaluation ({"top1", "top5", ...}; with a teacher {"distill", ...}) and
        "stopped" (whether a stop request ended the run early, after saving).
    """
    if steps_per_epoch < 1:
        raise AowsError("fine-tuning needs at least one batch per epoch: lower --batch-size")
    with run_lock(out):
        # the objective is a setting of the run: a resume with or without a teacher that
        # the checkpoint was not made with is refused, not mixed
        cfg = dataclasses.replace(cfg, objective="labels" if teacher is None else "distill")
        run = FinetuneRun(net=net, cfg=cfg, out=out, steps_per_epoch=steps_per_epoch,
                          resume=resume, val_batches=val_batches, teacher=teacher)
        result = run.result
        result["stopped"] = run.fit(batches, should_stop)
    history = run.pos["history"]
    if not result["stopped"] and history:
        for key in ("top1", "top5", "distill"):
            if result.get(key) is None and f"val_{key}" in history[-1]:
                result[key] = history[-1][f"val_{key}"]
    return result


class FinetuneRun(Harness):
    """Fine-tuning on the harness: label smoothing and mixup in the step, evaluation in
    the epoch's record (kept in the position's "history" too)."""

    checkpoint_name = "finetune.pt"
    bar_label = "fine-tune"
    sum_keys = ("loss", "correct")
    postfix = ("loss", "loss")
    resumed_message = "resumed fine-tuning from {ckpt}: epoch {epoch}, step {step}"
    stopped_message = ("fine-tuning stopped at epoch {epoch}, step {step}: {ckpt} written; "
                       "resume with --resume")
    resume_hint = " (`aows finetune`: with --resume)"

    def __init__(self, *, net: nn.Module, cfg: FinetuneConfig, out: str | Path,
                 steps_per_epoch: int, resume: bool = False,
                 val_batches: Callable[[int], Iterable] | None = None,
                 teacher: nn.Module | None = None):
        self.initial_net, self.val_batches = net, val_batches
        self.result: dict = ({"top1": None, "top5": None, "stopped": False} if teacher is None
                             else {"distill": None, "stopped": False})
        if teacher is not None:
            self.sum_keys = ("loss",)
        super().__init__(cfg, out, resume=resume, steps_per_epoch=steps_per_epoch)
        self.teacher = None
        if teacher is not None:
            self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.pos.setdefault("history", [])

    def build_model(self) -> nn.Module:
        return self.initial_net

    def legacy_settings(self) -> dict:
        return {"objective": "labels"}  # a checkpoint from before the setting existed

    def build_optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(param_groups(net, self.cfg.weight_decay), lr=self.base_lr,
                               momentum=self.cfg.momentum, nesterov=True)

    def train_step(self, x, y, epoch: int, it: int) -> None:
        cfg, amp = self.cfg, self.amp
        lam, perm = 1.0, None
        if cfg.mixup > 0:
            lam = float(self.rng.beta(cfg.mixup, cfg.mixup))
            perm = torch.from_numpy(self.rng.permutation(x.shape[0])).to(
                self.device, non_blocking=True)
            x = lam * x + (1 - lam) * x[perm]
        self.opt.zero_grad(set_to_none=True)
        if self.teacher is not None:  # no labels: the original model's outputs
            with amp.autocast():
                with torch.no_grad():
                    target = to_float(self.teacher(x))
                out = to_float(self.model(x))
            loss = distill_loss(out, target).mean()
            amp.backward(loss)
            amp.step(self.opt)
            self.add_sums(x.shape[0], loss=loss.detach().double() * x.shape[0])
            return None
        with amp.autocast():
            logits = self.model(x).float()
        loss = lam * F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if perm is not None:
            loss = loss + (1 - lam) * F.cross_entropy(
                logits, y[perm], label_smoothing=cfg.label_smoothing)
        amp.backward(loss)
        amp.step(self.opt)
        n = y.numel()
        self.add_sums(n, loss=loss.detach().double() * n,
                      correct=(logits.detach().argmax(1) == y).sum())
        return None  # the harness polls and agrees on stop requests

    def epoch_record(self, epoch: int, sums: dict, seen: float, seconds: float) -> dict:
        rec = {"epoch": epoch + 1, "seconds": seconds, "loss": sums["loss"] / max(seen, 1),
               "lr": self.opt.param_groups[0]["lr"]}
        if self.teacher is not None:
            if self.val_batches is not None:
                ev = compare_outputs(self.net, self.teacher, self.val_batches(epoch),
                                     self.device)
                rec["val_distill"] = self.result["distill"] = ev["distill"]
                self.net.train()
            self.pos["history"].append(rec)
            return rec
        rec["train_top1"] = sums["correct"] / max(seen, 1)
        if self.val_batches is not None:
            ev = evaluate(self.net, self.val_batches(epoch), self.device, self.amp,
                          self.channels_last)
            rec.update(val_top1=ev["top1"], val_top5=ev["top5"])
            self.result.update(top1=ev["top1"], top5=ev["top5"])
        self.pos["history"].append(rec)
        return rec

    def epoch_done(self, epoch: int, rec: dict) -> None:
        if self.teacher is not None:
            logger.info(f"fine-tune epoch {epoch + 1}/{self.cfg.epochs}: distillation loss "
                        f"{rec['loss']:.4f}" + (f", val {rec['val_distill']:.4f}"
                                                if "val_distill" in rec else ""))
            return
        logger.info(f"fine-tune epoch {epoch + 1}/{self.cfg.epochs}: loss {rec['loss']:.3f}, "
                    f"train top-1 {100 * rec['train_top1']:.1f} %"
                    + (f", val top-1 {100 * rec['val_top1']:.1f} %, top-5 "
                       f"{100 * rec['val_top5']:.1f} %" if "val_top1" in rec else ""))
