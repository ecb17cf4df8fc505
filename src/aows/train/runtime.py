"""What every training loop here needs: processes, devices, mixed precision,
checkpoints, stop signals, progress. Shared by supernet training and fine-tuning."""

from __future__ import annotations

import math
import os
import signal
import threading
from pathlib import Path

import torch

from aows.errors import AowsError


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    import torch.distributed as dist
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
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"{what} {epoch + 1}/{epochs}", unit="step", leave=False,
                dynamic_ncols=True)


def tensorboard_log(out: Path, rec: dict) -> None:
    """Epoch scalars to TensorBoard when it is installed (nothing otherwise)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed
        return
    with SummaryWriter(str(out / "tensorboard")) as w:
        for k, v in rec.items():
            if isinstance(v, (int, float)) and k != "epoch" and v is not None:
                w.add_scalar(k, v, rec["epoch"])


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a temp file renamed over the old checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Tensors, dicts and numbers only: nothing is unpickled beyond that."""
    return torch.load(path, map_location="cpu", weights_only=True)


def signal_flag():
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




def collective_device() -> torch.device:
    """Where tensors for collectives must live: NCCL only moves CUDA tensors."""
    import torch.distributed as dist
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: dict, world: int) -> dict:
    """Sum numbers across processes (identity with one process)."""
    if world == 1:
        return dict(values)
    import torch.distributed as dist
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
    import torch.distributed as dist
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
    drop = lambda d: {k: v for k, v in d.items() if k not in RESUMABLE_CHANGES}  # noqa: E731
    return drop(a) == drop(b)
