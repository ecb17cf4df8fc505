"""From a user's ``nn.Module`` to its width graph.

The module is traced with ``torch.fx`` (PyTorch's own graph capture) and run once on an
example input to learn every tensor's shape. Each tensor with a channel dimension gets a
channel slot; slots that must have one width are merged (union-find):

- a convolution or linear map starts a new slot at its output; a depthwise conv keeps
  its input's;
- BatchNorm, activations, dropout, pooling and a flatten of a 1x1 map keep their input's;
- an elementwise addition or multiplication merges the slots it combines (residuals,
  squeeze-and-excitation gates).

Every merged slot is a width variable. What leading-slice width search cannot change
safely is *held* at its width, with the reason: the input image and the output, the
channels of a concatenation (a leading slice of a concatenation is not the concatenation
of leading slices), a grouped conv (its group count must divide the width), a reshape
that folds channels into other dimensions, a parameter added or multiplied along the
channels, and anything aows does not know (another module type, a subclass of Conv2d
with its own forward, an unknown function). Held is the safe default: an unknown op can
only cost search freedom, never a wrong network.

The layers of the graph (their type keys are the latency unknowns) are the convs with
the BatchNorm and activation that directly follow them, pools, residual additions and
gates, the classifier (with its global pooling), and, for held parts, concatenations and
unknown ops as constant terms.

Why not Torch-Pruning's DependencyGraph: it groups channels for pruning arbitrary index
sets, and its groups run through concatenations by index mapping (measured: the two
branches of a concatenation each form a group that prunes a range of the next conv's
inputs), which a leading-slice supernet cannot express; and it gives no op types and
resolutions, which the latency model needs. One fx trace gives both.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from aows.models import load_model
from aows.nn.modelnet import ModuleSupernet, slice_module
from aows.space import LayerSpec, SearchSpace, SpaceError, width_choices
from aows.spaces import check_solvable

_ACT_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish",
                nn.Hardsigmoid: "hardsigmoid", nn.SiLU: "silu", nn.Sigmoid: "sigmoid",
                nn.GELU: "gelu"}
_ACT_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6",
                  F.hardswish: "hardswish", F.hardsigmoid: "hardsigmoid", F.silu: "silu",
                  torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.gelu: "gelu"}
_ACT_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid"}
_PASS_MODULES = (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten, nn.BatchNorm2d,
                 nn.LeakyReLU, nn.Tanh, nn.ELU, nn.Mish, *_ACT_MODULES)
_PASS_FUNCTIONS = {F.dropout, torch.flatten, F.leaky_relu, torch.tanh, F.mish,
                   *_ACT_FUNCTIONS}
_PASS_METHODS = {"flatten", "view", "reshape", "contiguous", "clone", "tanh",
                 *_ACT_METHODS}
_ADD = {operator.add, operator.iadd, operator.sub, torch.add, torch.sub, "add", "add_", "sub"}
_MUL = {operator.mul, operator.imul, operator.truediv, torch.mul, "mul", "mul_", "div"}
_CAT = {torch.cat, torch.concat, "cat"}


def _stochastic_depth_functions():
    try:  # torchvision's residual drop: elementwise per image
        from torchvision.ops import stochastic_depth
        return {stochastic_depth}
    except ImportError:
        return set()


@dataclass(frozen=True)
class ModelSpace(SearchSpace):
    """The width graph of a user's module (``params["model"]`` names it).

    ``plan``: (module name, kind, input variable, output variable) of every conv
    ("conv" or "dw"), BatchNorm ("bn") and linear ("linear") that follows the widths;
    ``held``: (variable, reason) of every width held fixed.
    """

    plan: tuple[tuple[str, str, int, int], ...] = field(default=(), compare=False)
    held: tuple[tuple[int, str], ...] = field(default=(), compare=False)

    def load_module(self) -> nn.Module:
        """The user's module at full width (a fresh copy)."""
        return load_model(self.params["model"], self.params.get("classes"),
                          self.params.get("weights"))

    def build(self, config: Sequence[int]) -> nn.Module:
        """The user's own module with physically smaller layers (leading slices of its
        weights) at ``config``."""
        return slice_module(self.load_module(), self.plan, self.full_widths(config))

    def modules_of(self, v: int) -> list[dict]:
        """The user's modules whose channels variable ``v`` sets: (name, kind, role)."""
        out = []
        for q, kind, a, b in self.plan:
            roles = [r for r, w in (("in", a), ("out", b)) if w == v]
            if roles:
                role = "tied" if len(roles) == 2 else roles[0]
                out.append({"module": q, "kind": kind, "role": role})
        return out

    def held_fixed(self) -> list[dict]:
        """Every held variable: its name, width and the reasons (JSON-able)."""
        reasons: dict[int, list[str]] = {}
        for v, why in self.held:
            reasons.setdefault(v, []).append(why)
        return [{"name": self.names[v], "width": self.choices[v][0], "reasons": r}
                for v, r in sorted(reasons.items())]


def model_space(model: str, resolution: int | None = None, classes: int | None = None,
                min_width: float = 0.2, max_width: float = 1.0, levels: int = 9,
                divisor: int = 8, input_shape: Sequence[int] | None = None,
                weights: str | None = None, **ignored) -> ModelSpace:
    """The width graph of a model named by ``aows.models`` (see ``extract``).

    Args:
        model: ``torchvision:NAME``, ``timm:NAME`` or ``path/to/file.py:FUNCTION``.
        resolution: square input size (default 224), or ``input_shape`` (C, H, W).
        classes: output classes for torchvision/timm models.
        min_width, max_width, levels, divisor: the Table D.1 width rule, as fractions of
            the module's own widths; ``max_width`` at most 1.0 (there are no weights for
            wider layers).
        weights: a tensors-only file loaded into the module.
    """
    kind, _, fn = model.partition(":")
    if kind.endswith(".py") and Path(kind).is_file():  # later commands run from anywhere
        model = f"{Path(kind).resolve()}:{fn}"
    if input_shape is None:
        input_shape = (3, resolution or 224, resolution or 224)
    input_shape = tuple(int(s) for s in input_shape)
    module = load_model(model, classes, weights)
    params = dict(model=model, resolution=input_shape[-1], min_width=min_width,
                  max_width=max_width, levels=levels, divisor=divisor)
    if classes is not None:
        params["classes"] = classes
    if weights is not None:
        params["weights"] = weights
    if tuple(input_shape) != (3, input_shape[-1], input_shape[-1]):
        params["input_shape"] = list(input_shape)
    space = extract(module, input_shape, name=model, params=params, min_width=min_width,
                    max_width=max_width, levels=levels, divisor=divisor)
    check_solvable(space)
    return space


def model_choices(width: int, min_width: float, max_width: float, levels: int,
                  divisor: int) -> tuple[int, ...]:
    """Table D.1's rule on a module's own width: never wider than the module, and, with
    ``max_width`` 1.0, the module's own width is the widest choice even where it is not a
    multiple of the divisor (the widest configuration is the user's model, every trained
    channel kept)."""
    choices = {min(width, c) for c in width_choices(width, min_width, max_width, levels,
                                                    divisor)}
    if max_width >= 1.0:
        choices.add(width)
    return tuple(sorted(choices))


def extract(module: nn.Module, input_shape: Sequence[int], *, name: str = "model",
            params: dict | None = None, min_width: float = 0.2, max_width: float = 1.0,
            levels: int = 9, divisor: int = 8, verify: bool = True) -> ModelSpace:
    """The width graph of ``module`` on inputs of ``input_shape`` (C, H, W).

    Args:
        module: the network at full width (traced with ``torch.fx``, run once).
        input_shape: one example input's shape without the batch, e.g. (3, 224, 224).
        name: the space's name. params: recorded in the space (how to rebuild it).
        min_width, max_width, levels, divisor: the width rule (``model_choices``).
        verify: run the narrowest configuration once to check it slices cleanly.

    Raises:
        SpaceError: the module cannot be traced or run on the input, or the width rule
            is out of range.
    """
    if not 0 < min_width <= max_width <= 1.0:
        raise SpaceError(f"need 0 < min_width <= max_width <= 1.0 for a model's space, got "
                         f"{min_width}, {max_width}: the model's own widths are the widest "
                         "that have weights")
    if levels < 1 or divisor < 1:
        raise SpaceError("levels and divisor must be at least 1")
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise SpaceError(f"input shape {tuple(input_shape)}: give (channels, size, size) of "
                         "a square image, e.g. --input-shape 3,224,224")
    trace = _Trace(module, tuple(input_shape), name)
    space = trace.space(name, dict(params or {}), (min_width, max_width, levels, divisor))
    if verify:
        _verify(module, space, tuple(input_shape), name)
    return space


def _verify(module: nn.Module, space: ModelSpace, input_shape, name: str) -> None:
    """Run what training and export will run, at the narrowest configuration and one
    random one: the exported module and the supernet (eval: equal outputs), and the
    supernet in training mode (a branch that only runs in training, which the eval-mode
    trace does not show, fails here rather than in the first training step)."""
    configs = [space.narrowest()]
    if space.n_searchable:
        configs += space.uniform_sample(np.random.default_rng(0), 1)
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    mode = "eval"
    try:
        with torch.no_grad():
            sup = ModuleSupernet(space, module=copy.deepcopy(module)).eval()
            for cfg in configs:
                a = slice_module(module, space.plan, space.full_widths(cfg)).eval()(x)
                b = sup(x, cfg)
                if not _same(a, b):
                    raise RuntimeError("the supernet and the exported module disagree")
            mode = "training"
            sup.train()(x, configs[0])
    except Exception as err:  # a slicing aows got wrong: say so, do not go on
        hint = ("; its forward in training mode may take a path the eval-mode trace does "
                "not show (an auxiliary head): give such a model without it"
                if mode == "training" else ", please report it")
        raise SpaceError(f"model '{name}': its narrowest configuration does not run in "
                         f"{mode} mode ({type(err).__name__}: {_first_line(err)}); aows "
                         f"mis-read a width dependency of this model{hint}") from None


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and \
            bool(torch.allclose(a, b, atol=1e-4, rtol=1e-4))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return True


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with BatchNorm subclasses kept whole (sliced as BatchNorm)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.BatchNorm2d) or super().is_leaf_module(m, qualname)


class _Shapes(fx.Interpreter):
    """Runs the traced module once and records every tensor's shape on its node."""

    def run_node(self, n):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            n.meta["aows_shape"] = tuple(out.shape)
        elif isinstance(out, (int, float, tuple, list, torch.Size)):
            n.meta["aows_value"] = out
        return out


class _Trace:
    """One pass over the fx graph: channel slots, held reasons, layers, module plan."""

    def __init__(self, module: nn.Module, input_shape: tuple[int, ...], name: str):
        modes = [(m, m.training) for m in module.modules()]
        try:
            self.gm = self._trace_and_run(module, input_shape, name)
        finally:  # the user's module leaves in the modes it came in
            for m, mode in modes:
                m.training = mode
        self.modules = dict(self.gm.named_modules())
        self.parent: list[int] = []
        self.size: list[int] = []
        self.reasons: dict[int, list[str]] = {}
        self.slot: dict[fx.Node, int] = {}
        self.prod: dict[fx.Node, object] = {}  # node -> layer index, "image" or ("pool", n)
        self.layers: list[dict] = []
        self.tail: dict[int, fx.Node] = {}  # layer -> the node that carries its output
        self.plan: list[tuple[str, str, int, int]] = []
        self.names: set[str] = {"image"}
        self.acted: set[int] = set()
        self.multi: dict[fx.Node, list[fx.Node]] = {}  # several-tensor results -> inputs
        self.attrs: dict[str, str] = {}  # module -> where its tensors are read directly
        self.image = None
        self.gaps: dict[fx.Node, int] = {}
        self.sd = _stochastic_depth_functions()
        for node in self.gm.graph.nodes:
            self.visit(node)

    @staticmethod
    def _trace_and_run(module, input_shape, name) -> fx.GraphModule:
        """Traced as in training, so that a training-only branch (an auxiliary head) is
        in the graph; run once in eval mode (the user's BatchNorm statistics stay)."""
        try:
            gm = fx.GraphModule(module, _Tracer().trace(module.train()))
        except Exception as err:
            raise SpaceError(f"model '{name}' cannot be traced by torch.fx "
                             f"({type(err).__name__}: {_first_line(err)}); make its forward "
                             "free of data-dependent control flow") from None
        try:
            with torch.no_grad():
                _Shapes(gm.eval()).run(torch.zeros(1, *input_shape))
        except Exception as err:
            raise SpaceError(f"model '{name}' does not run on an input of shape "
                             f"{(1, *input_shape)} ({type(err).__name__}: {_first_line(err)}); "
                             "give the --resolution or --input-shape it expects") from None
        return gm

    # ---------------------------------------------------------- union-find
    def new(self, width: int) -> int:
        self.parent.append(len(self.parent))
        self.size.append(int(width))
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)
            self.reasons.setdefault(min(a, b), []).extend(self.reasons.pop(max(a, b), []))

    def hold(self, s: int | None, why: str) -> None:
        if s is not None:
            r = self.reasons.setdefault(self.find(s), [])
            if why not in r:
                r.append(why)

    # ---------------------------------------------------------- node facts
    @staticmethod
    def shape(node) -> tuple[int, ...] | None:
        return node.meta.get("aows_shape") if isinstance(node, fx.Node) else None

    def res(self, node) -> int:
        sh = self.shape(node)
        return int(sh[2]) if sh is not None and len(sh) == 4 else 1

    def tensors(self, node) -> list[fx.Node]:
        """Tensor arguments, in nested lists, tuples and dicts too; an element of a
        several-tensor result (chunk, split) stands for that op's inputs."""
        out = []

        def walk(a):
            if isinstance(a, (list, tuple)):
                for x in a:
                    walk(x)
            elif isinstance(a, dict):
                for x in a.values():
                    walk(x)
            elif isinstance(a, fx.Node):
                if self.shape(a) is not None:
                    out.append(a)
                elif a in self.multi:
                    out.extend(self.multi[a])
        walk(list(node.args))
        walk(dict(node.kwargs))
        return out

    def where(self, node) -> str:
        if node.op == "call_module":
            return f"{type(self.modules[node.target]).__name__} '{node.target}'"
        t = node.target if isinstance(node.target, str) else getattr(
            node.target, "__name__", str(node.target))
        return f"{t} at '{self.scope(node) or node.name}'"

    @staticmethod
    def scope(node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        return list(stack.values())[-1][0] if stack else ""

    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    # -------------------------------------------------------------- layers
    def producer(self, node) -> str:
        """The layer whose output ``node`` carries (a pending global pool becomes a
        'gap' layer here)."""
        p = self.prod.get(node)
        if isinstance(p, tuple):  # ("pool", pool node): a global pool read by a layer
            pool = p[1]
            if pool not in self.gaps:  # made once, however many layers read it
                self.gaps[pool] = self.add_layer(
                    pool, "gap", self.name_of(pool, "gap"), [pool.args[0]], self.slot[pool],
                    self.slot[pool], kernel=1, in_res=self.res(pool.args[0]))
            p = self.gaps[pool]
        if p is None:
            raise SpaceError(f"internal: no producer for {node}")
        return "image" if p == "image" else self.layers[p]["name"]

    def name_of(self, node, suffix: str) -> str:
        if node.op == "call_module":
            return self.unique(node.target)
        scope = self.scope(node)
        return self.unique(f"{scope}.{suffix}" if scope else suffix)

    def add_layer(self, node, op, name, reads, src, dst, kernel=1, stride=1, in_res=None,
                  **extra) -> int:
        inputs = [self.producer(r) for r in reads]
        # "none" until an activation fuses; ops without one keep the default ("relu")
        act = "none" if op in ("conv", "dwconv", "add", "mul") else "relu"
        self.layers.append(dict(name=name, op=op, kernel=kernel, stride=stride,
                                in_res=self.res(reads[0]) if in_res is None else in_res,
                                src=src, dst=dst, inputs=inputs, act=act, **extra))
        k = len(self.layers) - 1
        self.tail[k] = node
        self.prod[node] = k
        return k

    def fusable(self, node, arg) -> int | None:
        """The layer ``node`` may join: the one whose only consumer is ``node``."""
        p = self.prod.get(arg)
        if isinstance(p, int) and self.tail.get(p) is arg and len(arg.users) == 1:
            return p
        return None

    # --------------------------------------------------------------- visit
    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            sh = self.shape(node)
            if sh is None or self.image is not None:  # a further argument (its default)
                return
            s = self.new(sh[1])
            self.hold(s, "the input image's channels")
            self.slot[node], self.prod[node] = s, "image"
            self.image = node
            return
        if node.op == "output":
            for t in self.tensors(node):
                self.hold(self.slot.get(t), "the network's output (the classes)")
            return
        if node.op == "get_attr":
            owner = node.target.rpartition(".")[0]
            self.attrs.setdefault(owner, f"'{self.scope(node) or node.name}'")
            return
        ins = [t for t in self.tensors(node) if t in self.slot]
        if self.shape(node) is None:
            if ins and not _size_query(node):  # chunk, split, unbind: several tensors
                why = f"{self.where(node)} splits the channels into several tensors"
                for t in ins:
                    self.hold(self.slot[t], why)
                self.multi[node] = ins
            return  # sizes and other values: no channels of their own
        if not ins and node.op != "call_module":
            return  # a tensor made from constants
        if node.op == "call_module":
            self.visit_module(node, self.modules[node.target], ins)
        else:
            self.visit_function(node, node.target, ins)

    def visit_module(self, node, m, ins) -> None:
        x = ins[0] if ins else None
        t = type(m)
        if not _plain_tensors(m):  # hooks, weight norm, parametrizations: not sliceable
            return self.unknown(node, ins)
        if t is nn.Conv2d and m.padding_mode == "zeros" and x is not None:
            self.conv(node, m, x)
        elif t is nn.Linear and x is not None and len(self.shape(x)) == 2:
            self.linear(node, m, x)
        elif isinstance(m, nn.BatchNorm2d) and m.affine and m.track_running_stats and \
                x is not None and self.keeps(node, x):
            # a subclass (timm's BatchNormAct2d: BN + activation) is sliced by its
            # per-channel tensors, its own forward kept
            k = self.fusable(node, x)
            self.passthrough(node, x)
            if k is not None and self.layers[k]["op"] in ("conv", "dwconv") \
                    and not self.layers[k]["bn"]:
                self.layers[k]["bn"] = True
                self.tail[k], self.prod[node] = node, k
            self.plan.append((node.target, "bn" if t is nn.BatchNorm2d else "bnx",
                              self.slot[node], self.slot[node]))
        elif x is None:
            self.unknown(node, ins)
        elif t in _ACT_MODULES:
            self.activation(node, x, _ACT_MODULES[t])
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and t in (nn.MaxPool2d, nn.AvgPool2d):
            self.pool(node, x, "maxpool" if t is nn.MaxPool2d else "avgpool",
                      _int(m.kernel_size), _int(m.stride), _int(m.padding))
        elif t in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d) and self.global_pool(node, x):
            pass
        elif t in _PASS_MODULES and t is not nn.BatchNorm2d and self.keeps(node, x):
            self.passthrough(node, x)
        else:
            self.unknown(node, ins)

    def visit_function(self, node, target, ins) -> None:
        x = ins[0]
        method = node.op == "call_method"
        if (method and target in _ACT_METHODS) or (not method and target in _ACT_FUNCTIONS):
            self.activation(node, x, (_ACT_METHODS if method else _ACT_FUNCTIONS)[target])
        elif target in _ADD or target in _MUL:
            self.elementwise(node, ins, "add" if target in _ADD else "mul")
        elif target in _CAT:
            self.concat(node, ins)
        elif target is F.adaptive_avg_pool2d or target is F.adaptive_max_pool2d or (
                method and target == "mean") or target is torch.mean:
            if not self.global_pool(node, x):
                self.unknown(node, ins)
        elif target is F.max_pool2d or target is F.avg_pool2d:
            a = [_value(v) for v in node.args] + [None] * 5
            k = _value(node.kwargs.get("kernel_size", a[1]))
            s = _value(node.kwargs.get("stride", a[2]))
            p = _value(node.kwargs.get("padding", a[3] or 0))
            if any(isinstance(v, fx.Node) for v in (k, s, p)) or (
                    target is F.max_pool2d and len(node.args) > 4):
                return self.unknown(node, ins)  # dilation, or sizes it cannot read
            self.pool(node, x, "maxpool" if target is F.max_pool2d else "avgpool", _int(k),
                      _int(k if s is None or s == [] else s), _int(p))
        elif (target in self.sd or (method and target in _PASS_METHODS)
              or (not method and target in _PASS_FUNCTIONS)) and self.keeps(node, x):
            self.passthrough(node, x)
        else:
            self.unknown(node, ins)

    def keeps(self, node, x) -> bool:
        """Whether ``node`` keeps its input's channels: same shape, or a flatten of 1x1."""
        a, b = self.shape(x), self.shape(node)
        if a is None or b is None:
            return False
        if a == b:
            return True
        return (len(a) == 4 and len(b) == 2 and a[2] * a[3] == 1 and a[:2] == b) or (
            len(a) == 2 and len(b) == 4 and b[2] * b[3] == 1 and b[:2] == a)

    def passthrough(self, node, x) -> None:
        self.slot[node] = self.slot[x]
        self.prod[node] = self.prod[x]
        if isinstance(self.prod[x], int) and self.tail.get(self.prod[x]) is x \
                and len(x.users) == 1:
            self.tail[self.prod[x]] = node  # a following BN or act may still fuse

    def activation(self, node, x, act: str) -> None:
        k = self.fusable(node, x)
        self.passthrough(node, x)
        op = self.layers[k]["op"] if k is not None else None
        # a linear's "relu" is the built-in classifier's default and means none: a ReLU
        # after a linear stays outside it
        if k is not None and k not in self.acted and (
                op in ("conv", "dwconv", "add", "mul") or (op == "linear" and act != "relu")):
            self.layers[k]["act"] = act
            self.acted.add(k)
            self.tail[k] = node

    def conv(self, node, m: nn.Conv2d, x) -> None:
        s_in, sh = self.slot[x], self.shape(node)
        k, st, pad = _int(m.kernel_size), _int(m.stride), m.padding
        extra = {"bias": m.bias is not None, "bn": False}
        pad = pad[0] if isinstance(pad, tuple) and len(set(pad)) == 1 else None
        if pad is None or pad != k // 2:
            extra["pad"] = pad
        if m.kernel_size[0] != m.kernel_size[1] or m.dilation != (1, 1) or pad is None:
            extra["size_out"] = int(sh[2])
            extra["pad"] = None
        groups, cin, cout = m.groups, m.in_channels, m.out_channels
        if groups > 1 and groups == cin == cout:
            self.add_layer(node, "dwconv", self.name_of(node, "conv"), [x], s_in, s_in,
                           kernel=k, stride=st, **extra)
            self.slot[node] = s_in
            self.plan.append((node.target, "dw", s_in, s_in))
            return
        s_out = self.new(cout)
        self.slot[node] = s_out
        if groups > 1:
            why = (f"grouped conv '{node.target}' (groups={groups}): its widths must stay "
                   "multiples of the group count")
            self.hold(s_in, why)
            self.hold(s_out, why)
            extra["groups"] = groups
        else:
            self.plan.append((node.target, "conv", s_in, s_out))
        self.add_layer(node, "conv", self.name_of(node, "conv"), [x], s_in, s_out,
                       kernel=k, stride=st, **extra)

    def linear(self, node, m: nn.Linear, x) -> None:
        s_out = self.new(m.out_features)
        self.slot[node] = s_out
        self.plan.append((node.target, "linear", self.slot[x], s_out))
        # a classifier reading a global pool (through dropout/flatten) includes the pool
        src, in_res = x, 1
        p = self.prod.get(x)
        if isinstance(p, tuple) and self._single_chain(p[1], node):
            pool = p[1]
            src, in_res = pool.args[0], self.res(pool.args[0])
            self.prod[pool] = self.prod[src]  # the pool is inside the layer
        self.add_layer(node, "linear", self.name_of(node, "fc"), [src], self.slot[x], s_out,
                       in_res=in_res, bias=m.bias is not None)

    def _single_chain(self, start, end) -> bool:
        n = start
        while n is not end:
            if len(n.users) != 1:
                return False
            n = next(iter(n.users))
        return True

    def global_pool(self, node, x) -> bool:
        sh = self.shape(node)
        if sh is None or len(sh) not in (2, 4) or (len(sh) == 4 and sh[2] * sh[3] != 1) or \
                sh[:2] != self.shape(x)[:2]:
            return False
        self.slot[node] = self.slot[x]
        self.prod[node] = ("pool", node)
        return True

    def pool(self, node, x, op, kernel, stride, pad) -> None:
        extra = {} if pad == kernel // 2 else {"pad": pad}
        self.slot[node] = self.slot[x]
        self.add_layer(node, op, self.name_of(node, op), [x], self.slot[x], self.slot[x],
                       kernel=kernel, stride=stride, **extra)
        if LayerSpec("x", op, kernel, stride, self.res(x),
                     pad=extra.get("pad")).out_res != self.res(node):
            self.layers[-1]["size_out"] = self.res(node)

    def elementwise(self, node, ins, op) -> None:
        out = self.shape(node)
        full = [t for t in ins if len(self.shape(t)) == len(out) and self.shape(t)[1] == out[1]]
        if not full or out[1] == 1 or len(out) not in (2, 4):
            return self.unknown(node, ins)
        s = self.slot[full[0]]
        for t in full[1:]:
            self.union(s, self.slot[t])
        self.slot[node] = s
        consts = [a for a in [*node.args, *node.kwargs.values()]
                  if isinstance(a, fx.Node) and a not in self.slot
                  and (sh := self.shape(a)) is not None and len(sh) >= 1 and out[1] in sh]
        if consts:
            self.hold(s, f"a tensor of fixed size is combined with the channels at "
                         f"{self.where(node)}")
        if len(full) < 2:  # x * scalar, x + bias: keeps the width, no layer of its own
            self.passthrough(node, full[0])
            return
        full_res = [t for t in full if self.res(t) == self.res(node)]
        reads = full_res + [t for t in full if t not in full_res]
        self.add_layer(node, op, self.name_of(node, op), reads, s, s, in_res=self.res(node))

    def concat(self, node, ins) -> None:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        out = self.shape(node)
        if dim not in (1, 1 - len(out)):
            return self.unknown(node, ins)
        why = f"concatenated at {self.where(node)}"
        for t in ins:
            self.hold(self.slot[t], why)
        s = self.new(out[1])
        self.hold(s, why)
        self.slot[node] = s
        self.add_layer(node, "cat", self.name_of(node, "cat"), ins, s, s,
                       in_res=self.res(node))

    def unknown(self, node, ins) -> None:
        why = f"{self.where(node)} is an op aows does not slice"
        for t in ins:
            self.hold(self.slot[t], why)
        out = self.shape(node)
        if out is None or len(out) < 2:
            return
        s = self.new(out[1])
        self.hold(s, why)
        self.slot[node] = s
        ins = ins or [self.image]  # made from nothing: a constant term read off the image
        src = self.slot[ins[0]]
        self.add_layer(node, "other", self.name_of(node, "op"), ins, src, s,
                       in_res=self.res(ins[0]), size_out=self.res(node))

    # --------------------------------------------------------------- space
    def space(self, name: str, params: dict, rule) -> ModelSpace:
        # a module called twice shares its weights: its widths are one variable each
        seen: dict[str, tuple[int, int]] = {}
        for q, _, a, b in self.plan:
            if q in seen:
                self.union(seen[q][0], a)
                self.union(seen[q][1], b)
            seen[q] = (a, b)
        roots = sorted({self.find(s) for s in range(len(self.parent))})
        used = set()
        for lay in self.layers:
            used.update((self.find(lay["src"]), self.find(lay["dst"])))
        if self.image is None or not self.layers:
            raise SpaceError(f"model '{name}' has no input tensor or no layer aows can "
                             "search (convs, linear maps)")
        used.add(self.find(self.slot[self.image]))
        roots = [r for r in roots if r in used]
        for q, _, a, b in self.plan:  # a module whose tensors the forward also reads itself
            if q in self.attrs:
                why = f"the tensors of '{q}' are also read directly at {self.attrs[q]}"
                self.hold(a, why)
                self.hold(b, why)
        var = {r: v for v, r in enumerate(roots)}
        written = {self.find(lay["dst"]) for lay in self.layers
                   if lay["op"] in ("conv", "linear") and lay["src"] != lay["dst"]}
        choices, held = [], []
        for r in roots:
            why = list(self.reasons.get(r, []))
            if not why and r not in written:
                why.append("no conv or linear map writes it")
            ch = model_choices(self.size[r], *rule) if not why else (self.size[r],)
            if not why and len(ch) == 1:
                why.append(f"too narrow ({self.size[r]}) for more than one width")
            choices.append(ch)
            held.extend((var[r], w) for w in why)
        names = ["image"] + [""] * (len(roots) - 1)
        for tied in (False, True):  # named after the first layer writing it
            for lay in self.layers:
                d = var[self.find(lay["dst"])]
                if not names[d] and (tied or lay["src"] != lay["dst"]):
                    names[d] = lay["name"]
        names = [n or f"v{v}" for v, n in enumerate(names)]
        if len(set(names)) != len(names):
            names = [n if names.count(n) == 1 else f"{n}#{v}" for v, n in enumerate(names)]
        layers = []
        for lay in self.layers:
            lay = dict(lay, src=var[self.find(lay["src"])], dst=var[self.find(lay["dst"])])
            layers.append(LayerSpec(**lay))
        # keep the default inputs (the previous layer) implicit, as built-in spaces do
        layers = [self._implicit(layers, i) for i in range(len(layers))]
        plan = tuple((q, kind, var[self.find(a)], var[self.find(b)])
                     for q, kind, a, b in self.plan if self.find(a) in var)
        params["in_channels"] = int(self.size[roots[0]])
        searchable = [v for v, c in enumerate(choices) if len(c) > 1]
        return ModelSpace(name, tuple(layers), tuple(tuple(c) for c in choices), params,
                          tuple(choices[v][-1] for v in searchable), tuple(names),
                          plan=plan, held=tuple(held))

    @staticmethod
    def _implicit(layers: list[LayerSpec], i: int) -> LayerSpec:
        default = (layers[i - 1].name,) if i else ("image",)
        lay = layers[i]
        if tuple(lay.inputs) == default:
            lay = LayerSpec(**{**lay.__dict__, "inputs": ()})
        return lay


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


def _first_line(err: BaseException) -> str:
    """An exception's message without the tracebacks that fx appends to it."""
    lines = [x for x in str(err).splitlines() if x.strip()]
    return (lines[0] if lines else "")[:300]


def _int(v) -> int:
    if isinstance(v, (tuple, list)):
        return int(v[0])
    return int(v)
