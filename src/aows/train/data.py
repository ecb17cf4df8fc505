"""Training data: a callable ``batches(epoch)`` that yields (images, labels), the same
sequence every time for the same epoch (so an interrupted run resumes exactly).

- ``fake``: random images whose label is a simple function of them (for tests).
- ``digits``: scikit-learn's handwritten digits (1797 real 8x8 images that ship inside
  the package, so it works offline), upsampled to the resolution, 3 channels, 10 classes.
- a folder: an ImageFolder tree (the ImageNet layout), with the standard transforms;
  needs torchvision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from aows.errors import AowsError

Batches = Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class Dataset:
    train: Batches
    val: Batches
    classes: int
    train_size: int


def _tensor_batches(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int,
                    shuffle: bool) -> Batches:
    def batches(epoch: int):
        order = (torch.randperm(len(y), generator=torch.Generator().manual_seed(
            seed * 100_003 + epoch)) if shuffle else torch.arange(len(y)))
        for k in range(0, len(y) - (batch - 1 if shuffle else 0), batch):
            sel = order[k:k + batch]
            yield x[sel], y[sel]
    return batches


def fake_data(resolution: int, batch: int, classes: int = 4, n: int = 256,
              seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, resolution, resolution, generator=g)
    score = torch.stack([x[:, c % 3].mean((1, 2)) * (1 + c) for c in range(classes)], 1)
    y = score.argmax(1)
    cut = n * 3 // 4
    return Dataset(_tensor_batches(x[:cut], y[:cut], batch, seed, True),
                   _tensor_batches(x[cut:], y[cut:], batch, seed, False), classes, cut)


def digits_data(resolution: int, batch: int, seed: int = 0) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise AowsError("--data digits needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    x = ((x - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(12345))
    x, y = x[perm], y[perm]
    cut = 1500  # 1500 training images, 297 validation images
    return Dataset(_tensor_batches(x[:cut], y[:cut], batch, seed, True),
                   _tensor_batches(x[cut:], y[cut:], batch, seed, False), 10, cut)


def folder_data(root: str | Path, resolution: int, batch: int, seed: int = 0,
                workers: int = 4) -> Dataset:
    """ImageFolder tree: ``root/train/<class>/*`` and ``root/val/<class>/*``."""
    try:
        from torchvision import datasets, transforms
    except ImportError:
        raise AowsError("--data DIR needs torchvision (pip install torchvision matching "
                        "your torch)") from None
    root = Path(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise AowsError(f"--data {root}: expected {root / split}/<class>/<images> "
                            "(the ImageNet layout)")
    norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train = datasets.ImageFolder(root / "train", transforms.Compose([
        transforms.RandomResizedCrop(resolution), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), norm]))
    val = datasets.ImageFolder(root / "val", transforms.Compose([
        transforms.Resize(int(resolution / 0.875)), transforms.CenterCrop(resolution),
        transforms.ToTensor(), norm]))
    pin = torch.cuda.is_available()

    def loader(ds, shuffle):
        def batches(epoch: int):
            g = torch.Generator().manual_seed(seed * 100_003 + epoch)
            return iter(torch.utils.data.DataLoader(
                ds, batch_size=batch, shuffle=shuffle, generator=g, num_workers=workers,
                pin_memory=pin, drop_last=shuffle, persistent_workers=False))
        return batches
    return Dataset(loader(train, True), loader(val, False), len(train.classes), len(train))


def get_data(name: str, resolution: int, batch: int, seed: int = 0) -> Dataset:
    if name == "fake":
        return fake_data(resolution, batch, seed=seed)
    if name == "digits":
        return digits_data(resolution, batch, seed)
    if Path(name).is_dir():
        return folder_data(name, resolution, batch, seed)
    raise AowsError(f"--data {name}: give a folder (ImageFolder layout), 'digits' or 'fake'")
