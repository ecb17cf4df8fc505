"""Dense-output models for benchmarks/distill.py, loaded as
``benchmarks/dense_models.py:unet`` and ``...:fpn``: a U-Net whose skips are additions
(output: a map of CLASSES channels at the input's resolution) and a three-level feature
pyramid (output: a dict of such maps at 1/2, 1/4 and 1/8 of the input). CLASSES: the ten
digits and the background, a segmenter's per-pixel scores."""

import torch.nn.functional as F
from torch import nn

CLASSES = 11


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


def unet():
    return UNet()


def fpn():
    return FPN()
