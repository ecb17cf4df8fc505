"""Training data: a callable ``batches(epoch)`` that yields (images, labels), the same
sequence every time for the same epoch (so an interrupted run resumes exactly), and
``batches(epoch, start=k)`` its items k.. only (a run resumed mid-epoch asks for the
rest without loading, decoding or augmenting the batches it already trained on).

- ``fake``: random images whose label is a simple function of them (for tests).
- ``digits``: scikit-learn's handwritten digits (1797 real 8x8 images that ship inside
  the package, so it works offline), upsampled to the resolution, 3 channels, 10 classes.
- a folder: an ImageFolder tree (the ImageNet layout), with the standard transforms;
  needs torchvision. Without labels (``labels=False``: label-free distillation) any
  folder of images will do: ``train/`` and ``val/`` if it has them, else every image
  under it, one in ten (by sorted path) held out for validation; the labels are -1.

Under torch.distributed each process gets its share (``rank`` of ``world``): ``batch``
images per process and step, so the global batch is ``batch * world``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, Subset

from aows.defaults import DATA_WORKERS
from aows.errors import AowsError

Batches = Callable[..., Iterator[tuple[torch.Tensor, torch.Tensor]]]  # (epoch, start=0)


@dataclass
class Dataset:
    train: Batches
    val: Batches
    classes: int
    train_size: int
    steps_per_epoch: int  # training steps per epoch (per process)
    labelled: bool = True  # False: every label is -1 (images alone)


def _tensor_batches(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int,
                    shuffle: bool, rank: int = 0, world: int = 1) -> Batches:
    """Global batches of ``batch * world`` images (the last partial one dropped when
    shuffling); this process takes its contiguous ``batch`` of each."""
    step = batch * world

    def batches(epoch: int, start: int = 0):
        order = (torch.randperm(len(y), generator=torch.Generator().manual_seed(
            seed * 100_003 + epoch)) if shuffle else torch.arange(len(y)))
        for k in range(start * step, len(y) - (step - 1 if shuffle else 0), step):
            sel = order[k:k + step][rank * batch:(rank + 1) * batch]
            if sel.numel():
                yield x[sel], y[sel]
    return batches


def _check_fill(images: int, batch: int, world: int, where: str = "") -> None:
    if images < batch * world:
        raise AowsError(f"{where}{images} training images cannot fill one batch of {batch} x "
                        f"{world} processes: lower --batch-size")


def _tensor_dataset(x, y, cut, classes, batch, seed, rank, world) -> Dataset:
    _check_fill(cut, batch, world)
    return Dataset(_tensor_batches(x[:cut], y[:cut], batch, seed, True, rank, world),
                   _tensor_batches(x[cut:], y[cut:], batch, seed, False, rank, world),
                   classes, cut, cut // (batch * world))


def fake_data(resolution: int, batch: int, classes: int = 4, n: int = 256,
              seed: int = 0, rank: int = 0, world: int = 1) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, resolution, resolution, generator=g)
    score = torch.stack([x[:, c % 3].mean((1, 2)) * (1 + c) for c in range(classes)], 1)
    y = score.argmax(1)
    return _tensor_dataset(x, y, n * 3 // 4, classes, batch, seed, rank, world)


def digits_data(resolution: int, batch: int, seed: int = 0, rank: int = 0,
                world: int = 1) -> Dataset:
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
    # 1500 training images, 297 validation images
    return _tensor_dataset(x, y, 1500, 10, batch, seed, rank, world)


def _names(classes: list[str]) -> str:
    return ", ".join(classes[:5]) + (f" ... ({len(classes)})" if len(classes) > 5 else "")


NO_LABELS_HINT = ("; images without labels (any folder) serve the label-free commands: "
                  "`aows train --objective distill` and `aows evaluate FINAL --model ... "
                  "--weights ...` (the distillation error against your model)")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _image_folder(datasets, root: Path, split: str, transform):
    """torchvision's ImageFolder of ``root/split``, its refusals (no class folder, a class
    folder without images, an unreadable folder) as one clear error."""
    try:
        return datasets.ImageFolder(root / split, transform)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as err:
        why = f"{err.strerror}: {err.filename}" if err.strerror else str(err)
        raise AowsError(f"--data {root}: {split}/ is not a usable ImageFolder ({why}); "
                        f"expected {root / split}/<class>/<images>, every class folder "
                        "holding at least one image (.jpg, .png, ...)" + NO_LABELS_HINT
                        ) from None


class _Images:
    """The images of a list of files, each with the label -1 (a map-style data set)."""

    def __init__(self, files: list[Path], transform):
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from PIL import Image
        with Image.open(self.files[i]) as img:
            return self.transform(img.convert("RGB")), -1


def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                  and p.is_file())


def _unlabelled(root: Path, train_tf, val_tf):
    """Any folder of images: its train/ and val/, else one image in ten held out."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        train_files, val_files = _image_files(root / "train"), _image_files(root / "val")
    else:
        files = _image_files(root)
        train_files = [f for k, f in enumerate(files) if k % 10 != 9]
        val_files = [f for k, f in enumerate(files) if k % 10 == 9]
    if not train_files or not val_files:
        raise AowsError(f"--data {root}: found {len(train_files)} training and "
                        f"{len(val_files)} validation images ({', '.join(IMAGE_SUFFIXES)});"
                        " give a folder with at least 2 images (train/ and val/, or any "
                        "layout: one in ten is held out)")
    return _Images(train_files, train_tf), _Images(val_files, val_tf)


def folder_data(root: str | Path, resolution: int, batch: int, seed: int = 0,
                workers: int = DATA_WORKERS, rank: int = 0, world: int = 1,
                labels: bool = True) -> Dataset:
    """ImageFolder tree: ``root/train/<class>/*`` and ``root/val/<class>/*``; without
    ``labels``, any folder of images (see the module's docstring)."""
    try:
        from torchvision import datasets, transforms
    except ImportError:
        raise AowsError("--data DIR needs torchvision (pip install torchvision matching "
                        "your torch)") from None
    root = Path(root)
    norm = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train_tf = transforms.Compose([
        transforms.RandomResizedCrop(resolution), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), norm])
    val_tf = transforms.Compose([
        transforms.Resize(int(resolution / 0.875)), transforms.CenterCrop(resolution),
        transforms.ToTensor(), norm])
    if not labels:
        train, val = _unlabelled(root, train_tf, val_tf)
        classes = 0
    else:
        for split in ("train", "val"):
            if not (root / split).is_dir():
                raise AowsError(f"--data {root}: expected {root / split}/<class>/<images> "
                                "(the ImageNet layout)" + NO_LABELS_HINT)
        train = _image_folder(datasets, root, "train", train_tf)
        val = _image_folder(datasets, root, "val", val_tf)
        if train.classes != val.classes:
            raise AowsError(f"--data {root}: train/ has the classes {_names(train.classes)} "
                            f"but val/ {_names(val.classes)}; give both the same class "
                            "folders")
        classes = len(train.classes)
    _check_fill(len(train), batch, world, f"--data {root}: ")
    pin = torch.cuda.is_available()
    workers = min(workers, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                  else os.cpu_count() or 1)

    def train_batches(epoch: int, start: int = 0):
        sampler = DistributedSampler(train, world, rank, shuffle=True, seed=seed,
                                     drop_last=True)
        sampler.set_epoch(epoch)
        # the epoch's order, from batch `start` on: the same images in the same order as
        # the whole epoch's from there (random augmentations are drawn anew)
        order = list(sampler)[start * batch:]
        return iter(DataLoader(train, batch_size=batch, sampler=order, num_workers=workers,
                               pin_memory=pin, drop_last=True))

    val_part = Subset(val, range(rank, len(val), world))  # every image once overall

    def val_batches(epoch: int):
        return iter(DataLoader(val_part, batch_size=batch, num_workers=workers,
                               pin_memory=pin))
    return Dataset(train_batches, val_batches, classes, len(train),
                   len(train) // world // batch, labelled=labels)


def get_data(name: str, resolution: int, batch: int, seed: int = 0, rank: int = 0,
             world: int = 1, workers: int = DATA_WORKERS, labels: bool = True) -> Dataset:
    """The data set ``name`` (fake, digits, a folder); ``labels=False``: its labels are
    not needed (digits and fake keep theirs; a folder may be any folder of images)."""
    if name == "fake":
        return fake_data(resolution, batch, seed=seed, rank=rank, world=world)
    if name == "digits":
        return digits_data(resolution, batch, seed, rank, world)
    if Path(name).is_dir():
        return folder_data(name, resolution, batch, seed, workers, rank, world, labels)
    raise AowsError(f"--data {name}: give a folder (ImageFolder layout), 'digits' or 'fake'")
