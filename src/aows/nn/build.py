"""Build a plain network (one module per layer of the space) and run a space's dataflow."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from aows.nn.ops import get_op
from aows.space import LayerSpec, SearchSpace


def build_layer(spec: LayerSpec, cin: int, cout: int) -> nn.Module:
    return get_op(spec.op).plain(spec, cin, cout)


class Dataflow:
    """The order in which a graph space's layers read each other's outputs: per layer,
    the names it reads and the outputs no later layer needs (freed after it runs)."""

    def __init__(self, space: SearchSpace):
        names = [layer.name for layer in space.layers]
        reads = []
        for i, layer in enumerate(space.layers):
            reads.append(layer.inputs or ((names[i - 1],) if i else ("image",)))
        last_use = {}
        for i, r in enumerate(reads):
            for n in r:
                last_use[n] = i
        self.names, self.reads = names, reads
        self.free = [[n for n in r if last_use[n] == i] for i, r in enumerate(reads)]

    def run(self, modules: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
        outs = {"image": x}
        for name, reads, free, m in zip(self.names, self.reads, self.free, modules):
            y = m(*(outs[r] for r in reads))
            for r in free:
                del outs[r]
            outs[name] = y
        return y


class WidthNet(nn.Sequential):
    """A plain network of a graph space: module i is layer i, as in a chain's
    ``nn.Sequential``, but layers read the outputs the space names (residual adds)."""

    def __init__(self, space: SearchSpace, modules: Sequence[nn.Module]):
        super().__init__(*modules)
        self.dataflow = Dataflow(space)

    def forward(self, x):
        return self.dataflow.run(list(self), x)


def build_network(space: SearchSpace, config: Sequence[int]) -> nn.Sequential:
    """The plain network of one configuration; its layer i is module i. A chain gives an
    ``nn.Sequential``; a graph space a ``WidthNet`` (an ``nn.Sequential`` with the
    space's dataflow); a model's space the user's own module, sliced."""
    if hasattr(space, "build"):  # aows.extract.ModelSpace
        return space.build(config)
    widths = space.full_widths(config)
    mods = [build_layer(spec, widths[space.src(i)], widths[space.dst(i)])
            for i, spec in enumerate(space.layers)]
    return nn.Sequential(*mods) if space.is_chain else WidthNet(space, mods)


def layer_input_shape(space: SearchSpace, i: int, cin: int, batch: int = 1) -> tuple[int, ...]:
    res = space.layers[i].in_res
    return (batch, cin, res, res)
