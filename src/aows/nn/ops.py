"""One definition per op: its plain builder, its slimmable builder and its FLOPs.

A layer of a search space names an op (``LayerSpec.op``). The plain builder makes the
module of one configuration (``cin``/``cout`` channels); the slimmable builder makes the
supernet's module at the widest widths, which runs on the first c channels of its
weights. The slicing rule is the same for every op, so it lives in one place
(``leading_slice``): a plain tensor is the leading block of the supernet's tensor of the
same name (first c_out filters, first c_in input channels, first c BatchNorm entries).
FLOPs are the multiply-accumulates of convolutions and linear maps (the classifier's
global average pooling counted as c_in x r^2 additions, as the chain always did);
residual additions and max pooling count 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aows.registry import Registry
from aows.space import LAYER_MACS, LayerSpec, SpaceError


# ------------------------------------------------------------ slimmable parts
class SlimConv2d(nn.Conv2d):
    """Conv2d whose input and output channels are the first c_in / c_out of its maximum.
    ``depthwise``: groups = channels (c_out = c_in)."""

    def __init__(self, max_in, max_out, kernel, stride, bias=False, depthwise=False,
                 padding=None, dilation=1):
        super().__init__(max_in, max_out, kernel, stride,
                         kernel // 2 if padding is None else padding, dilation,
                         groups=max_in if depthwise else 1, bias=bias)
        self.depthwise = depthwise
        self.out_channels_now = max_out
        self.in_index: torch.Tensor | None = None  # reading a concatenation: its channels

    @classmethod
    def from_module(cls, conv: nn.Conv2d) -> SlimConv2d:
        """The slimmable twin of a plain conv (groups 1 or depthwise), sharing its tensors."""
        depthwise = conv.groups > 1
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                  conv.bias is not None, depthwise, conv.padding, conv.dilation)
        new.weight, new.bias = conv.weight, conv.bias
        return new

    def forward(self, x):
        cin, idx = x.shape[1], self.in_index
        if self.depthwise:  # its filters are its input channels
            w = self.weight[:cin] if idx is None else self.weight[idx]
            b = None if self.bias is None else self.bias[:cin] if idx is None else self.bias[idx]
        else:
            cout = self.out_channels_now
            w = self.weight[:cout, :cin] if idx is None else self.weight[:cout, idx]
            b = self.bias[:cout] if self.bias is not None else None
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation,
                        cin if self.depthwise else 1)


class SlimConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d (groups 1) on the first c_in of its inputs to the first
    ``out_channels_now`` of its outputs; its weight is (in, out, kH, kW)."""

    def __init__(self, max_in, max_out, kernel, stride=1, padding=0, output_padding=0,
                 bias=False, dilation=1):
        super().__init__(max_in, max_out, kernel, stride, padding, output_padding,
                         bias=bias, dilation=dilation)
        self.out_channels_now = max_out
        self.in_index: torch.Tensor | None = None

    @classmethod
    def from_module(cls, conv: nn.ConvTranspose2d) -> SlimConvTranspose2d:
        """The slimmable twin of a plain transposed conv, sharing its tensors."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                  conv.padding, conv.output_padding, conv.bias is not None, conv.dilation)
        new.weight, new.bias = conv.weight, conv.bias
        return new

    def forward(self, x, output_size=None):
        cin, cout = x.shape[1], self.out_channels_now
        pad_out = self._output_padding(x, output_size, self.stride, self.padding,
                                       self.kernel_size, 2, self.dilation)
        b = self.bias[:cout] if self.bias is not None else None
        w = self.weight[:cin] if self.in_index is None else self.weight[self.in_index]
        return F.conv_transpose2d(x, w[:, :cout], b, self.stride, self.padding,
                                  pad_out, 1, self.dilation)


class SlimBatchNorm2d(nn.BatchNorm2d):
    """Shared BatchNorm over the first c channels (statistics and affine sliced), or over
    the channels ``in_index`` of a concatenation."""

    in_index: torch.Tensor | None = None

    @classmethod
    def from_module(cls, bn: nn.BatchNorm2d) -> SlimBatchNorm2d:
        new = cls(bn.num_features, bn.eps, bn.momentum)
        new.weight, new.bias = bn.weight, bn.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(new, name, getattr(bn, name))
        return new

    def forward(self, x):
        c = x.shape[1]
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative average (used by recalibration)
            n = float(self.num_batches_tracked)
            momentum = 1.0 / n if self.training and n > 0 else 0.0
        idx = self.in_index
        if idx is None:
            return F.batch_norm(x, self.running_mean[:c], self.running_var[:c],
                                self.weight[:c], self.bias[:c], self.training, momentum,
                                self.eps)
        mean, var = self.running_mean[idx], self.running_var[idx]  # copies
        out = F.batch_norm(x, mean, var, self.weight[idx], self.bias[idx], self.training,
                           momentum, self.eps)
        if self.training:  # the statistics were updated on the copies: put them back
            with torch.no_grad():
                self.running_mean[idx], self.running_var[idx] = mean, var
        return out


class SlimLinear(nn.Linear):
    """Linear map on the first c_in inputs to the first ``out_features_now`` outputs."""

    out_features_now: int | None = None  # None: all outputs (the classifier)
    in_index: torch.Tensor | None = None  # reading a concatenation: its channels

    @classmethod
    def from_module(cls, lin: nn.Linear) -> SlimLinear:
        new = cls(lin.in_features, lin.out_features, lin.bias is not None)
        new.weight, new.bias = lin.weight, lin.bias
        return new

    def forward(self, x):
        o = self.out_features_now
        w = self.weight[:o, : x.shape[-1]] if self.in_index is None else \
            self.weight[:o, self.in_index]
        return F.linear(x, w, self.bias if self.bias is None else self.bias[:o])


class SlimLayer(nn.Module):
    """One supernet layer; ``set_width`` sets its output channels for the next pass."""

    def __init__(self, *mods: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*mods)

    def forward(self, *xs):
        return self.body(*xs)

    def set_width(self, cout: int) -> None:
        for m in self.modules():
            if isinstance(m, SlimConv2d) and not m.depthwise or \
                    isinstance(m, SlimConvTranspose2d):
                m.out_channels_now = cout


class Add(nn.Module):
    """Sum of the inputs (a residual connection), then the activation."""

    def __init__(self, act: str):
        super().__init__()
        self.act = _act(act)

    def combine(self, a, b):
        return a + b

    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = self.combine(out, x)
        return out if self.act is None else self.act(out)


class Mul(Add):
    """Product of the inputs (a squeeze-and-excitation gate, broadcast over pixels)."""

    def combine(self, a, b):
        return a * b


class Cat(nn.Module):
    def forward(self, *xs):
        return torch.cat(xs, 1)


def _model_only(spec, i, o):
    raise SpaceError(f"layer '{spec.name}' ({spec.op}) exists only in a model's space; its "
                     "networks are the model's own module at other widths")


def leading_slice(big: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The slicing rule of every op: the leading block of ``big`` of the given shape."""
    return big[tuple(slice(0, s) for s in shape)]


# ------------------------------------------------------------------ op registry
ACT_MODULES: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True), "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": nn.Hardswish, "hardsigmoid": nn.Hardsigmoid, "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def _act(name: str) -> nn.Module | None:
    return None if name == "none" else ACT_MODULES[name]()


def _with_act(act: str, *mods: nn.Module) -> list[nn.Module]:
    a = _act(act)
    return [*mods, a] if a is not None else list(mods)


@dataclass(frozen=True)
class Op:
    """plain(spec, cin, cout) -> module; slim(spec, max_in, max_out) -> module whose
    output width is set by ``set_width``; flops(spec, cin, cout) -> MACs per image."""

    plain: Callable[[LayerSpec, int, int], nn.Module]
    slim: Callable[[LayerSpec, int, int], nn.Module]
    flops: Callable[[LayerSpec, int, int], float]


OPS: Registry = Registry("op", SpaceError)


def register_op(name: str, op: Op) -> Op:
    """Add an op (its builders and FLOPs) under ``name``."""
    return OPS.register(name, op)


def get_op(name: str) -> Op:
    """The op of ``name``; an unknown name is one clear error."""
    return OPS.get(name)


def _pad(spec):
    return spec.padding


def _bn(spec, c, cls=nn.BatchNorm2d):
    return [cls(c)] if spec.bn else []


register_op("conv", Op(
    plain=lambda s, i, o: nn.Sequential(*_with_act(
        s.act, nn.Conv2d(i, o, s.kernel, s.stride, _pad(s), groups=s.groups, bias=s.bias),
        *_bn(s, o))),
    slim=lambda s, i, o: SlimLayer(*_with_act(
        s.act, SlimConv2d(i, o, s.kernel, s.stride, s.bias, padding=_pad(s)),
        *_bn(s, o, SlimBatchNorm2d))),
    flops=LAYER_MACS["conv"]))

def _deconv_args(s):
    """(stride, padding, output_padding) of a transposed conv giving ``size_out``."""
    p = s.pad or 0
    return s.stride, p, max(0, s.out_res - ((s.in_res - 1) * s.stride - 2 * p + s.kernel))


register_op("deconv", Op(
    plain=lambda s, i, o: nn.Sequential(*_with_act(
        s.act, nn.ConvTranspose2d(i, o, s.kernel, *_deconv_args(s), bias=s.bias),
        *_bn(s, o))),
    slim=lambda s, i, o: SlimLayer(*_with_act(
        s.act, SlimConvTranspose2d(i, o, s.kernel, *_deconv_args(s), bias=s.bias),
        *_bn(s, o, SlimBatchNorm2d))),
    flops=LAYER_MACS["deconv"]))


def _resize(s):  # the op at the layer's sizes (its latency; the model's own op runs)
    if s.op == "pad":
        lo = (s.out_res - s.in_res) // 2
        mode = "constant" if s.mode in (None, "constant") else s.mode
        return _Pad((lo, s.out_res - s.in_res - lo) * 2, mode)
    return nn.Upsample(size=s.out_res, mode=s.mode or "nearest")


class _Pad(nn.Module):
    def __init__(self, pad, mode):
        super().__init__()
        self.pad, self.mode = pad, mode

    def forward(self, x):
        return F.pad(x, self.pad, self.mode)


register_op("dwsep", Op(
    plain=lambda s, i, o: nn.Sequential(
        nn.Conv2d(i, i, s.kernel, s.stride, _pad(s), groups=i, bias=s.bias),
        nn.BatchNorm2d(i), nn.ReLU(inplace=True),
        *_with_act(s.act, nn.Conv2d(i, o, 1, 1, 0, bias=s.bias), nn.BatchNorm2d(o))),
    slim=lambda s, i, o: SlimLayer(
        SlimConv2d(i, i, s.kernel, s.stride, s.bias, depthwise=True), SlimBatchNorm2d(i),
        nn.ReLU(inplace=True),
        *_with_act(s.act, SlimConv2d(i, o, 1, 1, s.bias), SlimBatchNorm2d(o))),
    flops=LAYER_MACS["dwsep"]))

register_op("dwconv", Op(
    plain=lambda s, i, o: nn.Sequential(*_with_act(
        s.act, nn.Conv2d(i, i, s.kernel, s.stride, _pad(s), groups=i, bias=s.bias),
        *_bn(s, i))),
    slim=lambda s, i, o: SlimLayer(*_with_act(
        s.act, SlimConv2d(i, i, s.kernel, s.stride, s.bias, depthwise=True,
                          padding=_pad(s)), *_bn(s, i, SlimBatchNorm2d))),
    flops=LAYER_MACS["dwconv"]))

register_op("linear", Op(
    plain=lambda s, i, o: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Linear(i, o, bias=s.bias)),
    slim=lambda s, i, o: SlimLayer(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                   SlimLinear(i, o, s.bias)),
    flops=LAYER_MACS["linear"]))

register_op("gap", Op(  # global average pooling that feeds a conv (squeeze-excitation)
    plain=lambda s, i, o: nn.AdaptiveAvgPool2d(1),
    slim=lambda s, i, o: nn.AdaptiveAvgPool2d(1), flops=LAYER_MACS["gap"]))

register_op("avgpool", Op(
    plain=lambda s, i, o: nn.AvgPool2d(s.kernel, s.stride, _pad(s)),
    slim=lambda s, i, o: nn.AvgPool2d(s.kernel, s.stride, _pad(s)),
    flops=LAYER_MACS["avgpool"]))

register_op("mul", Op(plain=lambda s, i, o: Mul(s.act), slim=lambda s, i, o: Mul(s.act),
                      flops=LAYER_MACS["mul"]))

register_op("cat", Op(plain=lambda s, i, o: Cat(), slim=lambda s, i, o: Cat(),
                      flops=LAYER_MACS["cat"]))

register_op("other", Op(plain=_model_only, slim=_model_only, flops=LAYER_MACS["other"]))

for _name in ("upsample", "pad"):
    register_op(_name, Op(plain=lambda s, i, o: _resize(s), slim=lambda s, i, o: _resize(s),
                          flops=LAYER_MACS[_name]))

register_op("add", Op(plain=lambda s, i, o: Add(s.act), slim=lambda s, i, o: Add(s.act),
                      flops=LAYER_MACS["add"]))

register_op("maxpool", Op(
    plain=lambda s, i, o: nn.MaxPool2d(s.kernel, s.stride, _pad(s)),
    slim=lambda s, i, o: nn.MaxPool2d(s.kernel, s.stride, _pad(s)),
    flops=LAYER_MACS["maxpool"]))
