"""Supernet training, the whole loop in one place (the paper's OWS and AOWS).

Every step (sandwich rule + in-place distillation): the widest configuration on the
labels; the narrowest on the widest one's soft predictions; G sampled configurations,
each on its own slice of the batch, also on the soft predictions; one optimiser step.
For every image of a sampled configuration, d = CE(c) - CE(widest) feeds the unary
statistics. OWS samples uniformly; AOWS samples from p_T with the current unaries and
the gamma of the budget, T following seed section B after the warm-up.

Distributed (DDP, launched by ``torchrun``): every process runs the step on its own
batch (``batch_size`` per process; the learning rate scales with the global batch).
All processes draw the same W x G configurations from one shared generator and process
p trains configurations p*G .. p*G+G-1, so nothing about the sampler needs syncing.
Gradients are all-reduced once per step (``no_sync`` on all but the last backward) and
the loss differences d are all-gathered, so every process applies the same unary
updates in the same order: the statistics are identical on every rank, and a W-process
run with batch b equals a one-process run with batch W*b and W*G samples (up to
BatchNorm batch statistics, which stay per process).

A checkpoint (weights-only torch: model, optimiser, grad scaler, unary statistics, RNG
states, position) is written atomically by rank 0 after every epoch and when
``should_stop`` turns true on any rank (SIGTERM or Ctrl-C by default) at a step
boundary; ``resume`` continues from it as if never stopped, given the same ``batches``.

On CUDA, AMP (bfloat16 where supported, else float16 with a gradient scaler) and
channels_last are on by default.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aows.errors import AowsError
from aows.latency.model import LatencyModel, atomic_write_text
from aows.nn.slimmable import SlimmableNetwork, make_supernet
from aows.search import Problem, save_unaries, search
from aows.space import SearchSpace
from aows.train.runtime import (
    Amp,
    all_sum,
    collective_device,
    dist_info,
    load_checkpoint,
    lr_at,
    progress_bar,
    resolve_device,
    same_settings,
    save_checkpoint,
    settings_diff,
    signal_flag,
    tensorboard_log,
)
from aows.train.sampler import sample_configs
from aows.train.schedule import PAPER_EPOCHS, PAPER_KNOTS, temperature
from aows.train.unaries import UnaryStats


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64  # per process; the learning rate scales with batch x processes
    lr: float = 0.1  # for a global batch of 256
    schedule: str = "cosine"  # cosine (to 0 at the end) | constant
    warmup_epochs: float = 0.0  # linear warm-up of the learning rate
    momentum: float = 0.9
    weight_decay: float = 1e-5
    sampled: int = 2  # G: sampled configurations per step and process, each on a slice
    method: str = "ows"  # ows | aows
    budget: float | None = None  # ms/image, required by aows
    sampling: str = "joint"  # joint | marginal (the reference)
    unary_mode: str = "epoch"  # epoch (paper) | window
    unary_window: int = 100_000
    seed: int = 0
    device: str = "auto"  # auto (cuda:LOCAL_RANK when available, else cpu) | cpu | cuda[:k]
    amp: bool | None = None  # None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA
    calib_batches: int = 8  # BN recalibration batches before each validation
    progress: bool = True
    scratch: bool = False  # a model's space: re-initialise instead of its own weights
    data: str | None = None  # the data trained on (``data_id``); export checks its --data


def train_supernet(space: SearchSpace, batches: Callable[[int], Iterable],
                   cfg: TrainConfig, out: str | Path, latency: LatencyModel | None = None,
                   log: Callable[[str], None] = print, resume: bool = False,
                   should_stop: Callable[[], bool] | None = None,
                   val_batches: Callable[[int], Iterable] | None = None,
                   steps_per_epoch: int | None = None, keep_epochs: Iterable[int] = ()
                   ) -> tuple[SlimmableNetwork, UnaryStats]:
    """Train the slimmable supernet of ``space`` (OWS or AOWS) and its unary statistics.

    Rank 0 writes ``out``/unaries.json, ``out``/metrics.jsonl and ``out``/checkpoint.pt
    after every epoch and when stopped.

    Args:
        space: the search space (a chain or a width graph).
        batches: ``batches(epoch)`` yields this process's (images, labels) for one epoch,
            the same sequence every time it is called for that epoch.
        cfg: the settings (``TrainConfig``); ``cfg.method`` "aows" needs ``latency`` and
            ``cfg.budget``.
        out: the run folder.
        latency: the latency model AOWS samples with (and decodes the budget with).
        log: where progress lines go.
        resume: continue from ``out``/checkpoint.pt (same settings required).
        should_stop: polled every step (default: SIGTERM / Ctrl-C); when true, the state
            is saved and the call returns.
        val_batches: with it, the widest, narrowest and (given a budget) decoded
            configurations are evaluated after every epoch, BatchNorm recalibrated for
            each.
        steps_per_epoch: batches per epoch (counted from ``batches(0)`` if None).
        keep_epochs: also keep the checkpoint of these epochs
            (``checkpoint_epoch<k>.pt``), e.g. the end of AOWS's warm-up, from which an
            AOWS run can branch (``branch_from_warmup``).

    Returns:
        The supernet and its unary statistics (``stats.unaries()`` is what ``search``
        decodes).
    """
    if steps_per_epoch is None and cfg.schedule != "constant":
        steps_per_epoch = sum(1 for _ in batches(0))  # the schedule needs the run's length
    run = prepare_run(space, cfg, out, latency, log, resume, val_batches, steps_per_epoch)
    restore = None
    if should_stop is None:
        should_stop, restore = signal_flag()
    run.stop = should_stop
    run.keep_epochs = tuple(int(k) for k in keep_epochs)
    try:
        run.epochs(batches)
    finally:
        if restore is not None:
            restore()
    return run.net, run.stats


def prepare_run(space: SearchSpace, cfg: TrainConfig, out: str | Path,
                latency: LatencyModel | None = None, log: Callable[[str], None] = print,
                resume: bool = False, val_batches: Callable[[int], Iterable] | None = None,
                steps_per_epoch: int | None = None) -> _Run:
    """The training state (network, optimiser, statistics, position), restored from the
    checkpoint with ``resume``; ``.step(x, y, T)`` runs one sandwich step."""
    if cfg.method not in ("ows", "aows"):
        raise AowsError("--method must be 'ows' or 'aows'")
    if cfg.method == "aows" and (latency is None or cfg.budget is None):
        raise AowsError("--method aows needs a latency model and a budget: give --latency "
                        "latency.json --budget MS")
    if cfg.sampled < 1:
        raise AowsError("--sampled must be at least 1")
    if cfg.schedule not in ("cosine", "constant"):
        raise AowsError("schedule must be 'cosine' or 'constant'")
    if latency is not None:
        latency.check_space(space)
    rank, world = dist_info()
    device = resolve_device(cfg.device)
    out = Path(out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)  # the same stream on every process
    net = make_supernet(space, cfg.scratch).to(device)
    stats = UnaryStats([len(c) for c in space.searchable_choices], cfg.unary_mode,
                       cfg.unary_window)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr * cfg.batch_size * world / 256,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    amp = Amp(device, cfg.amp)
    pos = {"epoch": 0, "iteration": 0, "it_per_epoch": 0, "seen": 0, "sums": _zero_sums(),
           "world": world}
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        # a checkpoint of a version before `scratch` existed trained from the weights; one
        # before `data` was recorded is taken to be of this data
        diff = settings_diff({"scratch": False, "data": cfg.data, **state["config"]},
                             asdict(cfg))
        if state["position"].get("world", 1) != world:
            diff.append(f"processes: {state['position'].get('world', 1)} -> {world}")
        if diff:
            raise AowsError(f"{ckpt} was written with other settings ({'; '.join(diff)}); "
                            "resume with the same settings or use a new --out")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        amp.load_state_dict(state.get("scaler", {}))
        stats.load_state_dict(state["stats"])
        rng.bit_generator.state = state["np_rng"]
        torch.set_rng_state(state["torch_rng"])
        pos = state["position"]
        log(f"resumed from {ckpt}: epoch {pos['epoch'] + 1}, step {pos['iteration']}")
    use_cl = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if use_cl:
        net = net.to(memory_format=torch.channels_last)
    model = net
    if world > 1:
        # BN running statistics are per process (recalibrated before any evaluation);
        # broadcasting them at every forward would only cost time
        import inspect

        from torch.nn.parallel import DistributedDataParallel as DDP
        no_buffer_sync = ({"forward_sync_buffers": False}
                          if "forward_sync_buffers" in inspect.signature(DDP).parameters
                          else {"broadcast_buffers": False})  # before torch 2.13
        model = DDP(net, device_ids=[device.index] if device.type == "cuda" else None,
                    **no_buffer_sync)
    if rank != 0:
        log = _quiet
    return _Run(space, cfg, out, latency, log, _never, net, model, stats, opt, amp, rng, pos,
                ckpt, device, use_cl, rank, world, val_batches, steps_per_epoch)


def _never() -> bool:
    return False


@dataclass
class _Run:
    space: SearchSpace
    cfg: TrainConfig
    out: Path
    latency: LatencyModel | None
    log: Callable[[str], None]
    stop: Callable[[], bool]
    net: SlimmableNetwork
    model: torch.nn.Module  # net, or its DDP wrapper
    stats: UnaryStats
    opt: torch.optim.Optimizer
    amp: Amp
    rng: np.random.Generator
    pos: dict
    ckpt: Path
    device: torch.device
    channels_last: bool
    rank: int
    world: int
    val_batches: Callable[[int], Iterable] | None
    steps_per_epoch: int | None
    keep_epochs: tuple[int, ...] = ()

    def save(self) -> None:
        if self.rank != 0:
            return
        save_checkpoint(self.ckpt, {
            "model": self.net.state_dict(), "optimizer": self.opt.state_dict(),
            "scaler": self.amp.state_dict(), "stats": self.stats.state_dict(),
            "np_rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "position": self.pos, "config": asdict(self.cfg)})

    def to_device(self, x, y):
        nb = self.device.type == "cuda"
        x = x.to(self.device, non_blocking=nb)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=nb)

    def epochs(self, batches) -> None:
        cfg, pos = self.cfg, self.pos
        for epoch in range(pos["epoch"], cfg.epochs):
            self.net.train()
            t0 = time.time()
            total = self.steps_per_epoch or pos["it_per_epoch"] or None
            bar = progress_bar(cfg.progress and self.rank == 0, total, epoch, cfg.epochs)
            T = None
            for it, (x, y) in enumerate(batches(epoch)):
                if it < pos["iteration"]:
                    if bar is not None:
                        bar.update(1)
                    continue  # done before the interruption
                progress = epoch + (it / pos["it_per_epoch"] if pos["it_per_epoch"] else 0.0)
                T = temperature(progress, cfg.epochs) if cfg.method == "aows" else None
                self.set_lr(epoch, it)
                stop = self.step(*self.to_device(x, y), T)
                pos["iteration"] = it + 1
                if bar is not None:
                    s = pos["sums"]
                    bar.set_postfix(loss_max=f"{s['max'] / max(pos['seen'], 1):.3f}",
                                    refresh=False)
                    bar.update(1)
                if stop:
                    if bar is not None:
                        bar.close()
                    self.save()
                    self.log(f"stopped at epoch {epoch + 1}, step {it + 1}: {self.ckpt} "
                             "written; run again to resume (`aows train`: add --resume)")
                    return
            if bar is not None:
                bar.close()
            self.end_epoch(epoch, t0, T, batches)

    def set_lr(self, epoch: int, it: int) -> None:
        base = self.cfg.lr * self.cfg.batch_size * self.world / 256
        n = self.steps_per_epoch or self.pos["it_per_epoch"]
        if self.cfg.schedule == "cosine" and n:
            base = lr_at(epoch * n + it, self.cfg.epochs * n, self.cfg.warmup_epochs * n, base)
        for g in self.opt.param_groups:
            g["lr"] = base

    def step(self, x: torch.Tensor, y: torch.Tensor, T: float | None) -> bool:
        """One sandwich step; returns whether any process was asked to stop."""
        cfg, space, amp, sums = self.cfg, self.space, self.amp, self.pos["sums"]
        B, G = x.shape[0], cfg.sampled
        if B > cfg.batch_size:
            raise AowsError(f"batch of {B} images but batch_size={cfg.batch_size}: the "
                            "learning rate is scaled by batch_size, set it to the batches'")
        if B < G:
            raise AowsError(f"batch of {B} images is smaller than --sampled {G}: every "
                            "sampled configuration needs at least one image")
        idx_all = sample_configs(self.rng, self.world * G, space, self.latency,
                                 self.stats.unaries() if T is not None else None, cfg.budget,
                                 T, cfg.sampling)
        idx = idx_all[self.rank * G:(self.rank + 1) * G]
        parts = np.array_split(np.arange(B), G)
        self.opt.zero_grad(set_to_none=True)

        def run(inp, config, target, last=False):
            sync = contextlib.nullcontext() if (last or self.world == 1) else \
                self.model.no_sync()
            with sync:
                with amp.autocast():
                    logits = self.model(inp, config).float()
                loss = (F.cross_entropy(logits, target) if target.dim() == 1
                        else _distill(logits, target))
                amp.backward(loss * (inp.shape[0] / B))
            return logits.detach(), loss.detach()

        logits, loss_max = run(x, space.widest(), y)
        soft = logits.softmax(1)
        ce_max = F.cross_entropy(logits, y, reduction="none")
        out_min, loss_min = run(x, space.narrowest(), soft)
        d = torch.empty(B, device=x.device)
        acc_s = loss_s = 0.0
        for k, part in enumerate(parts):
            p = torch.as_tensor(part, device=x.device)
            out_k, loss_k = run(x[p], space.config_from_indices(idx[k]), soft[p],
                                last=k == G - 1)
            d[p] = F.cross_entropy(out_k, y[p], reduction="none") - ce_max[p]
            acc_s += float((out_k.argmax(1) == y[p]).sum())
            loss_s += float(loss_k) * part.size
        amp.step(self.opt)
        d_all, sizes, stop = self.gather(d, self.stop())
        for r, (dr, Br) in enumerate(zip(d_all, sizes)):
            rows = np.concatenate([np.repeat(idx_all[r * G + k][None], part.size, axis=0)
                                   for k, part in enumerate(np.array_split(np.arange(Br), G))])
            self.stats.update(rows, dr[:Br])
        sums["max"] += float(loss_max) * B
        sums["min"] += float(loss_min) * B
        sums["sampled"] += loss_s
        sums["acc_max"] += float((logits.argmax(1) == y).sum())
        sums["acc_min"] += float((out_min.argmax(1) == y).sum())
        sums["acc_sampled"] += acc_s
        self.pos["seen"] += B
        return stop

    def gather(self, d: torch.Tensor, stop: bool):
        """Every process's loss differences (in rank order), batch sizes, and whether
        any process was asked to stop."""
        if self.world == 1:
            return [d.cpu().numpy()], [d.numel()], stop
        import torch.distributed as dist
        dev = collective_device()
        meta = torch.tensor([d.numel(), int(stop)], dtype=torch.int64, device=dev)
        metas = [torch.empty_like(meta) for _ in range(self.world)]
        dist.all_gather(metas, meta)
        metas = [m.cpu() for m in metas]
        n = max(int(m[0]) for m in metas)
        padded = torch.zeros(n, dtype=torch.float32, device=dev)
        padded[:d.numel()] = d.to(dev)
        ds = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(ds, padded)
        return ([t.cpu().numpy() for t in ds], [int(m[0]) for m in metas],
                any(int(m[1]) for m in metas))

    def all_sum(self, values: dict) -> dict:
        return all_sum(values, self.world)

    def end_epoch(self, epoch: int, t0: float, T: float | None, batches) -> None:
        cfg, pos = self.cfg, self.pos
        sums = self.all_sum({**pos["sums"], "seen": pos["seen"]})
        seen = sums.pop("seen")
        pos.update(epoch=epoch + 1, iteration=0, it_per_epoch=pos["iteration"], seen=0)
        self.stats.end_epoch()
        rec = {"epoch": epoch + 1, "images": int(seen), "seconds": round(time.time() - t0, 2),
               **{(k if k.startswith("acc") else f"loss_{k}"): v / max(seen, 1)
                  for k, v in sums.items()},
               "temperature": T}
        pos["sums"] = _zero_sums()
        decoded = None
        if self.latency is not None and cfg.budget is not None:
            problem = Problem(self.latency, self.stats.unaries())
            found = search(problem, cfg.budget, "exact")
            decoded = found["config"]
            rec.update(decoded=decoded, predicted_latency_ms=found["predicted_latency_ms"],
                       gamma=problem.budget_problem.lagrangian(cfg.budget).gamma)
        if self.val_batches is not None:
            rec.update(self.validate(epoch, batches, decoded))
        if self.rank == 0:
            save_unaries(self.out / "unaries.json", self.stats.unaries(), self.space,
                         epoch=epoch + 1, method=cfg.method, config=asdict(cfg))
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            tensorboard_log(self.out, rec)
        self.save()
        if self.rank == 0 and epoch + 1 in self.keep_epochs:
            shutil.copyfile(self.ckpt, self.out / f"checkpoint_epoch{epoch + 1}.pt")
        val = "".join(f", val {k[9:]} {100 * v:.1f} %" for k, v in rec.items()
                      if k.startswith("val_top1"))
        self.log(f"epoch {epoch + 1}/{cfg.epochs}: loss max {rec['loss_max']:.3f}, min "
                 f"{rec['loss_min']:.3f}; train top-1 widest {100 * rec['acc_max']:.1f} %, "
                 f"narrowest {100 * rec['acc_min']:.1f} %{val}; "
                 f"{seen / max(rec['seconds'], 1e-9):.0f} images/s"
                 + (f"; OWS decode {rec['predicted_latency_ms']:.3f} ms" if decoded else ""))

    @torch.no_grad()
    def validate(self, epoch: int, batches, decoded) -> dict:
        """Top-1 of the widest, narrowest and decoded configurations on the validation
        batches, each after BN recalibration on ``calib_batches`` training batches."""
        configs = {"widest": self.space.widest(), "narrowest": self.space.narrowest()}
        if decoded is not None:
            configs["decoded"] = decoded
        res = {}
        for name, config in configs.items():
            calib = (self.to_device(x, y)[0] for x, y in _take(batches(epoch),
                                                                self.cfg.calib_batches))
            with self.amp.autocast():
                plain = self.net.export(config, calibration=calib).to(self.device).eval()
                if self.channels_last:
                    plain = plain.to(memory_format=torch.channels_last)
                counts = {"correct": 0.0, "n": 0.0}
                for x, y in self.val_batches(epoch):
                    x, y = self.to_device(x, y)
                    counts["correct"] += float((plain(x).argmax(1) == y).sum())
                    counts["n"] += y.numel()
            counts = self.all_sum(counts)
            res[f"val_top1_{name}"] = counts["correct"] / max(counts["n"], 1)
        return res


def warmup_epochs(cfg: TrainConfig) -> int:
    """Whole epochs of AOWS's uniform warm-up (the paper's 5 of 20, scaled)."""
    return int(np.floor(cfg.epochs * PAPER_KNOTS[0][0] / PAPER_EPOCHS + 1e-9))


def branch_from_warmup(ows_run: str | Path, cfg: TrainConfig, out: str | Path) -> int:
    """Start the AOWS run ``out`` from an OWS run's checkpoint at the end of AOWS's
    warm-up; returns the epochs reused (0 when it cannot branch).

    During the warm-up AOWS samples uniformly, so with the same settings and seed its
    first epochs are the OWS run's, draw for draw and step for step (tested bit-exact):
    recomputing them would only cost time (5 of the paper's 20 epochs)."""
    k = warmup_epochs(cfg)
    src = Path(ows_run) / f"checkpoint_epoch{k}.pt"
    out = Path(out)
    if k < 1 or cfg.method != "aows" or not src.exists() or (out / "checkpoint.pt").exists():
        return 0
    state = load_checkpoint(src)
    if not same_settings({**state["config"], "method": "aows"}, asdict(cfg)):
        return 0  # other settings: not the same computation
    state["config"] = asdict(cfg)
    out.mkdir(parents=True, exist_ok=True)
    lines = (Path(ows_run) / "metrics.jsonl").read_text().splitlines()[:k]
    atomic_write_text(out / "metrics.jsonl", "".join(line + "\n" for line in lines))
    save_checkpoint(out / "checkpoint.pt", state)
    return k


def _quiet(msg: str) -> None:
    pass


def _take(it: Iterable, n: int):
    for k, item in enumerate(it):
        if k >= n:
            return
        yield item


def _zero_sums() -> dict:
    return {"max": 0.0, "min": 0.0, "sampled": 0.0, "acc_max": 0.0, "acc_min": 0.0,
            "acc_sampled": 0.0}


def _distill(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """In-place distillation: cross-entropy against the widest network's soft labels."""
    return -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
