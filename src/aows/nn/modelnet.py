"""A user's module as a slimmable supernet, and sliced back into a plain module.

``ModuleSupernet`` is the user's module with every conv, BatchNorm and linear of the
space's plan swapped for its slimmable twin (``aows.nn.ops``), sharing the module's own
weights: the widest configuration *is* the user's model. ``slice_module`` is the export:
the user's own module (its class, its forward) with physically smaller layers holding
the leading slices of the weights, the one slicing rule of every op.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from aows.nn.bn import recalibrate_bn
from aows.nn.ops import (
    SlimBatchNorm2d,
    SlimConv2d,
    SlimConvTranspose2d,
    SlimLinear,
    leading_slice,
)


def _device(m: nn.Module) -> torch.device:
    return next(m.parameters(), torch.zeros(0)).device


def _set(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where ``name`` is, and under every other name of the same module."""
    old = root.get_submodule(name)
    for alias, m in list(root.named_modules(remove_duplicate=False)):
        if m is old and alias:
            parent, _, leaf = alias.rpartition(".")
            setattr(root.get_submodule(parent) if parent else root, leaf, new)


_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var")


class SlicedNorm(nn.Module):
    """A BatchNorm subclass of the user's (e.g. BN + activation in one module), run by
    its own forward on the first c entries of its per-channel tensors (on a
    concatenation: the entries of ``in_index``)."""

    def __init__(self, inner: nn.BatchNorm2d):
        super().__init__()
        self.inner = inner
        self.in_index: torch.Tensor | None = None

    def forward(self, x):
        c, full, idx = x.shape[1], self.inner.num_features, self.in_index
        tensors = {n: getattr(self.inner, n)[:c] if idx is None else
                   getattr(self.inner, n)[idx] for n in _NORM_TENSORS}
        self.inner.num_features = c  # what its forward may read
        try:
            return functional_call(self.inner, tensors, (x,))
        finally:
            self.inner.num_features = full
            if idx is not None:  # statistics updated on copies: put them back
                with torch.no_grad():
                    for n in ("running_mean", "running_var"):
                        if getattr(self.inner, n) is not None:
                            getattr(self.inner, n)[idx] = tensors[n]


def _sliced_norm(m: nn.BatchNorm2d, c: int, index: list[int] | None) -> nn.BatchNorm2d:
    new = copy.deepcopy(m)
    for n in _NORM_TENSORS:
        t = getattr(m, n)
        t = (t[:c] if index is None else t[index]).detach().clone()
        setattr(new, n, nn.Parameter(t, requires_grad=getattr(m, n).requires_grad)
                if n in new._parameters else t)
    new.num_features = c
    return new


# The dimension of each tensor along a module's input channels (a concatenation's
# channels are selected there, ``SearchSpace.channel_index``).
_IN_DIM = {"conv": {"weight": 1}, "linear": {"weight": 1}, "deconv": {"weight": 0},
           "dw": {"weight": 0, "bias": 0}, "bn": {n: 0 for n in _NORM_TENSORS}}


def _plain(m: nn.Module, kind: str, cin: int, cout: int,
           index: list[int] | None = None) -> nn.Module:
    """A plain module of the given widths holding the leading slices of ``m``'s tensors
    (along its input channels, the channels ``index`` where given)."""
    if kind == "bnx":
        return _sliced_norm(getattr(m, "inner", m), cin, index)
    if kind in ("conv", "dw"):
        new = nn.Conv2d(cin, cout, m.kernel_size, m.stride, m.padding, m.dilation,
                        groups=cin if kind == "dw" else 1, bias=m.bias is not None)
    elif kind == "deconv":  # weight (in, out, kH, kW): the leading slice all the same
        new = nn.ConvTranspose2d(cin, cout, m.kernel_size, m.stride, m.padding,
                                 m.output_padding, bias=m.bias is not None,
                                 dilation=m.dilation)
    elif kind == "bn":
        new = nn.BatchNorm2d(cin, m.eps, m.momentum)
    else:
        new = nn.Linear(cin, cout, m.bias is not None)
    src = m.state_dict()
    if index is not None:
        for k, dim in _IN_DIM[kind].items():
            if src.get(k) is not None:
                src[k] = src[k].index_select(dim, torch.as_tensor(index, device=src[k].device))
    new.load_state_dict({k: leading_slice(src[k], t.shape).clone()
                         for k, t in new.state_dict().items()})
    new.train(m.training)
    ref = m.weight
    for name, p in new.named_parameters():
        p.requires_grad_(getattr(m, name).requires_grad)
    return new.to(device=ref.device, dtype=ref.dtype)


def slice_module(module: nn.Module, space, config: Sequence[int]) -> nn.Module:
    """A copy of ``module`` whose layers of the space's plan have the widths of
    ``config`` (the channels of a concatenation: ``SearchSpace.channel_index``); the
    module's class and forward are unchanged."""
    widths = space.full_widths(config)
    out = copy.deepcopy(module)
    done = set()
    for name, kind, a, b in space.plan:
        if name in done:
            continue
        done.add(name)
        m = out.get_submodule(name)
        _set(out, name, _plain(m, kind, widths[a], widths[b], space.channel_index(a, widths)))
    return out


class ModuleSupernet(nn.Module):
    """The supernet of a model's space; ``forward(x, config)`` runs one configuration.

    Args:
        space: a ``ModelSpace`` (``aows.extract``).
        scratch: re-initialise every layer instead of starting from the module's weights.
        module: the module to make it from (default: ``space.load_module()``); used, not
            copied.
    """

    def __init__(self, space, scratch: bool = False, module: nn.Module | None = None):
        super().__init__()
        self.space = space
        self.net = space.load_module() if module is None else module
        if scratch:
            for m in self.net.modules():
                if hasattr(m, "reset_parameters") and m is not self.net:
                    m.reset_parameters()
        self._outs: list[tuple[nn.Module, int]] = []
        self._ins: list[tuple[nn.Module, int]] = []  # modules reading a concatenation
        self._index: dict[tuple, torch.Tensor | None] = {}
        swapped = {}
        for name, kind, a, b in space.plan:
            if name not in swapped:
                m = self.net.get_submodule(name)
                if kind == "bnx":
                    swapped[name] = SlicedNorm(m)
                else:
                    cls = {"conv": SlimConv2d, "dw": SlimConv2d, "bn": SlimBatchNorm2d,
                           "linear": SlimLinear, "deconv": SlimConvTranspose2d}[kind]
                    swapped[name] = cls.from_module(m)
                _set(self.net, name, swapped[name])
                if kind in ("conv", "linear", "deconv"):
                    self._outs.append((swapped[name], b))
                if a in space.parts:
                    self._ins.append((swapped[name], a))
        self.net.train()

    def set_config(self, config: Sequence[int]) -> None:
        widths = self.space.full_widths(config)
        for m, b in self._outs:
            if isinstance(m, (SlimConv2d, SlimConvTranspose2d)):
                m.out_channels_now = widths[b]
            else:
                m.out_features_now = widths[b]
        for m, a in self._ins:  # every step: index tensors made once per part widths
            device = _device(m)
            key = (a, device, *(widths[p] for p in self.space.parts[a]))
            if key not in self._index:
                idx = self.space.channel_index(a, widths)
                full = len(idx) == self.space.choices[a][0]
                self._index[key] = None if full else torch.as_tensor(idx, device=device)
            m.in_index = self._index[key]

    def forward(self, x: torch.Tensor, config: Sequence[int] | None = None) -> torch.Tensor:
        if config is not None:
            self.set_config(config)
        return self.net(x)

    def export(self, config: Sequence[int],
               calibration: Iterable[torch.Tensor] | None = None) -> nn.Module:
        """The user's module at ``config`` with the supernet's sliced weights; with
        ``calibration`` batches, BN statistics are first re-estimated at ``config`` (on a
        copy)."""
        config = self.space.validate(config)
        net = self
        if calibration is not None:
            net = copy.deepcopy(self)
            recalibrate_bn(net, config, calibration)
        return slice_module(net.net, self.space, config)
