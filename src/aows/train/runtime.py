"""What every training loop here needs: processes, devices, mixed precision,
checkpoints, stop signals, progress. Shared by supernet training and fine-tuning."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from aows.errors import AowsError
from aows.io import WriteError, atomic_write_bytes, check_writable, load_tensors
from aows.lock import hold_lock

logger = logging.getLogger(__name__)


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AowsError(f"--device {name}: CUDA is not available here; use --device cpu")
    return dev


class Amp:
    """Autocast + gradient scaling on CUDA; a no-op elsewhere unless asked."""

    def __init__(self, device: torch.device, enabled: bool | None):
        self.enabled = device.type == "cuda" if enabled is None else bool(enabled)
        self.device_type = device.type
        if device.type == "cuda":
            self.dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            self.dtype = torch.bfloat16
        scale = self.enabled and self.dtype == torch.float16
        if hasattr(torch.amp, "GradScaler"):
            self.scaler = torch.amp.GradScaler("cuda", enabled=scale)
        else:  # torch < 2.3
            self.scaler = torch.cuda.amp.GradScaler(enabled=scale)

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, opt) -> None:
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler.is_enabled() else {}

    def load_state_dict(self, state: dict) -> None:
        if state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)


def progress_bar(enabled: bool, total: int | None, epoch: int, epochs: int,
                 what: str = "epoch"):
    if not enabled:
        return None
    return tqdm(total=total, desc=f"{what} {epoch + 1}/{epochs}", unit="step", leave=False,
                dynamic_ncols=True)


def tensorboard_log(out: Path, rec: dict) -> None:
    """Epoch scalars to TensorBoard when it is installed (nothing otherwise); an OS error
    is a ``WriteError``."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed
        return
    try:
        with SummaryWriter(str(out / "tensorboard")) as w:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k != "epoch" and v is not None:
                    w.add_scalar(k, v, rec["epoch"])
    except OSError as err:
        raise WriteError(f"could not write {out / 'tensorboard'} ({err.strerror}): free "
                         "space or choose another folder") from None


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic and durable: a temp file, fsynced, renamed over the old checkpoint (removed
    if the write fails, e.g. on a full disk)."""
    atomic_write_bytes(path, write=lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict:
    """Tensors, dicts and numbers only: nothing is unpickled beyond that. A truncated,
    corrupt or foreign file is one clear error."""
    state = load_tensors(path, "checkpoint")
    if not isinstance(state, dict) or "position" not in state:
        raise AowsError(f"{path} is not an aows checkpoint (no training position in it); "
                        "give the run folder that wrote it, or remove it to start over")
    return state


class StopFlag:
    """Raised by SIGTERM or Ctrl-C; ``signum`` says which. Calling it reads it."""

    def __init__(self):
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None


def signal_flag() -> tuple[StopFlag, Callable[[], None]]:
    """A flag raised by SIGTERM or Ctrl-C, checked between steps; and a function that
    puts the previous handlers back."""
    flag = StopFlag()
    previous = {}

    def handler(signum, frame):
        flag.signum = signum

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)

    def restore():
        for sig, h in previous.items():
            signal.signal(sig, h)
    return flag, restore


def check_run_folder(out: str | Path, resume: bool, marker: str, produced: Sequence[str],
                     command: str) -> None:
    """Refuse to start a run over another one's files, or to resume nothing: ``marker``
    is the checkpoint a resume needs, ``produced`` the files a run writes.

    A folder with the files of a run but no checkpoint (the run failed or was killed
    before its first checkpoint was written: a full disk) holds nothing to continue, so
    it is a run to start again: a plain rerun and ``resume`` both start it from the
    beginning (the harness trims its metrics.jsonl to the checkpoint's epochs). Only a
    folder without any of the run's files is "nothing to resume"."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AowsError(f"--out {out} is a file; give a folder for the run")
    check_writable(out, "--out")  # before long work, not after it
    found = [f for f in (marker, *produced) if (out / f).exists()]
    if resume and not found:
        raise AowsError(f"nothing to resume in {out}: it has no {marker}; drop --resume "
                        "to start a new run there")
    if found and not (out / marker).exists():
        logger.info(f"{out} has no {marker} (its run stopped before the first one was "
                    "written): starting that run again from the beginning")
    elif not resume and found:
        raise AowsError(f"{out} already holds a {command} run ({', '.join(found)}); add "
                        "--resume to continue it, or give another --out (nothing was "
                        "overwritten)")


def run_lock(out: str | Path):
    """The lock of run folder ``out`` (``aows.lock.hold_lock``), taken by rank 0, which
    writes it; a no-op on the other processes of a distributed run."""
    if dist_info()[0] != 0:
        return contextlib.nullcontext()
    return hold_lock(out, "run folder", folder=True)


def collective_device() -> torch.device:
    """Where tensors for collectives must live: NCCL only moves CUDA tensors."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: dict, world: int) -> dict:
    """Sum numbers across processes (identity with one process)."""
    if world == 1:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                     device=collective_device())
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def init_distributed(device: str) -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes in the environment (NCCL on
    CUDA, gloo on CPU); (0, 1) when not launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    cuda = torch.cuda.is_available() and device != "cpu"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def lr_at(step: float, total: float, warmup: float, base: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``base`` to 0."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) /
                                                     max(total - warmup, 1))))


# settings that may change between a run and its resumption (they change no result)
RESUMABLE_CHANGES = ("device", "progress")


def same_settings(a: dict, b: dict) -> bool:
    """Whether two runs' settings describe the same computation."""
    return not settings_diff(a, b)


def settings_diff(a: dict, b: dict) -> list[str]:
    """The settings (other than those a resume may change) that differ, as "key: a -> b"."""
    keys = sorted((set(a) | set(b)) - set(RESUMABLE_CHANGES))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]
