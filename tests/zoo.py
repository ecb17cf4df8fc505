"""Small user models for the any-model tests (loaded as tests/zoo.py:FUNCTION)."""

import torch
from torch import nn


class ResCat(nn.Module):
    """A residual add and a concatenation: the add ties the stem to the block's output,
    the concatenation holds its two branches and what reads them."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.conv1 = nn.Conv2d(16, 24, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.conv2 = nn.Conv2d(24, 16, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.left = nn.Conv2d(16, 8, 1)
        self.right = nn.Conv2d(16, 8, 3, 2, 1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.head = nn.Sequential(nn.Conv2d(16, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32),
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
