"""What the tracer knows about each op: which module types and functions keep their
input's channels, start new ones, combine them, or are sliced with a layer; everything
else is held (``aows.extract``).

Module types map to rules in ``MODULE_RULES``; ``register`` adds a type of yours (as
timm's and Torch-Pruning's registries do), so that a module aows does not know is traced
as what it is instead of being held.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from aows.space import SpaceError

__all__ = ["MODULE_RULES", "module_rule", "register"]

_ACT_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish",
                nn.Hardsigmoid: "hardsigmoid", nn.SiLU: "silu", nn.Sigmoid: "sigmoid",
                nn.GELU: "gelu"}
_ACT_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6",
                  F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.silu: "silu",
                  torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.gelu: "gelu"}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid"}
# elementwise, or per channel without parameters along the channels: keep the channels
_PASS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                 nn.FeatureAlphaDropout, nn.Identity, nn.Flatten, nn.BatchNorm2d,
                 nn.LeakyReLU, nn.Tanh, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Hardtanh,
                 nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink, nn.Hardshrink,
                 nn.Softshrink, *_ACT_MODULES)
_PASS_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                   F.feature_alpha_dropout, torch.flatten, F.leaky_relu, torch.tanh, F.tanh,
                   F.mish, F.elu, F.selu, F.celu, F.hardtanh, F.softplus, F.softsign,
                   F.logsigmoid, F.tanhshrink, F.hardshrink, F.softshrink, torch.abs,
                   torch.exp, torch.clamp, torch.clip, *_ACT_FUNCTIONS}
_PASS_METHODS = {"flatten", "view", "reshape", "contiguous", "clone", "tanh", "tanh_",
                 "abs", "exp", "clamp", "clamp_", "clip", *_ACT_METHODS}
# keep the channels, change the resolution: (layer op, mode) of ``_Trace.resize``
_UPSAMPLE_MODULES = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
_UPSAMPLE_FUNCTIONS = {F.interpolate, F.upsample, F.upsample_nearest, F.upsample_bilinear}
_PAD_MODULES = {nn.ZeroPad2d: "constant", nn.ConstantPad2d: "constant",
                nn.ReflectionPad2d: "reflect", nn.ReplicationPad2d: "replicate",
                **({nn.CircularPad2d: "circular"} if hasattr(nn, "CircularPad2d") else {})}
# fold channels into pixels or shuffle them: held (a leading slice is not kept)
_SHUFFLE = {F.pixel_shuffle, F.pixel_unshuffle, torch.pixel_shuffle,
            torch.pixel_unshuffle, torch.channel_shuffle, nn.PixelShuffle,
            nn.PixelUnshuffle, nn.ChannelShuffle}
_ADD = {operator.add, operator.iadd, operator.sub, torch.add, torch.sub, "add", "add_", "sub"}
_MUL = {operator.mul, operator.imul, operator.truediv, torch.mul, "mul", "mul_", "div"}
_CAT = {torch.cat, torch.concat, "cat"}


def _stochastic_depth_functions():
    try:  # torchvision's residual drop: elementwise per image
        from torchvision.ops import stochastic_depth
        return {stochastic_depth}
    except ImportError:
        return set()


def _size_query(node: fx.Node) -> bool:
    """Reads a tensor's size (harmless), not its values."""
    if node.op == "call_method":
        return node.target in ("size", "dim", "numel")
    return node.target in (getattr, len, torch.numel)


def _plain_tensors(m: nn.Module) -> bool:
    """A module whose forward is its class's and whose tensors are plain: no hooks, no
    weight norm or parametrization (their tensors are not the ones aows slices)."""
    if m._forward_hooks or m._forward_pre_hooks or hasattr(m, "parametrizations"):
        return False
    return set(n for n, _ in m.named_parameters(recurse=False)) <= {"weight", "bias"}


def _value(v):
    """A node's recorded value (an int read from a size), else ``v``."""
    if isinstance(v, fx.Node) and "aows_value" in v.meta:
        return v.meta["aows_value"]
    return v


def _int(v) -> int:
    if isinstance(v, (tuple, list)):
        return int(v[0])
    return int(v)


# ---------------------------------------------------------------- module rules
# A rule is rule(trace, node, module, x, inputs) -> bool: it calls the trace's
# primitives (``aows.extract.trace._Trace``: conv, linear, batchnorm, activation, pool,
# global_pool, passthrough) for the node and returns whether it handled it; a rule that
# returns False (or no rule) leaves the node to ``unknown``, which holds its widths.
Rule = Callable[..., bool]


def _conv_like(kind: str) -> Rule:
    """A conv (``kind`` "conv") or transposed conv ("deconv") with zero padding."""
    def rule(t, node, m, x, ins) -> bool:
        if m.padding_mode != "zeros" or x is None:
            return False
        getattr(t, kind)(node, m, x)
        return True
    return rule


_conv, _deconv = _conv_like("conv"), _conv_like("deconv")


def _linear(t, node, m, x, ins) -> bool:
    if x is None or len(t.shape(x)) != 2:
        return False
    t.linear(node, m, x)
    return True


def _batchnorm(t, node, m, x, ins) -> bool:
    if not (m.affine and m.track_running_stats and x is not None and t.keeps(node, x)):
        return False
    t.batchnorm(node, m, x)
    return True


def _activation(name: str) -> Rule:
    def rule(t, node, m, x, ins) -> bool:
        if x is None:
            return False
        t.activation(node, x, name)
        return True
    return rule


def _pool(op: str) -> Rule:
    def rule(t, node, m, x, ins) -> bool:
        if x is None:
            return False
        t.pool(node, x, op, _int(m.kernel_size), _int(m.stride), _int(m.padding))
        return True
    return rule


def _global_pool(t, node, m, x, ins) -> bool:
    return x is not None and t.adaptive_pool(node, x, "maxpool" if isinstance(
        m, nn.AdaptiveMaxPool2d) else "avgpool")


def _upsample(t, node, m, x, ins) -> bool:
    mode = "bilinear" if isinstance(m, nn.UpsamplingBilinear2d) else m.mode
    return x is not None and t.resize(node, x, "upsample", mode)


def _padding(t, node, m, x, ins) -> bool:
    return x is not None and t.resize(node, x, "pad", _PAD_MODULES[type(m)])


def passthrough(t, node, m, x, ins) -> bool:
    """The rule of a module that keeps its input's channels, elementwise (an activation,
    dropout, a wrapper without parameters along the channels)."""
    if x is None or not t.keeps(node, x):
        return False
    t.passthrough(node, x)
    return True


MODULE_RULES: dict[type, Rule] = {
    nn.Conv2d: _conv, nn.Linear: _linear, nn.BatchNorm2d: _batchnorm,
    nn.MaxPool2d: _pool("maxpool"), nn.AvgPool2d: _pool("avgpool"),
    nn.AdaptiveAvgPool2d: _global_pool, nn.AdaptiveMaxPool2d: _global_pool,
    nn.ConvTranspose2d: _deconv, **{t: _upsample for t in _UPSAMPLE_MODULES},
    **{t: _padding for t in _PAD_MODULES},
    **{t: _activation(a) for t, a in _ACT_MODULES.items()},
    **{t: passthrough for t in _PASS_MODULES if t not in _ACT_MODULES
       and t is not nn.BatchNorm2d},
}
_REGISTERED: set[type] = set()


def register(module_type: type, rule: str | Rule = "passthrough") -> None:
    """Teach the tracer a module type of yours.

    Args:
        module_type: the class (matched exactly, not its subclasses); its instances are
            traced as leaves, not through their forward.
        rule: "passthrough" for a module that keeps its input's channels elementwise
            (an activation, a dropout, a wrapper without parameters along the channels),
            or a rule function ``rule(trace, node, module, x, inputs) -> bool`` that
            calls the trace's primitives and returns whether it handled the node.

    Example:
        >>> class Swish(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x * torch.sigmoid(x)
        >>> register(Swish)  # its widths are searched instead of held
    """
    if rule == "passthrough":
        rule = passthrough
    if not callable(rule):
        raise SpaceError(f"register({module_type.__name__}, {rule!r}): give 'passthrough' "
                         "or a rule function (trace, node, module, x, inputs) -> bool")
    MODULE_RULES[module_type] = rule
    _REGISTERED.add(module_type)


def module_rule(module_type: type) -> Rule | None:
    """The rule of a module type: its own, else a BatchNorm subclass's (timm's
    BatchNormAct2d: sliced by its per-channel tensors, its own forward kept)."""
    rule = MODULE_RULES.get(module_type)
    if rule is None and issubclass(module_type, nn.BatchNorm2d):
        rule = MODULE_RULES[nn.BatchNorm2d]
    return rule


def is_leaf(m: nn.Module) -> bool:
    """Modules the tracer keeps whole: BatchNorm subclasses and registered types."""
    return isinstance(m, nn.BatchNorm2d) or type(m) in _REGISTERED
