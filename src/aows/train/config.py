"""The settings of supernet training and of fine-tuning (free of torch, so that the
command line builds its options from them without importing it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aows.defaults import DEFAULT_IMPORTANCE, IMPORTANCE_CRITERIA, OBJECTIVES
from aows.settings import NONNEGATIVE, POSITIVE, setting


@dataclass
class TrainConfig:
    epochs: int = setting(20, "training epochs", check=POSITIVE)
    batch_size: int = setting(64, "images per step and process (the learning rate scales "
                              "with batch x processes)", check=POSITIVE)
    lr: float = setting(0.1, "learning rate for a global batch of 256 (scaled)",
                        check=NONNEGATIVE)
    schedule: str = setting("cosine", "learning rate: cosine (to 0 at the end) or constant",
                            choices=["cosine", "constant"])
    warmup_epochs: float = setting(0.0, "linear warm-up of the learning rate",
                                   check=NONNEGATIVE)
    momentum: float = setting(0.9, "SGD momentum", check=NONNEGATIVE)
    weight_decay: float = setting(1e-5, "SGD weight decay", check=NONNEGATIVE)
    sampled: int = setting(2, "G: sampled configurations per step and process, each on "
                           "its own slice of the batch", check=POSITIVE)
    method: str = setting("ows", "ows (uniform sampling) or aows (adaptive, toward the "
                          "budget)", choices=["ows", "aows"])
    budget: float | None = setting(None, "ms/image, needed by aows", check=POSITIVE)
    sampling: str = setting("joint", "joint, or marginal (the reference code's)",
                            choices=["joint", "marginal"])
    unary_mode: str = setting("epoch", "unary statistics per epoch (the paper's) or over "
                              "a sliding window", choices=["epoch", "window"])
    unary_window: int = setting(100_000, "images in the window (unary_mode window)",
                                check=POSITIVE)
    seed: int = setting(0, "seed of weights, data order and sampling", check=NONNEGATIVE)
    device: str = setting("auto", "auto (cuda:LOCAL_RANK when available, else cpu), cpu, "
                          "cuda[:k]")
    amp: bool | None = setting(None, "mixed precision (default: on with CUDA)")
    channels_last: bool | None = setting(None, "channels_last memory format (default: on "
                                         "with CUDA)")
    calib_batches: int = setting(8, "BatchNorm recalibration batches before each "
                                 "validation and export", check=POSITIVE)
    progress: bool = setting(True, "progress bar")
    scratch: bool = setting(False, "a model's space: re-initialise instead of starting "
                            "from its weights")
    importance: str = setting(DEFAULT_IMPORTANCE, "a model's space: order each width's "
                              "channels by this importance before training, so narrow "
                              "configurations start from the channels the model relies on "
                              "(none: the module's order)", choices=list(IMPORTANCE_CRITERIA))
    data: str | None = setting(None, "the data trained on (data_id); export checks its "
                               "--data against it")
    objective: str = setting("labels", "what the supernet learns from: labels "
                             "(classification), distill (your model's outputs, no labels "
                             "needed: any output, detectors and segmenters included) or "
                             "loss (your --loss)", choices=list(OBJECTIVES))
    loss: str | None = setting(None, "FILE.py:FUNCTION: your task loss, loss(outputs, "
                               "targets) -> one loss per image (implies --objective loss)")


@dataclass
class FinetuneConfig:
    epochs: int = setting(10, "fine-tuning epochs", check=POSITIVE)
    batch_size: int = setting(64, "images per step and process", check=POSITIVE)
    lr: float = setting(0.1, "learning rate for a global batch of 256 (scaled)",
                        check=NONNEGATIVE)
    warmup_epochs: float = setting(1.0, "linear warm-up of the learning rate",
                                   check=NONNEGATIVE)
    momentum: float = setting(0.9, "SGD (Nesterov) momentum", check=NONNEGATIVE)
    weight_decay: float = setting(4e-5, "weight decay (not on BatchNorm parameters or "
                                  "biases)", check=NONNEGATIVE)
    label_smoothing: float = setting(0.1, "label smoothing", check=NONNEGATIVE)
    mixup: float = setting(0.0, "mixup Beta(a, a); 0 turns it off", check=NONNEGATIVE)
    seed: int = setting(0, "seed of the data order and mixup", check=NONNEGATIVE)
    device: str = setting("auto", "auto, cpu, cuda[:k]")
    amp: bool | None = setting(None, "mixed precision (default: on with CUDA)")
    channels_last: bool | None = setting(None, "channels_last memory format (default: on "
                                         "with CUDA)")
    progress: bool = setting(True, "progress bar")
    objective: str = setting("labels", "labels, or distill: learn the original model's "
                             "outputs (set by fine-tuning with a teacher)",
                             choices=["labels", "distill"])


def data_id(name: str) -> str:
    """What identifies a data set across commands: a folder's absolute path, else the
    name (digits, fake)."""
    p = Path(name)
    return str(p.resolve()) if p.exists() else name
