"""The training harness shared by supernet training (``loop``) and fine-tuning
(``finetune``): everything about a run except the step itself.

``Harness`` owns the device, mixed precision and channels_last, the DDP wrapper, the
optimiser's per-iteration learning rate, the checkpoint (save, restore, settings and
process-count checks), the epoch loop (progress bar, resuming mid-epoch, stop requests),
the running sums of an epoch and metrics.jsonl. A run subclasses it and supplies only
what differs:

- ``build_model()``: the network (called right after seeding torch with ``cfg.seed``);
- ``build_optimizer(net)``: its optimiser (the learning rate is set every iteration);
- ``train_step(x, y, epoch, it)``: one optimisation step on a batch already on the
  device. It adds its per-image sums with ``add_sums`` (device tensors, read back at the
  end of the epoch and now and then for the progress bar, never every step) and returns
  None, or whether to stop when the step already agreed on that across processes (the
  supernet's step carries the flag in the all-gather it does anyway);
- ``epoch_record(epoch, sums, seen, seconds)``: the epoch's metrics.jsonl record, given
  the sums and image count over all processes (validation and the like go here);
- ``epoch_done(epoch, rec)``: after the epoch's checkpoint is written (the log line);
- ``extra_state()`` / ``load_extra_state(state)``: more to checkpoint;
- ``legacy_settings()``: settings that older checkpoints lack, as they were then.

The data: ``batches(epoch)`` yields this process's (images, labels), the same sequence
every time it is called for that epoch. A callable that also takes a keyword ``start``
is asked for the rest of an interrupted epoch only (``batches(epoch, start=k)`` must
yield items k.. of ``batches(epoch)``); any other is iterated and its first k items
dropped.

The checkpoint (``out``/``checkpoint_name``, weights-only torch, written atomically by
rank 0 after every epoch and on a stop): model, optimizer, scaler, the extra state,
np_rng, torch_rng, position and config. The position is a dict: epoch, iteration (steps
done in it), it_per_epoch (the last whole epoch's), seen and sums (the epoch's running
sums so far, so a resumed epoch's record counts its whole epoch), world (processes),
plus what a run adds. A resume with other settings (``settings_diff``) or another
number of processes is refused; otherwise it continues as if never stopped.

metrics.jsonl holds one record per epoch the checkpoint has done: at the start, records
of later epochs (written before a checkpoint that then failed) are dropped, so an epoch
run again is recorded once. A write that fails mid-run (a full disk: ``io.WriteError``)
ends ``fit`` with one error saying that the folder is kept and how to go on: with the
last checkpoint (``resume``), or from the start when none was written.

Stop requests (``should_stop``, default SIGTERM / Ctrl-C) are polled at step
boundaries; the state is saved and ``fit`` returns. In one process the flag is polled
every step, with no collective. Under DDP every process must stop at the same step: a
step may agree on it itself, else the processes sum their flags every ``STOP_EVERY``
steps and at the last step of an epoch.

Progress lines go to ``logging.getLogger(__name__)`` at INFO (``aows.log.console``
shows them, from rank 0 only).
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from aows.errors import AowsError
from aows.io import WriteError, append_text, atomic_write_text
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

logger = logging.getLogger(__name__)

POSTFIX_EVERY = 20  # steps between progress-bar postfix updates (each reads a device sum)
STOP_EVERY = 10  # steps between the processes' agreement on a stop request under DDP


class Harness:
    """One training run: build with the settings, then ``fit(batches)``.

    ``cfg`` is a dataclass with at least epochs, batch_size, lr (for a global batch of
    256), warmup_epochs, seed, device, amp, channels_last and progress.
    """

    checkpoint_name = "checkpoint.pt"
    bar_label = "epoch"
    sum_keys: tuple[str, ...] = ()  # the running sums of an epoch, per image
    postfix: tuple[str, str] | None = None  # progress bar: (label, sum key) / images
    schedule = "cosine"  # cosine (warm-up, then to 0 at the end) | constant
    sync_buffers = True  # DDP broadcasts BatchNorm buffers at every forward
    resumed_message = "resumed from {ckpt}: epoch {epoch}, step {step}"
    resume_hint = " (with --resume where the command has it)"  # in a write error
    stopped_message = "stopped at epoch {epoch}, step {step}: {ckpt} written"

    def __init__(self, cfg: Any, out: str | Path, *, resume: bool = False,
                 steps_per_epoch: int | None = None):
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.rank, self.world = dist_info()
        self.device = resolve_device(cfg.device)
        self.out = Path(out)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt = self.out / self.checkpoint_name
        self.should_stop: Callable[[], bool] = _never
        self.batches: Callable[..., Iterable] | None = None  # the training data, in fit

        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)  # the same stream on every process
        self.net = self.build_model().to(self.device)
        self.channels_last = (cfg.channels_last if cfg.channels_last is not None
                              else self.device.type == "cuda")
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.base_lr = cfg.lr * cfg.batch_size * self.world / 256
        self.opt = self.build_optimizer(self.net)
        self.amp = Amp(self.device, cfg.amp)
        self.pos: dict = {"epoch": 0, "iteration": 0, "it_per_epoch": 0, "seen": 0,
                          "sums": {k: 0.0 for k in self.sum_keys}, "world": self.world}
        if resume and self.ckpt.exists():
            self.restore()
        if self.rank == 0:
            self._trim_metrics()
        self.sums = self._device_sums(self.pos["sums"])
        self.model: nn.Module = self.net  # or its DDP wrapper
        if self.world > 1:
            self.model = self._ddp(self.net)

    # ------------------------------------------------------------ what a run supplies
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def build_optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        raise NotImplementedError

    def train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, it: int
                   ) -> bool | None:
        raise NotImplementedError

    def epoch_record(self, epoch: int, sums: dict, seen: float, seconds: float) -> dict:
        raise NotImplementedError

    def epoch_done(self, epoch: int, rec: dict) -> None:
        pass

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def legacy_settings(self) -> dict:
        return {}

    def network_diff(self, state: dict) -> list[str]:
        """What differs between the checkpoint's network and the one this run builds
        ("key: there -> here"), for settings the config does not hold (the space)."""
        return []

    # ------------------------------------------------------------------- the loop
    def fit(self, batches: Callable[..., Iterable],
            should_stop: Callable[[], bool] | None = None) -> bool:
        """Train from the current position to ``cfg.epochs``.

        Args:
            batches: ``batches(epoch)`` yields this process's (images, labels), the same
                sequence for the same epoch; given a keyword ``start``, the rest of an
                interrupted epoch is asked of it (``batches(epoch, start=k)``).
            should_stop: polled at step boundaries (default: SIGTERM / Ctrl-C); when it
                turns true on any process, the state is saved and ``fit`` returns.

        Returns:
            Whether a stop request ended the run early (after saving).
        """
        restore = None
        if should_stop is None:
            should_stop, restore = signal_flag()
        self.should_stop, self.batches = should_stop, batches
        try:
            for epoch in range(self.pos["epoch"], self.cfg.epochs):
                if self._epoch(epoch, batches):
                    return True
            return False
        except WriteError as err:  # a full disk: say what the folder holds and what next
            raise self._write_failed(err) from None
        finally:
            if restore is not None:
                restore()

    def _epoch(self, epoch: int, batches) -> bool:
        """One epoch from the current position; returns whether it was stopped."""
        cfg, pos = self.cfg, self.pos
        self.net.train()
        t0 = time.time()
        start = pos["iteration"]
        total = self.steps_per_epoch or pos["it_per_epoch"] or None
        bar = progress_bar(cfg.progress and self.rank == 0, total, epoch, cfg.epochs,
                           self.bar_label)
        if bar is not None and start:
            bar.update(start)  # done before the interruption
        for it, (x, y) in enumerate(epoch_batches(batches, epoch, start), start):
            self.set_lr(epoch, it)
            stop = self.train_step(*self.to_device(x, y), epoch, it)
            pos["iteration"] = it + 1
            if stop is None:
                stop = self._agree_stop(it, last=it + 1 == total)
            if bar is not None:
                if self.postfix and ((it + 1) % POSTFIX_EVERY == 0 or it + 1 == total
                                     or stop):
                    label, key = self.postfix
                    bar.set_postfix({label: f"{float(self.sums[key]) / max(pos['seen'], 1):.3f}"},
                                    refresh=False)
                bar.update(1)
            if stop:
                if bar is not None:
                    bar.close()
                self.save()
                logger.info(self.stopped_message.format(epoch=epoch + 1, step=it + 1,
                                                        ckpt=self.ckpt))
                return True
        if bar is not None:
            bar.close()
        self._end_epoch(epoch, t0)
        return False

    def _end_epoch(self, epoch: int, t0: float) -> None:
        sums, seen = self.epoch_sums()
        seconds = round(time.time() - t0, 2)
        pos = self.pos
        pos.update(epoch=epoch + 1, iteration=0, it_per_epoch=pos["iteration"], seen=0)
        self.sums = self._device_sums({})
        rec = self.epoch_record(epoch, sums, seen, seconds)
        if self.rank == 0:
            append_text(self.out / "metrics.jsonl", json.dumps(rec) + "\n")
            tensorboard_log(self.out, rec)
        self.save()
        self.epoch_done(epoch, rec)

    def _agree_stop(self, it: int, last: bool) -> bool:
        if self.world == 1:
            return bool(self.should_stop())
        if (it + 1) % STOP_EVERY and not last:
            return False
        return all_sum({"stop": float(self.should_stop())}, self.world)["stop"] > 0

    def set_lr(self, epoch: int, it: int) -> None:
        lr = self.base_lr
        n = self.steps_per_epoch or self.pos["it_per_epoch"]
        if self.schedule == "cosine" and n:
            lr = lr_at(epoch * n + it, self.cfg.epochs * n, self.cfg.warmup_epochs * n, lr)
        for g in self.opt.param_groups:
            g["lr"] = lr

    def to_device(self, x: torch.Tensor, y: torch.Tensor):
        nb = self.device.type == "cuda"
        x = x.to(self.device, non_blocking=nb)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=nb)

    # ------------------------------------------------------------- running sums
    def add_sums(self, images: int, **sums: torch.Tensor) -> None:
        """Add a step's sums over its ``images`` (device tensors: no host sync)."""
        for k, v in sums.items():
            self.sums[k] += v
        self.pos["seen"] += images

    def epoch_sums(self) -> tuple[dict, float]:
        """The epoch's sums and image count so far, over all processes (one read)."""
        local = self._host_sums()
        total = all_sum({**local, "seen": self.pos["seen"]}, self.world)
        return {k: total[k] for k in self.sum_keys}, total["seen"]

    def _host_sums(self) -> dict:
        if not self.sum_keys:
            return {}
        vals = torch.stack([self.sums[k] for k in self.sum_keys]).tolist()
        return dict(zip(self.sum_keys, vals))

    def _device_sums(self, start: dict) -> dict:
        # float64 (Python's float): the same numbers as summing floats on the host
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        return {k: torch.tensor(float(start.get(k, 0.0)), dtype=dtype, device=self.device)
                for k in self.sum_keys}

    # -------------------------------------------------------------- checkpoints
    def _write_failed(self, err: WriteError) -> WriteError:
        """The error of a write that failed mid-run: what it was, that the folder is
        kept, and how to go on from what it holds."""
        if self.ckpt.exists():
            how = ("its last checkpoint is intact: run the same command again to continue "
                   f"from it{self.resume_hint}")
        else:
            how = "no checkpoint was written yet: run the same command again to start over"
        return WriteError(f"{err}. {self.out} is kept; {how}")

    def _trim_metrics(self) -> None:
        """metrics.jsonl keeps the records of the epochs the run starts from, no more: a
        record written before its epoch's checkpoint failed (a full disk, a kill) is
        dropped (and a torn line), so an epoch run again is recorded once."""
        path = self.out / "metrics.jsonl"
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:  # none yet (or unreadable: appending will say so)
            return
        keep = []
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict) or int(rec.get("epoch", 0)) <= self.pos["epoch"]:
                keep.append(line)
        if keep != lines:
            atomic_write_text(path, "".join(f"{line}\n" for line in keep))

    def save(self) -> None:
        if self.rank != 0:
            return
        self.pos["sums"] = self._host_sums()
        save_checkpoint(self.ckpt, {
            "model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
            "scaler": self.amp.state_dict(), **self.extra_state(),
            "np_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "position": self.pos, "config": asdict(self.cfg)})

    def restore(self) -> None:
        state = load_checkpoint(self.ckpt)
        diff = settings_diff({**self.legacy_settings(), **state["config"]}, asdict(self.cfg))
        was = state["position"].get("world", 1)
        if was != self.world:
            diff.append(f"processes: {was} -> {self.world}")
        diff += self.network_diff(state)
        if diff:
            raise AowsError(f"{self.ckpt} was written with other settings "
                            f"({'; '.join(diff)}); resume with the same settings or use a "
                            "new --out")
        try:
            self.net.load_state_dict(state["model"])
        except RuntimeError:  # a network of another shape (a checkpoint that lacks its space)
            raise AowsError(f"{self.ckpt} holds a network of another shape than these settings "
                            "build; resume with the space settings the run was started with "
                            "(--space, --resolution, --classes, --levels, --max-width, ...) or "
                            "use a new --out") from None
        self.opt.load_state_dict(state["optimizer"])
        self.amp.load_state_dict(state.get("scaler", {}))
        self.load_extra_state(state)
        self.rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["torch_rng"])
        # positions of older versions lack what they did not track
        self.pos = {"it_per_epoch": 0, "seen": 0, "sums": {}, "world": 1,
                    **state["position"]}
        logger.info(self.resumed_message.format(epoch=self.pos["epoch"] + 1,
                                                step=self.pos["iteration"], ckpt=self.ckpt))

    def _ddp(self, net: nn.Module) -> nn.Module:
        opts = {}
        if not self.sync_buffers:
            opts = ({"forward_sync_buffers": False}
                    if "forward_sync_buffers" in inspect.signature(DDP).parameters
                    else {"broadcast_buffers": False})  # before torch 2.13
        return DDP(net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                   **opts)


def epoch_batches(batches: Callable[..., Iterable], epoch: int, start: int = 0) -> Iterable:
    """Items ``start``.. of ``batches(epoch)``: asked of the data when it takes a
    ``start`` keyword, else drawn and dropped."""
    if start and takes_start(batches):
        return batches(epoch, start=start)
    return itertools.islice(batches(epoch), start, None)


def takes_start(fn: Callable) -> bool:
    """Whether ``fn`` accepts a keyword argument ``start``."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or (p.name == "start" and p.kind in (
        p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) for p in params)


def _never() -> bool:
    return False
