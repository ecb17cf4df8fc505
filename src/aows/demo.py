"""The dense-output models of ``aows quickstart --dense`` and benchmarks/distill.py, and
the user's model they stand for: a digit segmenter trained on the embedded digits.

``unet()``: a U-Net whose skips are additions, a map of ``CLASSES`` per-pixel scores
out at the input's resolution; ``cat_unet()``: the same with concatenated skips (each
branch searched at its offset); ``fpn()``: a three-level feature pyramid, a dict of such
maps at 1/2, 1/4 and 1/8 of the input. The task (``segmentation_target``): every pixel
with ink is labelled with its image's digit, the others "background" (class 10). Load
them as models with ``aows.demo.MODEL_FILE`` (``path/to/demo.py:unet``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aows.defaults import DEMO_MODEL_FILE
from aows.io import atomic_write_bytes
from aows.outputs import output_tensors
from aows.train.data import get_data

__all__ = ["CLASSES", "MODEL_FILE", "cat_unet", "fpn", "ink_accuracy", "segmentation_target",
           "train_segmenter", "unet"]

CLASSES = 11  # ten digits and the background
MODEL_FILE = DEMO_MODEL_FILE


def _cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1, self.enc2 = _cbr(3, 32), _cbr(32, 64, 2)
        self.mid = nn.Sequential(_cbr(64, 128, 2), _cbr(128, 128))
        self.up2, self.dec2 = nn.Conv2d(128, 64, 1), _cbr(64, 64)
        self.up1, self.dec1 = nn.Conv2d(64, 32, 1), _cbr(32, 32)
        self.head = nn.Conv2d(32, CLASSES, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        m = self.mid(e2)
        d2 = self.dec2(e2 + F.interpolate(self.up2(m), scale_factor=2, mode="bilinear",
                                          align_corners=False))
        d1 = self.dec1(e1 + F.interpolate(self.up1(d2), scale_factor=2, mode="nearest"))
        return self.head(d1)


class CatUNet(UNet):
    """``UNet`` with its skips concatenated (the upsampled decoder, then the encoder)."""

    def __init__(self):
        super().__init__()
        self.dec2, self.dec1 = _cbr(128 + 64, 64), _cbr(64 + 32, 32)
        del self.up2, self.up1

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        m = self.mid(e2)
        d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2, mode="bilinear",
                                                align_corners=False), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2, mode="nearest"), e1], 1))
        return self.head(d1)


class FPN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = _cbr(3, 32, 2), _cbr(32, 64, 2), _cbr(64, 128, 2)
        self.lat1, self.lat2, self.lat3 = (nn.Conv2d(c, 64, 1) for c in (32, 64, 128))
        self.smooth = nn.ModuleList(_cbr(64, 64) for _ in range(3))
        self.out = nn.ModuleList(nn.Conv2d(64, CLASSES, 1) for _ in range(3))

    def forward(self, x):
        c1 = self.c1(x)
        c2 = self.c2(c1)
        c3 = self.c3(c2)
        p3 = self.lat3(c3)
        p2 = self.lat2(c2) + F.interpolate(p3, scale_factor=2, mode="nearest")
        p1 = self.lat1(c1) + F.interpolate(p2, scale_factor=2, mode="nearest")
        return {f"p{k + 1}": head(sm(p)) for k, (p, sm, head) in
                enumerate(zip((p1, p2, p3), self.smooth, self.out))}


def unet() -> UNet:
    return UNet()


def cat_unet() -> CatUNet:
    return CatUNet()


def fpn() -> FPN:
    return FPN()


def segmentation_target(x: torch.Tensor, y: torch.Tensor, size) -> torch.Tensor:
    """Per-pixel labels at ``size``: the image's digit ``y`` where it has ink (a value
    above the middle grey after normalisation), else 10."""
    ink = F.adaptive_max_pool2d(x[:, :1], size)[:, 0] > 0
    return torch.where(ink, y[:, None, None].expand_as(ink),
                       torch.full_like(ink, 10, dtype=y.dtype))


@torch.no_grad()
def ink_accuracy(net: nn.Module, batches) -> float:
    """The share of ink pixels given their digit, on the first (finest) output."""
    net.eval()
    right, ink = 0, 0
    for x, y in batches:
        out = output_tensors(net(x))[0]
        t = segmentation_target(x, y, out.shape[-2:])
        mask = t < 10
        right += int((out.argmax(1)[mask] == t[mask]).sum())
        ink += int(mask.sum())
    return right / max(ink, 1)


def train_segmenter(module: nn.Module, batches, epochs: int, seed: int = 0,
                    lr: float = 2e-3) -> nn.Module:
    """Train ``module`` in place to segment the digits (Adam, per-pixel cross-entropy on
    every output at its resolution): the user's trained model of the dense quickstart.
    ``batches(epoch)`` yields (images, digit labels). Leaves torch's global RNG as it
    found it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = torch.optim.Adam(module.parameters(), lr)
        module.train()
        for epoch in range(epochs):
            for x, y in batches(epoch):
                outs = output_tensors(module(x))
                loss = sum(F.cross_entropy(o, segmentation_target(x, y, o.shape[-2:]))
                           for o in outs)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return module.eval()


def trained_unet(path: str | Path, resolution: int = 32, epochs: int = 6,
                 seed: int = 0) -> Path:
    """The user's model of ``aows quickstart --dense``: ``cat_unet()`` (a U-Net whose skips
    are concatenated, as most are) trained on the digits to segment them, its tensors-only
    weights at ``path`` (trained once, then reused).

    Returns:
        ``path``.
    """
    path = Path(path)
    if path.exists():
        return path
    data = get_data("digits", resolution, 64, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = cat_unet()
    train_segmenter(module, data.train, epochs, seed)
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    atomic_write_bytes(path, write=lambda f: torch.save(state, f))
    logging.getLogger(__name__).info(
        f"your model: a U-Net (concatenated skips) trained {epochs} epochs to segment the "
        f"digits, {100 * ink_accuracy(module, data.val(0)):.1f} % of ink pixels right -> "
        f"{path}")
    return path
