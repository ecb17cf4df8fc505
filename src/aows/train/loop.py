"""Supernet training, the paper's OWS and AOWS: the sandwich step, the unary
statistics and the per-epoch record, on the shared training harness (``harness``:
device, AMP, DDP, checkpoints, the epoch loop, resuming, stop requests).

Every step (sandwich rule + in-place distillation): the widest configuration on the
labels; the narrowest on the widest one's soft predictions; G sampled configurations,
each on its own slice of the batch, also on the soft predictions; one optimiser step.
For every image of a sampled configuration, d = CE(c) - CE(widest) feeds the unary
statistics. Without labels (``cfg.objective`` "distill") every configuration learns
from the user's frozen model instead and d is the difference of distillation losses; with
the user's loss ("loss") it replaces the cross-entropy (``aows.train.objective``).
OWS samples uniformly; AOWS samples from p_T with the current unaries and the gamma of
the budget, T following the AOWS supplementary, section B after the
warm-up. The step's loss and accuracy sums stay on the device until the end of the epoch;
in one process the differences d are read back only when the statistics are needed (AOWS
sampling after its warm-up, the end of the epoch, a checkpoint), so OWS steps never wait
for the device.

Distributed (DDP, launched by ``torchrun``): every process runs the step on its own
batch (``batch_size`` per process; the learning rate scales with the global batch).
All processes draw the same W x G configurations from one shared generator and process
p trains configurations p*G .. p*G+G-1, so nothing about the sampler needs syncing.
Gradients are all-reduced once per step (``no_sync`` on all but the last backward) and
the loss differences d are all-gathered (with every process's stop flag), so every
process applies the same unary updates in the same order: the statistics are identical
on every rank, and a W-process run with batch b equals a one-process run with batch W*b
and W*G samples (up to BatchNorm batch statistics, which stay per process).

A checkpoint (``checkpoint.pt``, weights-only torch: model, optimiser, grad scaler,
unary statistics, RNG states, position) is written atomically by rank 0 after every
epoch and when ``should_stop`` turns true on any rank (SIGTERM or Ctrl-C by default) at
a step boundary; ``resume`` continues from it as if never stopped, given the same
``batches``.

On CUDA, AMP (bfloat16 where supported, else float16 with a gradient scaler) and
channels_last are on by default.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from aows.errors import AowsError
from aows.importance import order_channels, write_order
from aows.io import atomic_write_text
from aows.latency.model import LatencyModel
from aows.model_code import copy_model_code
from aows.nn.slimmable import SlimmableNetwork
from aows.nn.supernet import make_supernet
from aows.solve import Problem, save_unaries, search
from aows.space import SearchSpace
from aows.train.config import TrainConfig
from aows.train.harness import Harness
from aows.train.objective import (
    DistillMeter,
    Objective,
    detach,
    load_loss,
    rows,
    to_float,
)
from aows.train.runtime import (
    all_sum,
    collective_device,
    load_checkpoint,
    run_lock,
    same_settings,
    save_checkpoint,
)
from aows.train.sampler import sample_configs
from aows.train.schedule import PAPER_EPOCHS, PAPER_KNOTS, temperature
from aows.train.unaries import UnaryStats

logger = logging.getLogger(__name__)

PENDING_STEPS = 200  # steps of loss differences kept on the device before a read-back


def train_supernet(space: SearchSpace, batches: Callable[..., Iterable],
                   cfg: TrainConfig, out: str | Path, latency: LatencyModel | None = None,
                   resume: bool = False, should_stop: Callable[[], bool] | None = None,
                   val_batches: Callable[[int], Iterable] | None = None,
                   steps_per_epoch: int | None = None, keep_epochs: Iterable[int] = (),
                   loss_fn: Callable | None = None) -> tuple[SlimmableNetwork, UnaryStats]:
    """Train the slimmable supernet of ``space`` (OWS or AOWS) and its unary statistics.

    Rank 0 writes ``out``/unaries.json, ``out``/metrics.jsonl and ``out``/checkpoint.pt
    after every epoch and when stopped. Progress lines are logged (``logging``, INFO).

    Args:
        space: the search space (a chain or a width graph).
        batches: ``batches(epoch)`` yields this process's (images, labels) for one epoch,
            the same sequence every time it is called for that epoch; if it takes a
            keyword ``start``, a resumed epoch asks it for items ``start``.. only.
        cfg: the settings (``TrainConfig``); ``cfg.method`` "aows" needs ``latency`` and
            ``cfg.budget``.
        out: the run folder.
        latency: the latency model AOWS samples with (and decodes the budget with).
        resume: continue from ``out``/checkpoint.pt (same settings required).
        should_stop: polled every step (default: SIGTERM / Ctrl-C); when true, the state
            is saved and the call returns.
        val_batches: with it, the widest, narrowest and (given a budget) decoded
            configurations are evaluated after every epoch, BatchNorm recalibrated for
            each.
        steps_per_epoch: batches per epoch (counted from ``batches(0)`` if None).
            A model's space starting from its weights has its channels ordered by
            ``cfg.importance`` first (``aows.importance``; ``taylor`` reads the first
            batches of ``batches(0)``), the order written to ``out``/channel_order.json.
        keep_epochs: also keep the checkpoint of these epochs
            (``checkpoint_epoch<k>.pt``), e.g. the end of AOWS's warm-up, from which an
            AOWS run can branch (``branch_from_warmup``).
        loss_fn: with ``cfg.objective`` "loss": ``loss_fn(outputs, targets)``, one loss
            per image (``aows.train.objective``); default: the function ``cfg.loss``
            names.

    Returns:
        The supernet and its unary statistics (``stats.unaries()`` is what ``search``
        decodes).

    ``out`` is locked for the call (``runtime.run_lock``): another process training
    into it is an error naming its PID.
    """
    if steps_per_epoch is None and cfg.schedule != "constant":
        steps_per_epoch = sum(1 for _ in batches(0))  # the schedule needs the run's length
    with run_lock(out):
        run = SupernetRun(space=space, cfg=cfg, out=out, latency=latency, resume=resume,
                          val_batches=val_batches, steps_per_epoch=steps_per_epoch,
                          keep_epochs=keep_epochs, order_batches=lambda: batches(0),
                          loss_fn=loss_fn)
        run.fit(batches, should_stop)
        run.flush()
    return run.net, run.stats


def prepare_run(space: SearchSpace, cfg: TrainConfig, out: str | Path,
                latency: LatencyModel | None = None, resume: bool = False,
                val_batches: Callable[[int], Iterable] | None = None,
                steps_per_epoch: int | None = None, loss_fn: Callable | None = None
                ) -> SupernetRun:
    """The training state (network, optimiser, statistics, position), restored from the
    checkpoint with ``resume``; ``.step(x, y, T)`` runs one sandwich step, ``.fit(batches)``
    the epochs."""
    return SupernetRun(space=space, cfg=cfg, out=out, latency=latency, resume=resume,
                       val_batches=val_batches, steps_per_epoch=steps_per_epoch,
                       loss_fn=loss_fn)


class SupernetRun(Harness):
    """Supernet training on the harness: the sandwich step, unary statistics (also
    checkpointed, as ``stats``), the per-epoch decode, validation and unaries.json."""

    sum_keys = ("max", "min", "sampled", "acc_max", "acc_min", "acc_sampled")  # labels
    postfix = ("loss_max", "max")
    sync_buffers = False  # BN running statistics stay per process (recalibrated before
    # any evaluation): broadcasting them at every forward would only cost time
    stopped_message = ("stopped at epoch {epoch}, step {step}: {ckpt} written; run again "
                       "to resume (`aows train`: add --resume)")
    resume_hint = " (`aows train`: with --resume)"

    def __init__(self, *, space: SearchSpace, cfg: TrainConfig, out: str | Path,
                 latency: LatencyModel | None = None, resume: bool = False,
                 val_batches: Callable[[int], Iterable] | None = None,
                 steps_per_epoch: int | None = None, keep_epochs: Iterable[int] = (),
                 order_batches: Callable[[], Iterable] | None = None,
                 loss_fn: Callable | None = None):
        if cfg.method not in ("ows", "aows"):
            raise AowsError("--method must be 'ows' or 'aows'")
        if cfg.method == "aows" and (latency is None or cfg.budget is None):
            raise AowsError("--method aows needs a latency model and a budget: give "
                            "--latency latency.json --budget MS")
        if cfg.sampled < 1:
            raise AowsError("--sampled must be at least 1")
        if cfg.schedule not in ("cosine", "constant"):
            raise AowsError("schedule must be 'cosine' or 'constant'")
        if latency is not None:
            latency.check_space(space)
        if not space.searchable_choices:
            raise AowsError(f"'{space.name}' has no width to search: every width is held "
                            "(`aows space show` says why), so there is nothing to train")
        self.loss_fn = _loss_fn(cfg, loss_fn)
        _check_objective(space, cfg)
        if cfg.objective != "labels":  # no labels: the loss sums only
            self.sum_keys = ("max", "min", "sampled")
        self.space, self.latency, self.val_batches = space, latency, val_batches
        self.keep_epochs = tuple(int(k) for k in keep_epochs)
        self.schedule = cfg.schedule
        self.stats = UnaryStats([len(c) for c in space.searchable_choices], cfg.unary_mode,
                                cfg.unary_window)
        self.pending: list[tuple[np.ndarray, torch.Tensor]] = []  # (configs, d) not in stats
        self.T: float | None = None  # the temperature of the last step
        self.order_batches = order_batches
        self.resuming = resume and (Path(out) / self.checkpoint_name).exists()
        super().__init__(cfg, out, resume=resume, steps_per_epoch=steps_per_epoch)
        # a model from a file: the run folder holds its own copy (``aows.model_code``)
        self.model_code = copy_model_code(self.out, space) if self.rank == 0 else None
        self.objective = Objective(cfg.objective, self.teacher, self.loss_fn)

    # ------------------------------------------------------------- the harness's hooks
    def build_model(self) -> SlimmableNetwork:
        cfg = self.cfg
        self.teacher = None
        if cfg.objective == "distill":  # the user's model as loaded, frozen, on the device
            self.teacher = self.space.load_module().to(self.device)
            if cfg.channels_last or (cfg.channels_last is None and self.device.type == "cuda"):
                self.teacher = self.teacher.to(memory_format=torch.channels_last)
        if not hasattr(self.space, "plan") or cfg.scratch or cfg.importance == "none" \
                or self.resuming:  # a resumed run's weights come from its checkpoint
            return make_supernet(self.space, cfg.scratch)
        # a model's space: its channels ordered by importance once, before training, so
        # that every leading slice starts from the channels the model relies on most
        module = self.space.load_module()
        batches = self.order_batches() if self.order_batches is not None else None
        order = order_channels(module, self.space, cfg.importance, batches)
        if self.rank == 0:  # under DDP, rank 0's weights are broadcast: its order holds
            write_order(self.out / "channel_order.json", self.space, order, cfg.importance)
        return make_supernet(self.space, module=module)

    def build_optimizer(self, net) -> torch.optim.Optimizer:
        cfg = self.cfg
        return torch.optim.SGD(net.parameters(), lr=self.base_lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)

    def legacy_settings(self) -> dict:
        # a checkpoint of a version before `scratch` existed trained from the weights;
        # one before `data` was recorded is taken to be of this data; one before
        # `importance` kept the module's channel order
        return {"scratch": False, "data": self.cfg.data, "importance": "none",
                "objective": "labels", "loss": None}

    def extra_state(self) -> dict:
        self.flush()
        return {"stats": self.stats.state_dict(), "space": self._space_record()}

    def _space_record(self) -> dict:
        return {"name": self.space.name, "params": dict(self.space.params),
                "fingerprint": self.space.fingerprint()}

    def network_diff(self, state: dict) -> list[str]:
        old, new = state.get("space"), self._space_record()
        if old is None or old.get("fingerprint") == new["fingerprint"]:
            return []  # a checkpoint from before the space was recorded: its shapes tell
        diff = [f"space {k}: {old['params'].get(k)!r} -> {new['params'].get(k)!r}"
                for k in sorted(set(old["params"]) | set(new["params"]))
                if old["params"].get(k) != new["params"].get(k)]
        if old.get("name") != new["name"]:
            diff.insert(0, f"space: {old.get('name')!r} -> {new['name']!r}")
        return diff or ["space: another network (same settings, other layers)"]

    def load_extra_state(self, state: dict) -> None:
        self.stats.load_state_dict(state["stats"])

    def train_step(self, x, y, epoch: int, it: int) -> bool:
        n = self.pos["it_per_epoch"]
        progress = epoch + (it / n if n else 0.0)
        self.T = temperature(progress, self.cfg.epochs) if self.cfg.method == "aows" else None
        return self.step(x, y, self.T)

    def epoch_record(self, epoch: int, sums: dict, seen: float, seconds: float) -> dict:
        cfg = self.cfg
        self.flush()
        self.stats.end_epoch()
        rec = {"epoch": epoch + 1, "images": int(seen), "seconds": seconds,
               **{(k if k.startswith("acc") else f"loss_{k}"): v / max(seen, 1)
                  for k, v in sums.items()},
               "temperature": self.T}
        self.T = None
        decoded = None
        if self.latency is not None and cfg.budget is not None:
            problem = Problem(self.latency, self.stats.unaries())
            found = search(problem, cfg.budget, "exact")
            decoded = found["config"]
            rec.update(decoded=decoded, predicted_latency_ms=found["predicted_latency_ms"],
                       gamma=problem.budget_problem.lagrangian(cfg.budget).gamma)
        if self.val_batches is not None:
            rec.update(self.validate(epoch, decoded))
        if self.rank == 0:
            save_unaries(self.out / "unaries.json", self.stats.unaries(), self.space,
                         **({"model_code": self.model_code} if self.model_code else {}),
                         epoch=epoch + 1, method=cfg.method, config=asdict(cfg))
        return rec

    def epoch_done(self, epoch: int, rec: dict) -> None:
        if self.rank == 0 and epoch + 1 in self.keep_epochs:
            shutil.copyfile(self.ckpt, self.out / f"checkpoint_epoch{epoch + 1}.pt")
        val = "".join(f", val {k[9:]} {100 * v:.1f} %" for k, v in rec.items()
                      if k.startswith("val_top1"))
        val += "".join(f", val {k[4:].replace('_', ' ')} {v:.4f}" for k, v in rec.items()
                       if k.startswith(("val_distill", "val_loss")))
        top1 = (f"; train top-1 widest {100 * rec['acc_max']:.1f} %, narrowest "
                f"{100 * rec['acc_min']:.1f} %" if "acc_max" in rec else "")
        logger.info(
            f"epoch {epoch + 1}/{self.cfg.epochs}: loss max {rec['loss_max']:.3f}, min "
            f"{rec['loss_min']:.3f}{top1}{val}; "
            f"{rec['images'] / max(rec['seconds'], 1e-9):.0f} images/s"
            + (f"; OWS decode {rec['predicted_latency_ms']:.3f} ms"
               if rec.get("decoded") else ""))

    # --------------------------------------------------------------------- the step
    def step(self, x: torch.Tensor, y: torch.Tensor, T: float | None) -> bool:
        """One sandwich step; returns whether any process was asked to stop."""
        cfg, space, amp, obj = self.cfg, self.space, self.amp, self.objective
        B, G = x.shape[0], cfg.sampled
        if B > cfg.batch_size:
            raise AowsError(f"batch of {B} images but batch_size={cfg.batch_size}: the "
                            "learning rate is scaled by batch_size, set it to the batches'")
        if B < G:
            raise AowsError(f"batch of {B} images is smaller than --sampled {G}: every "
                            "sampled configuration needs at least one image")
        unaries = None
        if T is not None:
            self.flush()  # the sampler reads the statistics of every step so far
            unaries = self.stats.unaries()
        idx_all = sample_configs(self.rng, self.world * G, space, self.latency, unaries,
                                 cfg.budget, T, cfg.sampling)
        idx = idx_all[self.rank * G:(self.rank + 1) * G]
        self.opt.zero_grad(set_to_none=True)
        with amp.autocast():
            ctx = obj.context(x)  # the teacher's outputs (distill)

        def run(inp, config, loss_of, last=False):
            sync = contextlib.nullcontext() if (last or self.world == 1) else \
                self.model.no_sync()
            with sync:
                with amp.autocast():
                    out = to_float(self.model(inp, config))
                per = loss_of(out)  # one loss per image
                amp.backward(per.mean() * (inp.shape[0] / B))
            return detach(out), per.detach()

        out_max, per_max = run(x, space.widest(), lambda o: obj.widest(o, y, ctx))
        target = obj.target(out_max, ctx)
        scales = obj.scales(target)  # of the whole batch, for every slice of it
        out_min, per_min = run(x, space.narrowest(), lambda o: obj.narrow(o, target, scales))
        d = torch.empty(B, device=x.device)
        loss_s, acc_s = 0.0, 0  # becoming device tensors: no host sync in the step
        for k, part in enumerate(_slices(B, G)):  # contiguous slices of the batch
            target_k = rows(target, part)
            out_k, per_k = run(x[part], space.config_from_indices(idx[k]),
                               lambda o, t=target_k: obj.narrow(o, t, scales),
                               last=k == G - 1)
            # the score of a sampled configuration less the widest's, image by image
            d[part] = obj.score(out_k, y[part], per_k) - per_max[part]
            loss_s = loss_s + per_k.double().sum()
            if obj.accuracy:
                acc_s = acc_s + (out_k.argmax(1) == y[part]).sum()
        amp.step(self.opt)
        sums = {"max": per_max.double().sum(), "min": per_min.double().sum(),
                "sampled": loss_s}
        if obj.accuracy:
            sums.update(acc_max=(out_max.argmax(1) == y).sum(),
                        acc_min=(out_min.argmax(1) == y).sum(), acc_sampled=acc_s)
        self.add_sums(B, **sums)
        if self.world == 1:  # the statistics take d when they are next needed
            self.pending.append((idx_all, d))
            if len(self.pending) >= PENDING_STEPS:
                self.flush()
            return bool(self.should_stop())
        d_all, sizes, stop = self.gather(d, bool(self.should_stop()))
        for r, (dr, Br) in enumerate(zip(d_all, sizes)):
            self.stats.update(_rows(idx_all[r * G:(r + 1) * G], Br), dr[:Br])
        return stop

    def flush(self) -> None:
        """Feed the loss differences of the steps so far to the statistics (one read)."""
        if not self.pending:
            return
        ds = torch.cat([d for _, d in self.pending]).cpu().numpy()
        k = 0
        for idx, d in self.pending:
            n = d.numel()
            self.stats.update(_rows(idx, n), ds[k:k + n])
            k += n
        self.pending.clear()

    def gather(self, d: torch.Tensor, stop: bool):
        """Every process's loss differences (in rank order), batch sizes, and whether
        any process was asked to stop (under DDP)."""
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

    @torch.no_grad()
    def validate(self, epoch: int, decoded) -> dict:
        """The widest, narrowest and (given a budget) decoded configurations on the
        validation batches, each after BN recalibration on ``calib_batches`` training
        batches: top-1 (``val_top1_*``, labels), the distillation loss against the teacher
        (``val_distill_*``, lower is better) or the user's loss (``val_loss_*``)."""
        configs = {"widest": self.space.widest(), "narrowest": self.space.narrowest()}
        if decoded is not None:
            configs["decoded"] = decoded
        obj = self.objective
        key = {"labels": "val_top1", "distill": "val_distill", "loss": "val_loss"}[obj.kind]
        plains = {}
        for name, config in configs.items():
            calib = (self.to_device(x, y)[0] for x, y in islice(self.batches(epoch),
                                                                self.cfg.calib_batches))
            with self.amp.autocast():
                plain = self.net.export(config, calibration=calib).to(self.device).eval()
            plains[name] = (plain.to(memory_format=torch.channels_last)
                            if self.channels_last else plain)
        # one pass over the validation data: each batch (and the teacher's outputs on it)
        # serves every configuration
        totals, meters, n = dict.fromkeys(plains, 0), {k: DistillMeter() for k in plains}, 0
        with self.amp.autocast():
            for x, y in self.val_batches(epoch):
                x, y = self.to_device(x, y)
                ctx = obj.context(x) if obj.kind == "distill" else None
                for name, plain in plains.items():
                    out = to_float(plain(x))
                    if obj.kind == "labels":
                        totals[name] = totals[name] + (out.argmax(1) == y).sum()
                    elif obj.kind == "distill":  # of the whole set, whatever the batches
                        meters[name].update(out, ctx)
                    else:
                        totals[name] = totals[name] + obj.widest(out, y, None).double().sum()
                n += x.shape[0]
        res = {}
        for name in plains:
            if obj.kind == "distill":
                res[f"{key}_{name}"] = meters[name].value()[0]
                continue
            counts = all_sum({"total": float(totals[name]), "n": float(n)}, self.world)
            res[f"{key}_{name}"] = counts["total"] / max(counts["n"], 1)
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


def _slices(B: int, G: int) -> list[slice]:
    """The G contiguous parts of a batch of B (``np.array_split``'s)."""
    ends = np.cumsum([0] + [p.size for p in np.array_split(np.arange(B), G)])
    return [slice(int(a), int(b)) for a, b in zip(ends[:-1], ends[1:])]


def _rows(idx: np.ndarray, B: int) -> np.ndarray:
    """(B, layers): each image's configuration, G configurations over the batch's slices."""
    return np.concatenate([np.repeat(idx[k][None], s.stop - s.start, axis=0)
                           for k, s in enumerate(_slices(B, len(idx)))])



def _loss_fn(cfg: TrainConfig, loss_fn: Callable | None) -> Callable | None:
    """The user's per-image loss: the function given from Python, else ``cfg.loss``'s."""
    if cfg.objective != "loss":
        if loss_fn is not None or cfg.loss:
            raise AowsError(f"a loss function is given but the objective is "
                            f"'{cfg.objective}': use --objective loss with --loss")
        return None
    if loss_fn is None and not cfg.loss:
        raise AowsError("--objective loss needs --loss FILE.py:FUNCTION (from Python: "
                        "loss_fn=)")
    return loss_fn if loss_fn is not None else load_loss(cfg.loss)


def _check_objective(space: SearchSpace, cfg: TrainConfig) -> None:
    """Refuse what an objective cannot do, before any training."""
    if cfg.objective != "distill":
        return
    if not hasattr(space, "plan"):
        raise AowsError(f"--objective distill learns from your trained model, but "
                        f"'{space.name}' is a built-in space with no weights: give your "
                        "model (--model ... --weights ...), or train on labels")
    if cfg.scratch:
        raise AowsError("--objective distill with --scratch: the supernet would start "
                        "from nothing and learn from your model; leave --scratch out so "
                        "the widest configuration starts as your model")
    if cfg.importance == "taylor":
        raise AowsError("--importance taylor needs labels; with --objective distill "
                        "choose l1, bn or none")
    if not space.params.get("weights"):
        logger.warning("--objective distill without --weights: the teacher is your model as "
                       "its code builds it; give its trained weights unless the code loads "
                       "them")
