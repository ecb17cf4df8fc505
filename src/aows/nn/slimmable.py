"""Slimmable supernet: one network at the widest configuration whose layers run with
only their first c channels.

Weights are *sliced* (a narrow configuration costs its own FLOPs, not the full
width's), so one configuration is shared by every image of a forward pass.

BatchNorm scheme: shared BN (as AutoSlim). Each BN layer keeps one set of affine
parameters and one set of running statistics at full width; a configuration uses the
first c of each. During training the running statistics mix all sampled widths and
are only a rough guide, so before evaluating or exporting a configuration its
statistics are re-estimated on a few training batches at that configuration
(``recalibrate_bn``): the known-good scheme, and the one export relies on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aows.nn.build import build_network
from aows.space import LayerSpec, SearchSpace


class SlimConv2d(nn.Conv2d):
    """Conv2d whose input and output channels are the first c_in / c_out of its maximum.
    ``depthwise``: groups = channels (c_out = c_in)."""

    def __init__(self, max_in, max_out, kernel, stride, bias=False, depthwise=False):
        super().__init__(max_in, max_out, kernel, stride, kernel // 2,
                         groups=max_in if depthwise else 1, bias=bias)
        self.depthwise = depthwise
        self.out_channels_now = max_out

    def forward(self, x):
        cin = x.shape[1]
        cout = cin if self.depthwise else self.out_channels_now
        w = self.weight[:cout] if self.depthwise else self.weight[:cout, :cin]
        b = self.bias[:cout] if self.bias is not None else None
        return F.conv2d(x, w, b, self.stride, self.padding, 1, cin if self.depthwise else 1)


class SlimBatchNorm2d(nn.BatchNorm2d):
    """Shared BatchNorm over the first c channels (statistics and affine sliced)."""

    def forward(self, x):
        c = x.shape[1]
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative average (used by recalibration)
            momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c],
                            self.bias[:c], self.training, momentum, self.eps)


class SlimLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, self.weight[:, : x.shape[1]], self.bias)


class SlimLayer(nn.Module):
    """One layer of the chain; ``set_width`` sets its output channels for the next pass."""

    def __init__(self, *mods: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*mods)

    def forward(self, x):
        return self.body(x)

    def set_width(self, cout: int) -> None:
        for m in self.modules():
            if isinstance(m, SlimConv2d) and not m.depthwise:
                m.out_channels_now = cout


SLIM_BUILDERS: dict[str, Callable[[LayerSpec, int, int], SlimLayer]] = {}


def register_slim(op: str):
    def deco(fn):
        SLIM_BUILDERS[op] = fn
        return fn
    return deco


@register_slim("conv")
def _slim_conv(spec, cin, cout):
    return SlimLayer(SlimConv2d(cin, cout, spec.kernel, spec.stride, spec.bias),
                  SlimBatchNorm2d(cout), nn.ReLU(inplace=True))


@register_slim("dwsep")
def _slim_dwsep(spec, cin, cout):
    return SlimLayer(SlimConv2d(cin, cin, spec.kernel, spec.stride, spec.bias, depthwise=True),
                  SlimBatchNorm2d(cin), nn.ReLU(inplace=True),
                  SlimConv2d(cin, cout, 1, 1, spec.bias), SlimBatchNorm2d(cout),
                  nn.ReLU(inplace=True))


@register_slim("linear")
def _slim_linear(spec, cin, cout):
    return SlimLayer(nn.AdaptiveAvgPool2d(1), nn.Flatten(), SlimLinear(cin, cout, spec.bias))


class SlimmableNetwork(nn.Module):
    """The supernet of a search space; ``forward(x, config)`` runs one configuration."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        widest = space.full_widths(space.widest())
        self.layers = nn.ModuleList(
            SLIM_BUILDERS[spec.op](spec, widest[i], widest[i + 1])
            for i, spec in enumerate(space.layers))

    def set_config(self, config: Sequence[int]) -> None:
        widths = self.space.full_widths(config)
        for i, layer in enumerate(self.layers):
            layer.set_width(widths[i + 1])

    def forward(self, x: torch.Tensor, config: Sequence[int] | None = None) -> torch.Tensor:
        if config is not None:
            self.set_config(config)
        for layer in self.layers:
            x = layer(x)
        return x

    def export(self, config: Sequence[int],
               calibration: Iterable[torch.Tensor] | None = None) -> nn.Sequential:
        """A plain network of ``config`` with the supernet's sliced weights copied in;
        with ``calibration`` batches, BN statistics are first re-estimated at ``config``
        (on a copy: the supernet's shared statistics are left as they are)."""
        config = self.space.validate(config)
        net = self
        if calibration is not None:
            net = copy.deepcopy(self)
            recalibrate_bn(net, config, calibration)
        plain = build_network(self.space, config)
        src = dict(_sliced_state(net, config))
        plain.load_state_dict({k: src[k] for k in plain.state_dict()})
        return plain


def _sliced_state(net: SlimmableNetwork, config):
    """(plain-network key, tensor sliced to config) for every parameter and buffer."""
    widths = net.space.full_widths(config)
    for i, layer in enumerate(net.layers):
        cin, cout = widths[i], widths[i + 1]
        for name, t in layer.body.state_dict().items():
            mod_idx = int(name.split(".")[0])
            mod = layer.body[mod_idx]
            if t.dim() == 0:
                yield f"{i}.{name}", t
                continue
            if isinstance(mod, SlimConv2d) and mod.depthwise:
                yield f"{i}.{name}", t[:cin]
            elif isinstance(mod, SlimConv2d):
                yield f"{i}.{name}", t[:cout, :cin] if t.dim() == 4 else t[:cout]
            elif isinstance(mod, SlimLinear):
                yield f"{i}.{name}", t[:, :cin] if t.dim() == 2 else t
            elif isinstance(mod, SlimBatchNorm2d):
                prev = layer.body[mod_idx - 1]
                c = cin if isinstance(prev, SlimConv2d) and prev.depthwise else cout
                yield f"{i}.{name}", t[:c]
            else:
                yield f"{i}.{name}", t


@torch.no_grad()
def recalibrate_bn(net: SlimmableNetwork, config: Sequence[int],
                   batches: Iterable[torch.Tensor]) -> None:
    """Re-estimate BN running statistics at ``config`` (cumulative average over batches),
    in place: the statistics of every width are replaced."""
    was_training = net.training
    bns = [m for m in net.modules() if isinstance(m, SlimBatchNorm2d)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = None
        m.num_batches_tracked.zero_()
        m.running_mean.zero_()
        m.running_var.fill_(1.0)
    net.train()
    net.set_config(config)
    for x in batches:
        net(x)
    for m, (mom, nbt) in zip(bns, saved):
        m.momentum = mom
        m.num_batches_tracked.copy_(nbt)
    net.train(was_training)
