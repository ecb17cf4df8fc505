"""Build a plain network (nn.Sequential, one module per layer of the chain)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from aows.space import LayerSpec, SearchSpace, SpaceError

LAYER_BUILDERS: dict[str, Callable[[LayerSpec, int, int], nn.Module]] = {}


def register_layer(op: str):
    def deco(fn):
        LAYER_BUILDERS[op] = fn
        return fn
    return deco


@register_layer("conv")
def _conv(spec: LayerSpec, cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, spec.kernel, spec.stride, spec.kernel // 2, bias=spec.bias),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@register_layer("dwsep")
def _dwsep(spec: LayerSpec, cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cin, spec.kernel, spec.stride, spec.kernel // 2, groups=cin,
                  bias=spec.bias),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=spec.bias),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@register_layer("linear")
def _linear(spec: LayerSpec, cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(cin, cout, bias=spec.bias))


def build_layer(spec: LayerSpec, cin: int, cout: int) -> nn.Module:
    if spec.op not in LAYER_BUILDERS:
        raise SpaceError(f"no builder for layer op '{spec.op}'; known: {sorted(LAYER_BUILDERS)}")
    return LAYER_BUILDERS[spec.op](spec, cin, cout)


def build_network(space: SearchSpace, config: Sequence[int]) -> nn.Sequential:
    """The plain network of one configuration; its layer i is module i."""
    widths = space.full_widths(config)
    return nn.Sequential(*(build_layer(spec, widths[i], widths[i + 1])
                           for i, spec in enumerate(space.layers)))


def layer_input_shape(space: SearchSpace, i: int, cin: int, batch: int = 1) -> tuple[int, ...]:
    res = space.layers[i].in_res
    return (batch, cin, res, res)
