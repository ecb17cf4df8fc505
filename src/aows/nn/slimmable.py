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
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from aows.nn.bn import recalibrate_bn
from aows.nn.build import Dataflow, build_network
from aows.nn.ops import SlimBatchNorm2d, SlimConv2d, SlimLinear, get_op, leading_slice
from aows.space import SearchSpace

__all__ = ["SlimBatchNorm2d", "SlimConv2d", "SlimLinear", "SlimmableNetwork"]


class SlimmableNetwork(nn.Module):
    """The supernet of a search space; ``forward(x, config)`` runs one configuration."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        widest = space.full_widths(space.widest())
        self.layers = nn.ModuleList(
            get_op(spec.op).slim(spec, widest[space.src(i)], widest[space.dst(i)])
            for i, spec in enumerate(space.layers))
        self.dataflow = None if space.is_chain else Dataflow(space)

    def set_config(self, config: Sequence[int]) -> None:
        widths = self.space.full_widths(config)
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "set_width"):
                layer.set_width(widths[self.space.dst(i)])

    def forward(self, x: torch.Tensor, config: Sequence[int] | None = None) -> torch.Tensor:
        if config is not None:
            self.set_config(config)
        if self.dataflow is not None:
            return self.dataflow.run(self.layers, x)
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
        src = net.state_dict()
        plain.load_state_dict({k: leading_slice(src[_supernet_key(k)], t.shape)
                               for k, t in plain.state_dict().items()})
        return plain


def _supernet_key(plain_key: str) -> str:
    """The supernet's name of a plain network's tensor: layer i's modules are
    ``layers.i.body`` there (``layers.i`` for modules without a body, e.g. Add)."""
    i, rest = plain_key.split(".", 1)
    return f"layers.{i}.body.{rest}" if rest.split(".")[0].isdigit() else f"layers.{i}.{rest}"
