"""Residual search spaces: ResNet-18, ResNet-50, MobileNet-v2, and spaces read from YAML.

Each is laid out like torchvision's network of that name (same convolutions, strides,
shortcuts), with every width tied by a residual addition made one variable: a ResNet
stage's output width is shared by its downsample (or stem) conv and the last conv of
every block, an inverted residual's expansion width by its expand and depthwise convs.
Width choices follow Table D.1 of the AOWS supplementary: multiples of each 1.0x width from
``min_width`` to ``max_width`` in ``levels`` steps, rounded to ``divisor``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import yaml

from aows.defaults import DEFAULT_RESOLUTION
from aows.defaults import SPACE_WIDTH_RULE as _W
from aows.graph import MAX_WIDTH, WidthGraph
from aows.registry import Registry
from aows.size import size_warning
from aows.space import OPS, TIED_OPS, LayerSpec, SearchSpace, SpaceError, width_choices

# --------------------------------------------------------------------- registry
SPACES: Registry = Registry("search space", SpaceError)


def register_space(fn: Callable[..., SearchSpace]) -> Callable[..., SearchSpace]:
    """Add a built-in space (a function returning a ``SearchSpace``) under its name."""
    return SPACES.register(fn.__name__, fn)


# (output width, stride) of MobileNet-v1's 13 depthwise-separable blocks.
_MBV1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


@register_space
def mobilenet_v1(min_width: float = _W["min_width"], max_width: float = _W["max_width"],
                 levels: int = _W["levels"], divisor: int = _W["divisor"],
                 resolution: int = DEFAULT_RESOLUTION, classes: int = 1000,
                 in_channels: int = 3) -> SearchSpace:
    """MobileNet-v1: stem conv, 13 depthwise-separable blocks, pool + classifier.

    15 layers, 14 searchable widths; the defaults reproduce Table D.1 of the AOWS supplementary.
    """
    if resolution < 32 or resolution % 32:
        raise SpaceError(f"resolution {resolution} must be a multiple of 32 (>= 32)")
    if not 0 < min_width <= max_width:
        raise SpaceError("need 0 < min_width <= max_width")
    bases = [32] + [w for w, _ in _MBV1_BLOCKS]
    layers = [LayerSpec("stem", "conv", 3, 2, resolution)]
    res = layers[0].out_res
    for k, (_, stride) in enumerate(_MBV1_BLOCKS, start=1):
        layers.append(LayerSpec(f"block{k}", "dwsep", 3, stride, res))
        res = layers[-1].out_res
    layers.append(LayerSpec("classifier", "linear", 1, 1, res, bias=True))
    choices = [(in_channels,)]
    choices += [width_choices(b, min_width, max_width, levels, divisor) for b in bases]
    choices.append((classes,))
    params = dict(min_width=min_width, max_width=max_width, levels=levels, divisor=divisor,
                  resolution=resolution, classes=classes, in_channels=in_channels)
    return SearchSpace("mobilenet_v1", tuple(layers), tuple(choices), params, tuple(bases))


class GraphBuilder:
    """Builds a graph space layer by layer: a layer reads the outputs of earlier layers,
    its input width variable is theirs and its resolution follows from theirs."""

    def __init__(self, name: str, resolution: int, in_channels: int, classes: int,
                 min_width: float, max_width: float, levels: int, divisor: int):
        if not 0 < min_width <= max_width:
            raise SpaceError(f"need 0 < min_width <= max_width, got {min_width}, {max_width}")
        if levels < 1 or divisor < 1:
            raise SpaceError("levels and divisor must be at least 1")
        self.name = name
        self.rule = (min_width, max_width, levels, divisor)
        self.params = dict(min_width=min_width, max_width=max_width, levels=levels,
                           divisor=divisor, resolution=resolution, classes=classes,
                           in_channels=in_channels)
        self.var_names: list[str] = []
        self.choices: list[tuple[int, ...]] = []
        self.bases: list[int | None] = []
        self.layers: list[LayerSpec] = []
        self.outs: dict[str, tuple[int, int]] = {"image": (self.var("image", (in_channels,)),
                                                           resolution)}
        self.classes = classes
        self.last: str = "image"

    def var(self, name: str, choices: tuple[int, ...] | None = None,
            base: int | None = None) -> int:
        """A new width variable: explicit ``choices`` or the Table D.1 rule from ``base``."""
        if name in self.var_names:
            raise SpaceError(f"two width variables are named '{name}'")
        if choices is None:
            choices = width_choices(base, *self.rule)
        self.var_names.append(name)
        self.choices.append(tuple(int(c) for c in choices))
        self.bases.append(base)
        return len(self.var_names) - 1

    def layer(self, name: str, op: str, out: int | None = None,
              inputs: tuple[str, ...] | None = None, kernel: int = 1, stride: int = 1,
              act: str = "relu", bias: bool = False) -> str:
        """Add a layer reading ``inputs`` (default: the previous layer) and writing the
        width variable ``out`` (default for width-keeping ops: its input's)."""
        inputs = tuple(inputs) if inputs else (self.last,)
        for r in inputs:
            if r not in self.outs:
                raise SpaceError(f"layer '{name}' reads '{r}', which is not a layer defined "
                                 "before it (layers are listed in execution order)")
        src, res = self.outs[inputs[0]]
        if out is None:
            if op not in TIED_OPS:
                raise SpaceError(f"layer '{name}': a {op} needs its output width variable")
            out = src
        default = (self.layers[-1].name,) if self.layers else ("image",)
        spec = LayerSpec(name, op, kernel, stride, res, bias, src, out,
                         () if inputs == default else inputs, act)
        self.layers.append(spec)
        self.outs[name] = (out, spec.out_res)
        self.last = name
        return name

    def classifier(self, name: str = "fc") -> str:
        out = self.var("classes", (self.classes,))
        return self.layer(name, "linear", out, bias=True)

    def build(self) -> SearchSpace:
        searchable = [v for v, c in enumerate(self.choices) if len(c) > 1]
        bases = [self.bases[v] for v in searchable]
        space = SearchSpace(self.name, tuple(self.layers), tuple(self.choices),
                            dict(self.params),
                            tuple(bases) if all(b is not None for b in bases) else None,
                            tuple(self.var_names))
        check_solvable(space)
        return space


def check_solvable(space: SearchSpace) -> None:
    """Refuse a graph the exact solvers cannot handle (too wide an elimination), when the
    space is made rather than at the first search."""
    unary, pairwise = space.cost_terms([t * 0.0 for t in space.unknowns()[1]])
    width = WidthGraph(unary, pairwise).width()
    if width > MAX_WIDTH:
        raise SpaceError(
            f"space '{space.name}': its width graph has induced width {width} (above "
            f"{MAX_WIDTH}), which the exact solvers do not handle and aows does not "
            "approximate; tie fewer widths together (one variable per residual group) or "
            "give some variables a single choice")


def _check_resolution(resolution: int) -> None:
    if resolution < 32 or resolution % 32:
        raise SpaceError(f"resolution {resolution} must be a multiple of 32 (>= 32)")


def _builder(name, resolution, in_channels, classes, min_width, max_width, levels, divisor):
    _check_resolution(resolution)
    return GraphBuilder(name, resolution, in_channels, classes, min_width, max_width,
                        levels, divisor)


@register_space
def resnet18(min_width: float = _W["min_width"], max_width: float = _W["max_width"],
             levels: int = _W["levels"], divisor: int = _W["divisor"],
             resolution: int = DEFAULT_RESOLUTION, classes: int = 1000,
             in_channels: int = 3) -> SearchSpace:
    """ResNet-18 (torchvision layout): stem conv 7x7/2 + max pool, four stages of two basic
    blocks (64, 128, 256, 512), pool + classifier. Variables: the four stage widths (the
    stem is tied to stage 1 by its identity shortcuts) and each block's inner width."""
    b = _builder("resnet18", resolution, in_channels, classes, min_width, max_width, levels,
                 divisor)
    s = b.var("layer1", base=64)
    b.layer("conv1", "conv", s, kernel=7, stride=2)
    x = b.layer("maxpool", "maxpool", kernel=3, stride=2)
    for k, (width, blocks) in enumerate([(64, 2), (128, 2), (256, 2), (512, 2)], start=1):
        for j in range(blocks):
            p = f"layer{k}.{j}"
            stride = 2 if j == 0 and k > 1 else 1
            a = b.var(f"{p}.conv1", base=width)
            b.layer(f"{p}.conv1", "conv", a, (x,), kernel=3, stride=stride)
            if stride != 1:
                s = b.var(f"layer{k}", base=width)
            c2 = b.layer(f"{p}.conv2", "conv", s, kernel=3, act="none")
            short = x
            if stride != 1:
                short = b.layer(f"{p}.downsample", "conv", s, (x,), stride=stride, act="none")
            x = b.layer(f"{p}.add", "add", inputs=(c2, short))
    b.classifier()
    return b.build()


@register_space
def resnet50(min_width: float = _W["min_width"], max_width: float = _W["max_width"],
             levels: int = _W["levels"], divisor: int = _W["divisor"],
             resolution: int = DEFAULT_RESOLUTION, classes: int = 1000,
             in_channels: int = 3) -> SearchSpace:
    """ResNet-50 (torchvision layout, stride on the 3x3 conv): stem conv 7x7/2 + max pool,
    stages of 3, 4, 6, 3 bottlenecks (1x1, 3x3, 1x1; expansion 4). Variables: the stem
    width, the four stage widths (256 ... 2048) and two inner widths per block."""
    b = _builder("resnet50", resolution, in_channels, classes, min_width, max_width, levels,
                 divisor)
    s = b.var("conv1", base=64)
    b.layer("conv1", "conv", s, kernel=7, stride=2)
    x = b.layer("maxpool", "maxpool", kernel=3, stride=2)
    for k, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        stride = 1 if k == 1 else 2
        for j in range(blocks):
            p = f"layer{k}.{j}"
            st = stride if j == 0 else 1
            a = b.var(f"{p}.conv1", base=planes)
            b.layer(f"{p}.conv1", "conv", a, (x,))
            c = b.var(f"{p}.conv2", base=planes)
            b.layer(f"{p}.conv2", "conv", c, kernel=3, stride=st)
            if j == 0:
                s = b.var(f"layer{k}", base=planes * 4)
            c3 = b.layer(f"{p}.conv3", "conv", s, act="none")
            short = x
            if j == 0:
                short = b.layer(f"{p}.downsample", "conv", s, (x,), stride=st, act="none")
            x = b.layer(f"{p}.add", "add", inputs=(c3, short))
    b.classifier()
    return b.build()


# (expansion t, output width c, blocks n, stride s) of MobileNet-v2 (Sandler et al.)
_MBV2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
         (6, 160, 3, 2), (6, 320, 1, 1)]


@register_space
def mobilenet_v2(min_width: float = _W["min_width"], max_width: float = _W["max_width"],
                 levels: int = _W["levels"], divisor: int = _W["divisor"],
                 resolution: int = DEFAULT_RESOLUTION, classes: int = 1000,
                 in_channels: int = 3) -> SearchSpace:
    """MobileNet-v2 (torchvision layout, ReLU6): stem conv 3x3/2 (32), 17 inverted
    residual blocks, conv 1x1 (1280), pool + classifier. Variables: the stem width, the
    width of every stage (tied by its residuals), the expansion width of every block
    with t = 6 (its expand and depthwise convs), and the last conv's width."""
    b = _builder("mobilenet_v2", resolution, in_channels, classes, min_width, max_width,
                 levels, divisor)
    s = b.var("features.0", base=32)
    x = b.layer("features.0", "conv", s, kernel=3, stride=2, act="relu6")
    k, cin = 1, 32
    for t, c, n, stride in _MBV2:
        for j in range(n):
            p = f"features.{k}"
            st = stride if j == 0 else 1
            if t != 1:
                e = b.var(f"{p}.expand", base=cin * t)
                b.layer(f"{p}.expand", "conv", e, (x,), act="relu6")
            b.layer(f"{p}.dw", "dwconv", kernel=3, stride=st, act="relu6",
                    inputs=None if t != 1 else (x,))
            if j == 0:
                s = b.var(f"stage{c}", base=c)
            y = b.layer(f"{p}.project", "conv", s, act="none")
            if st == 1 and j > 0:  # in == out: the residual
                y = b.layer(f"{p}.add", "add", inputs=(y, x), act="none")
            x, cin, k = y, c, k + 1
    last = b.var(f"features.{k}", base=1280)
    b.layer(f"features.{k}", "conv", last, act="relu6")
    b.classifier("classifier")
    return b.build()


# ------------------------------------------------------------------ space files
_FILE_KEYS = {"name", "resolution", "in_channels", "classes", "min_width", "max_width",
              "levels", "divisor", "variables", "layers"}
_LAYER_KEYS = {"name", "op", "out", "inputs", "kernel", "stride", "act", "bias"}


def load_space_file(path: str | Path, **overrides) -> SearchSpace:
    """A graph space from a YAML file (format in docs/spaces.md, "Space files")::

        name: tiny
        resolution: 32          # input size (px); also --resolution
        classes: 10             # also --classes
        variables:              # searchable widths: 1.0x width, or {choices: [...]}
          stem: 16
          inner: {choices: [8, 16, 24]}
        layers:                 # execution order; a layer reads the previous one
          - {name: stem, op: conv, kernel: 3, out: stem}
          - {name: b1, op: conv, kernel: 3, out: inner}
          - {name: b2, op: conv, kernel: 3, out: stem, act: none}
          - {name: add, op: add, inputs: [b2, stem]}
          - {name: fc, op: linear, out: classes}

    ``image`` and ``classes`` are the fixed variables; ``overrides`` (resolution,
    classes, min_width, ...) replace the file's values when not None.
    """
    path = Path(path)
    where = f"space file {path}"
    obj = _read_space_yaml(path, where)
    b = _file_builder(obj, path, where, overrides)
    variables = obj["variables"]
    if not isinstance(variables, dict) or not variables:
        raise SpaceError(f"{where}: 'variables' maps each width variable's name to its 1.0x "
                         "width or to {choices: [...]}")
    try:
        ids = _add_variables(b, variables)
        _add_layers(b, obj["layers"], ids)
        _warn_size(where, b)
        space = b.build()
    except SpaceError as err:
        raise SpaceError(f"{where}: {err}") from None
    except (TypeError, ValueError) as err:
        raise SpaceError(f"{where}: {err}") from None
    return space


def _read_space_yaml(path: Path, where: str) -> dict:
    """The file's YAML mapping, with known top-level keys only and both sections."""
    try:
        obj = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpaceError(f"{where} does not exist") from None
    except (OSError, yaml.YAMLError) as err:
        raise SpaceError(f"{where} is not readable YAML ({err})") from None
    if not isinstance(obj, dict):
        raise SpaceError(f"{where}: expected a mapping with 'variables' and 'layers'")
    unknown = sorted(set(obj) - _FILE_KEYS)
    if unknown:
        raise SpaceError(f"{where}: unknown keys {unknown}; allowed: {sorted(_FILE_KEYS)}")
    for k in ("variables", "layers"):
        if k not in obj:
            raise SpaceError(f"{where}: no '{k}' section")
    return obj


def _file_builder(obj: dict, path: Path, where: str, overrides: dict) -> GraphBuilder:
    """The builder of the file's settings, each a given override, else the file's value,
    else the default."""
    opts = {k: obj.get(k, d) for k, d in (("resolution", DEFAULT_RESOLUTION),
                                          ("in_channels", 3), ("classes", 1000),
                                          *_W.items())}
    opts.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GraphBuilder(str(obj.get("name", path.stem)), int(opts["resolution"]),
                            int(opts["in_channels"]), int(opts["classes"]),
                            float(opts["min_width"]), float(opts["max_width"]),
                            int(opts["levels"]), int(opts["divisor"]))
    except (TypeError, ValueError) as err:
        raise SpaceError(f"{where}: a setting is not a number ({err})") from None
    except SpaceError as err:
        raise SpaceError(f"{where}: {err}") from None


def _add_variables(b: GraphBuilder, variables: dict) -> dict:
    """Declare each variable (a 1.0x width or explicit choices): their ids by name."""
    ids = {"image": 0}
    for name, val in variables.items():
        if name in ("image", "classes"):
            raise SpaceError(f"'{name}' is a fixed variable of every space; rename it")
        if isinstance(val, dict) and set(val) == {"choices"}:
            ch = sorted({int(c) for c in val["choices"]})
            if not ch or ch[0] < 1:
                raise SpaceError(f"variable '{name}': choices must be positive widths")
            ids[name] = b.var(str(name), tuple(ch))
        elif isinstance(val, int) and not isinstance(val, bool) and val > 0:
            ids[name] = b.var(str(name), base=val)
        else:
            raise SpaceError(f"variable '{name}': give its 1.0x width (a positive "
                             "integer) or {choices: [w1, w2, ...]}")
    return ids


def _add_layers(b: GraphBuilder, layers, ids: dict) -> None:
    """Add the layers in order; the last one must be the linear classifier."""
    if not isinstance(layers, list) or not layers:
        raise SpaceError("'layers' is a list of layers in execution order")
    for k, spec in enumerate(layers):
        _add_layer(b, spec, k, k == len(layers) - 1, ids)
    if b.layers[-1].op != "linear" or b.var_names[-1] != "classes":
        raise SpaceError("the last layer must be the classifier: "
                         "{name: fc, op: linear, out: classes}")


def _add_layer(b: GraphBuilder, spec, k: int, last: bool, ids: dict) -> None:
    """Add layer k (a mapping of known keys, a known op, a declared output variable);
    only the last layer, a linear one, writes 'classes'."""
    if not isinstance(spec, dict) or "name" not in spec or "op" not in spec:
        raise SpaceError(f"layer {k + 1}: a mapping with at least 'name' and 'op'")
    bad = sorted(set(spec) - _LAYER_KEYS)
    if bad:
        raise SpaceError(f"layer '{spec['name']}': unknown keys {bad}; allowed: "
                         f"{sorted(_LAYER_KEYS)}")
    if spec["op"] not in OPS:
        raise SpaceError(f"layer '{spec['name']}': unknown op '{spec['op']}'; "
                         f"known ops: {list(OPS)}")
    out = spec.get("out")
    if out == "classes":
        if spec["op"] != "linear" or not last:
            raise SpaceError(f"layer '{spec['name']}': only the last layer, a "
                             "linear classifier, writes 'classes'")
        b.classifier(str(spec["name"]))
        return
    if out is not None and out not in ids:
        raise SpaceError(f"layer '{spec['name']}' writes unknown variable '{out}'; "
                         f"declared variables: {sorted(ids)}")
    inputs = spec.get("inputs")
    if isinstance(inputs, str):
        inputs = [inputs]
    b.layer(str(spec["name"]), spec["op"], None if out is None else ids[out],
            tuple(str(i) for i in inputs) if inputs else None,
            int(spec.get("kernel", 1)), int(spec.get("stride", 1)),
            str(spec.get("act", "relu")), bool(spec.get("bias", False)))


def _warn_size(where: str, b: GraphBuilder) -> None:
    """Warn, before the space is built (listing millions of latency unknowns takes
    minutes), when it is beyond what the fit and the solvers handle in reasonable time."""
    warning = size_warning(b.name, b.layers, b.choices)
    if warning is not None and (where, warning) not in _WARNED:
        _WARNED.add((where, warning))  # once per command, however often the file is read
        logging.getLogger(__name__).warning(f"{where}: {warning}")


_WARNED: set[tuple[str, str]] = set()
