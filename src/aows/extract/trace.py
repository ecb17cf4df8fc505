"""The trace: the user's module captured by ``torch.fx`` and run once for its shapes;
a channel slot per tensor, merged where widths must agree (union-find); the layers of the
width graph and the plan of modules to slice, built node by node with the rules of
``aows.extract.rules``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from aows.extract.rules import (
    _ACT_FUNCTIONS,
    _ACT_METHODS,
    _ADD,
    _CAT,
    _MUL,
    _PASS_FUNCTIONS,
    _PASS_METHODS,
    _SHUFFLE,
    _UPSAMPLE_FUNCTIONS,
    _int,
    _plain_tensors,
    _size_query,
    _stochastic_depth_functions,
    _value,
    is_leaf,
    module_rule,
)
from aows.space import LayerSpec, SpaceError

# The reasons a width is held (``_Trace.hold`` and ``aows.extract.model``), by kind:
# (kind, what it means, whether a reason is of it); the first that matches wins.
HELD_KINDS = (
    ("concatenated", "a concatenation combined with other channels (or of held parts)",
     lambda w: w.startswith("concatenated at")),
    ("split", "split into several tensors", lambda w: "splits the channels" in w),
    ("shuffled", "channels folded into pixels or shuffled (pixel/channel shuffle)",
     lambda w: "moves channels" in w),
    ("grouped", "grouped convs: widths stay multiples of the group count",
     lambda w: w.startswith("grouped conv")),
    ("fixed-size", "combined with a tensor of fixed size",
     lambda w: w.startswith("a tensor of fixed size")),
    ("unknown op", "read or written by an op aows does not slice",
     lambda w: w.endswith("is an op aows does not slice")),
    ("read directly", "a module's tensors are also read by the forward itself",
     lambda w: "are also read directly" in w),
    ("input", "the input image's channels", lambda w: w == "the input image's channels"),
    ("output", "the network's output (its classes or channels)", lambda w: w.startswith(
        "the network's output")),
    ("not written", "no conv or linear map writes it", lambda w: w.startswith("no conv")),
    ("too narrow", "too narrow for more than one width", lambda w: w.startswith("too narrow")),
)


def held_kind(why: str) -> tuple[str, str]:
    """(kind, what it means) of a reason a width is held; ("other", the reason) else."""
    return next(((k, m) for k, m, test in HELD_KINDS if test(why)), ("other", why))


def summarise_held(held: list[dict]) -> list[dict]:
    """The held widths (``ModelSpace.held_fixed``) by kind of reason, most first: kind,
    meaning, count and names of the widths (a width held for reasons of several kinds
    counts in each)."""
    kinds: dict[tuple[str, str], list[str]] = {}
    for h in held:
        for key in dict.fromkeys(held_kind(w) for w in h["reasons"]):
            kinds.setdefault(key, []).append(h["name"])
    rows = [{"kind": k, "meaning": m, "count": len(names), "names": names}
            for (k, m), names in kinds.items()]
    return sorted(rows, key=lambda r: -r["count"])


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with BatchNorm subclasses (sliced as BatchNorm) and registered
    module types kept whole."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_leaf(m) or super().is_leaf_module(m, qualname)


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

    def __init__(self, module: nn.Module, input_shape: tuple[int, ...], name: str,
                 search_concat: bool = True):
        self.search_concat = search_concat
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
        # a concatenation's slot -> (the slots it concatenates, in channel order, and where)
        self.cats: dict[int, tuple[list[int], str]] = {}
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
            for c in (a, b):  # a concatenation merged with other channels: held whole
                if c in self.cats:
                    parts, where = self.cats.pop(c)
                    why = f"concatenated at {where}, whose channels are then combined " \
                          "with others"
                    for p in [*parts, c]:
                        self.hold(p, why)
            self.parent[max(a, b)] = min(a, b)
            self.reasons.setdefault(min(a, b), []).extend(self.reasons.pop(max(a, b), []))

    def hold(self, s: int | None, why: str) -> None:
        """Hold slot ``s`` at its width for reason ``why`` (a concatenation: its parts)."""
        if s is None:
            return
        s = self.find(s)
        if s in self.cats:
            for p in self.cats[s][0]:
                self.hold(p, why)
            return
        r = self.reasons.setdefault(s, [])
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
    def fname(node) -> str:
        """The name of a node's function or method (a layer's name, never fx's)."""
        t = node.target
        return t if isinstance(t, str) else getattr(t, "__name__", "op").strip("_") or "op"

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
        act = "none" if op in ("conv", "dwconv", "deconv", "add", "mul") else "relu"
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
                self.hold(self.slot.get(t), "the network's output (its classes or channels)")
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
        # hooks, weight norm, parametrizations: their tensors are not the ones aows slices
        rule = module_rule(type(m)) if _plain_tensors(m) else None
        if rule is None or not rule(self, node, m, x, ins):
            self.unknown(node, ins)

    def batchnorm(self, node, m: nn.BatchNorm2d, x) -> None:
        """A BatchNorm (or a subclass, sliced by its per-channel tensors) on x's channels:
        fused into the conv it follows."""
        k = self.fusable(node, x)
        self.passthrough(node, x)
        if k is not None and self.layers[k]["op"] in ("conv", "dwconv", "deconv") \
                and not self.layers[k]["bn"]:
            self.layers[k]["bn"] = True
            self.tail[k], self.prod[node] = node, k
        self.plan.append((node.target, "bn" if type(m) is nn.BatchNorm2d else "bnx",
                          self.slot[node], self.slot[node]))

    def visit_function(self, node, target, ins) -> None:
        x = ins[0]
        method = node.op == "call_method"
        if (method and target in _ACT_METHODS) or (not method and target in _ACT_FUNCTIONS):
            self.activation(node, x, (_ACT_METHODS if method else _ACT_FUNCTIONS)[target])
        elif target in _ADD or target in _MUL:
            self.elementwise(node, ins, "add" if target in _ADD else "mul")
        elif target in _CAT:
            self.concat(node, ins)
        elif target is F.adaptive_avg_pool2d or target is F.adaptive_max_pool2d:
            if not self.adaptive_pool(node, x, "maxpool" if target is F.adaptive_max_pool2d
                                      else "avgpool"):
                self.unknown(node, ins)
        elif (method and target == "mean") or target is torch.mean:
            if not self.global_pool(node, x):
                self.unknown(node, ins)
        elif not method and (target in _UPSAMPLE_FUNCTIONS or target is F.pad):
            a = [*node.args, None, None, None, None]
            if target is F.pad:
                mode = _value(node.kwargs.get("mode", a[2])) or "constant"
            elif target is F.interpolate:
                mode = _value(node.kwargs.get("mode", a[3])) or "nearest"
            else:
                mode = "bilinear" if target is F.upsample_bilinear else _value(
                    node.kwargs.get("mode", a[3])) or "nearest"
            if len(ins) != 1 or not isinstance(mode, str) or not self.resize(
                    node, x, "pad" if target is F.pad else "upsample", mode):
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
              or (not method and target in _PASS_FUNCTIONS)) and self.keeps(node, x) \
                and len(self.tensors(node)) == 1:  # no tensor of fixed size beside x
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
                op in ("conv", "dwconv", "deconv", "add", "mul")
                or (op == "linear" and act != "relu")):
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

    def deconv(self, node, m: nn.ConvTranspose2d, x) -> None:
        """A transposed conv: a new width at its output, weight (in, out, kH, kW); its
        output size (stride, padding, output_padding) is the one the trace measured."""
        s_in, s_out = self.slot[x], self.new(m.out_channels)
        self.slot[node] = s_out
        pad = _int(m.padding)
        extra = {"bias": m.bias is not None, "bn": False, "size_out": self.res(node),
                 "pad": pad or None}
        if m.groups > 1:
            why = (f"grouped conv '{node.target}' (groups={m.groups}): its widths must stay "
                   "multiples of the group count")
            self.hold(s_in, why)
            self.hold(s_out, why)
            extra["groups"] = m.groups
        else:
            self.plan.append((node.target, "deconv", s_in, s_out))
        self.add_layer(node, "deconv", self.name_of(node, "deconv"), [x], s_in, s_out,
                       kernel=_int(m.kernel_size), stride=_int(m.stride), **extra)

    def resize(self, node, x, op: str, mode: str) -> bool:
        """An upsampling or a padding: the channels kept, the resolution changed (a tied
        layer of its own, so that what reads it reads at its size)."""
        a, b = self.shape(x), self.shape(node)
        if a is None or b is None or len(a) != 4 or len(b) != 4 or a[:2] != b[:2]:
            return False
        if a == b:
            self.passthrough(node, x)
            return True
        s = self.slot[node] = self.slot[x]
        self.add_layer(node, op, self.name_of(node, op), [x], s, s,
                       size_out=self.res(node), mode=mode)
        return True

    def adaptive_pool(self, node, x, op: str) -> bool:
        """An adaptive pool: global (1x1), else a pool of kernel = stride = in / out."""
        if self.global_pool(node, x):
            return True
        a, b = self.shape(x), self.shape(node)
        if a is None or b is None or len(a) != 4 or len(b) != 4 or a[:2] != b[:2] or \
                a[2] != a[3] or b[2] != b[3] or a[2] % b[2]:
            return False
        k = a[2] // b[2]
        self.pool(node, x, op, k, k, 0)
        return True

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
        """A concatenation along the channels: a slot of its own whose parts are its
        inputs' slots (a concatenation among them: its parts), in order; what reads it
        reads the leading slice of every part at its offset."""
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        out = self.shape(node)
        if dim not in (1, 1 - len(out)) or len(out) not in (2, 4):
            return self.unknown(node, ins)
        s = self.new(out[1])
        if self.search_concat:
            parts: list[int] = []
            for t in ins:
                p = self.find(self.slot[t])
                parts.extend(self.cats[p][0] if p in self.cats else [p])
            self.cats[s] = (parts, self.where(node))
        else:  # held: the inputs and the result keep their widths
            why = f"concatenated at {self.where(node)}"
            for slot in [*(self.slot[t] for t in ins), s]:
                self.hold(slot, why)
        self.slot[node] = s
        self.add_layer(node, "cat", self.name_of(node, "cat"), ins, s, s,
                       in_res=self.res(node))

    def unknown(self, node, ins) -> None:
        kind = type(self.modules[node.target]) if node.op == "call_module" else node.target
        why = f"{self.where(node)} is an op aows does not slice"
        if kind in _SHUFFLE:
            why = (f"{self.where(node)} moves channels into pixels or across groups: a "
                   "leading slice of its channels is not a slice of its result")
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
        self.add_layer(node, "other", self.name_of(node, self.fname(node)), ins, src, s,
                       in_res=self.res(ins[0]), size_out=self.res(node))


def _first_line(err: BaseException) -> str:
    """An exception's message without the tracebacks that fx appends to it."""
    lines = [x for x in str(err).splitlines() if x.strip()]
    return (lines[0] if lines else "")[:300]
