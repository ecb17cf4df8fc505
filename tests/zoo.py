"""Small user models for the any-model tests (loaded as tests/zoo.py:FUNCTION)."""

import torch
from torch import nn


class ResCat(nn.Module):
    """A residual add and a concatenation: the add ties the stem to the block's output;
    the head reads the concatenation of the two branches (each searched, read at its
    offset)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.conv1 = nn.Conv2d(16, 24, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.conv2 = nn.Conv2d(24, 16, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.left = nn.Conv2d(16, 16, 1)
        self.right = nn.Conv2d(16, 16, 3, 2, 1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.head = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32),
                                  nn.ReLU())
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)
        z = torch.cat([self.pool(self.left(y)), self.right(y)], dim=1)
        z = self.head(z)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))


def res_cat(num_classes: int = 10):
    return ResCat(num_classes)


class _CatAdd(nn.Module):
    """A concatenation added to a residual: its branches are held (a leading slice of
    the sum is not a slice of each branch at its offset)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 1, 1)
        self.a, self.b = nn.Conv2d(32, 16, 1), nn.Conv2d(32, 16, 3, 1, 1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.stem(x)
        y = torch.cat([self.a(x), self.b(x)], 1) + x
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def cat_add(num_classes: int = 10):
    return _CatAdd(num_classes)


def not_a_module():
    return 3


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.conv(x)
        return -self.conv(x)


def untraceable():
    return _Branchy()


def fixed_size():
    """Flattens an 8x8 map into a linear layer: runs only on 8x8 inputs."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 8 * 8, 10))


class _TwoHeads(nn.Module):
    """One global pool read by two convs (a gate-like head) and a residual gate."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, 1)
        self.a = nn.Conv2d(32, 16, 1)
        self.b = nn.Conv2d(32, 16, 1)
        self.up = nn.Conv2d(16, 32, 1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        p = x.mean((2, 3), keepdim=True)
        g = torch.sigmoid(self.up(self.a(p) + self.b(p)))
        x = x * g
        return self.fc(x.mean((2, 3)))


def two_heads(num_classes: int = 10):
    return _TwoHeads(num_classes)


class BNAct(nn.BatchNorm2d):
    """BatchNorm and an activation in one module (as timm's BatchNormAct2d)."""

    def forward(self, x):
        return torch.relu(super().forward(x))


def bn_act(num_classes: int = 10):
    return nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), BNAct(16),
                         nn.Conv2d(16, 32, 3, 2, 1, bias=False), BNAct(32),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))


# ---- odd but valid forwards (each once mis-sliced or crashed; see test_models.py)
class _Odd(nn.Module):
    def __init__(self, kind: str, num_classes: int = 10):
        super().__init__()
        self.kind = kind
        self.c1 = nn.Conv2d(3, 32, 3, 1, 1)
        self.c2 = nn.Conv2d(32, 32, 3, 1, 1)
        self.fc = nn.Linear(32 if kind != "chunk" else 16, num_classes)
        if kind == "alias":
            self.c2_again = self.c2
        if kind == "hook":
            self.c2.register_forward_hook(lambda m, i, o: o * 2)
        if kind == "weight_norm":
            self.c2 = nn.utils.parametrizations.weight_norm(nn.Conv2d(32, 32, 3, 1, 1))
        if kind == "aux":
            self.aux = nn.Linear(32, num_classes)

    def forward(self, x, scale: float = 1.0):
        y = torch.relu(self.c1(x))
        if self.kind == "chunk":
            a, b = y.chunk(2, 1)
            return self.fc((a * torch.sigmoid(b)).mean((2, 3)))
        f = torch.relu((self.c2_again if self.kind == "alias" else self.c2)(y)) * scale
        if self.kind == "pool_size":
            return self.fc(nn.functional.avg_pool2d(f, f.size()[3]).flatten(1))
        out = self.fc(f.mean((2, 3)))
        if self.kind == "dict":
            return {"logits": out, "features": [f]}
        if self.kind == "aux" and self.training:
            return out, self.aux(y.mean((2, 3)))
        return out


def odd(kind: str = "dict"):
    return _Odd(kind)


class _ResSE(nn.Module):
    """Two residual stages with squeeze-and-excitation (a small trained-model stand-in):
    the adds tie each stage's widths, the SE gates multiply them."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU())
        self.b1 = nn.ModuleList([nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                 nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w)])
        self.se1 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(w, w // 4, 1), nn.ReLU(),
                                 nn.Conv2d(w // 4, w, 1), nn.Sigmoid())
        self.down = nn.Sequential(nn.Conv2d(w, 2 * w, 1, 2, bias=False), nn.BatchNorm2d(2 * w))
        self.b2 = nn.ModuleList([nn.Conv2d(w, 2 * w, 3, 2, 1, bias=False),
                                 nn.BatchNorm2d(2 * w),
                                 nn.Conv2d(2 * w, 2 * w, 3, 1, 1, bias=False),
                                 nn.BatchNorm2d(2 * w)])
        self.se2 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(2 * w, w // 2, 1),
                                 nn.ReLU(), nn.Conv2d(w // 2, 2 * w, 1), nn.Sigmoid())
        self.fc = nn.Linear(2 * w, num_classes)

    @staticmethod
    def _block(x, convs, se):
        y = torch.relu(convs[1](convs[0](x)))
        y = convs[3](convs[2](y))
        return y * se(y)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self._block(x, self.b1, self.se1))
        x = torch.relu(self.down(x) + self._block(x, self.b2, self.se2))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def res_se(num_classes: int = 10):
    return _ResSE(num_classes)


def _cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class _CatUNet(nn.Module):
    """A U-Net whose skips are concatenations (the upsampled decoder, then the encoder's
    features), upsampled by interpolation or by a transposed conv."""

    def __init__(self, up: str = "interpolate", num_classes: int = 5):
        super().__init__()
        self.up = up
        self.enc1, self.enc2, self.mid = _cbr(3, 16), _cbr(16, 32, 2), _cbr(32, 48, 2)
        if up == "deconv":
            self.up2 = nn.ConvTranspose2d(48, 32, 2, 2)
            self.up1 = nn.ConvTranspose2d(32, 16, 2, 2)
        self.dec2 = _cbr(48 + 32 if up != "deconv" else 64, 32)
        self.dec1 = _cbr(32 + 16 if up != "deconv" else 32, 16)
        self.head = nn.Conv2d(16, num_classes, 1)

    def _up(self, x, k):
        if self.up == "deconv":
            return (self.up2, self.up1)[k](x)
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        m = self.mid(e2)
        d2 = self.dec2(torch.cat([self._up(m, 0), e2], dim=1))
        d1 = self.dec1(torch.cat([self._up(d2, 1), e1], 1))
        return self.head(d1)


def cat_unet(up: str = "interpolate"):
    return _CatUNet(up)


class _Cat3(nn.Module):
    """Three branches concatenated, then a BatchNorm on the concatenation (pre-activation,
    as in DenseNet), a depthwise conv on it, a concatenation of a concatenation, and a
    classifier reading a concatenation through a global pool."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = _cbr(3, 16)
        self.a, self.b, self.c = nn.Conv2d(16, 16, 1), nn.Conv2d(16, 24, 3, 1, 1), \
            nn.Conv2d(16, 16, 3, 1, 1)
        self.bn = nn.BatchNorm2d(56)
        self.dw = nn.Conv2d(56, 56, 3, 1, 1, groups=56)
        self.mix = nn.Conv2d(56, 32, 1)
        self.fc = nn.Linear(56 + 32, num_classes)

    def forward(self, x):
        s = self.stem(x)
        z = torch.cat([self.a(s), self.b(s), self.c(s)], 1)
        z = self.dw(torch.relu(self.bn(z)))
        y = torch.cat([z, self.mix(z)], 1)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def cat3(num_classes: int = 10):
    return _Cat3(num_classes)


class _DenseBlock(nn.Module):
    """A DenseNet block: every layer reads the concatenation of the stem's and every
    earlier layer's features, and so does the transition after it (a width graph too
    wide to eliminate exactly)."""

    def __init__(self, num_classes: int = 10, layers: int = 4, growth: int = 24):
        super().__init__()
        self.stem = _cbr(3, 16)
        self.layers = nn.ModuleList(_cbr(16 + growth * j, growth) for j in range(layers))
        self.trans = nn.Conv2d(16 + growth * layers, 32, 1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        feats = [self.stem(x)]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        y = self.trans(torch.cat(feats, 1))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def dense_block(num_classes: int = 10):
    return _DenseBlock(num_classes)
