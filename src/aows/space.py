"""Search spaces: width variables and the layers between them (the width graph).

A space has width *variables*, each with a finite set of choices, and layers. Layer i
reads the width variable ``src`` and writes ``dst``; a layer whose input and output are
tied (a depthwise conv, a residual addition, a pooling) has ``src == dst`` and its cost
is a unary term of that variable. Variables with one choice (the image channels, the
classes) are fixed; the others are searchable, and a configuration is one width per
searchable variable in variable order.

A *chain* (MobileNet-v1, Table D.1 of the AOWS supplementary) is the special case in which layer i
maps variable i to variable i + 1: n layers, n + 1 variables, the first and last fixed.
Residual networks tie widths: an addition makes every tensor it adds one variable, so
a ResNet stage width appears at many layer boundaries and the decision graph is no
longer a chain (the paper solves the chain; ``aows.graph`` the rest).

Every layer has a type key (op, kernel, stride, input resolution, bias, activation);
layers of the same type share latency unknowns (the paper's Section 4). Layers also
say which layers' outputs they read (``inputs``, summed by an ``add``), so a plain or
slimmable network is rebuilt from the space alone.

A concatenation (a model's space only) makes a *concatenated* variable: its width is the
sum of its parts' widths, and at a configuration its channels are the leading slice of
each part at that part's offset in the full concatenation (``channel_index``). It has
one choice (its full width) and is never searched itself. A layer that reads it costs
one latency *term* per part (``terms``): the additive approximation
L(w_1 + ... + w_k, c_out) = sum_j L_j(w_j, c_out), exact for the multiply-accumulates
of every op (linear in the input channels), fitted to timings like any other term.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from aows.errors import AowsError
from aows.terms import LatencyTerms


class SpaceError(AowsError, ValueError):
    """A configuration or file does not fit the search space."""


# Ops whose output width is their input width (src == dst): a unary latency term.
# "upsample" (interpolation, any mode) and "pad" (spatial padding) keep their input's
# channels and only change the resolution (``size_out``); ``mode`` names their kind.
TIED_OPS = ("dwconv", "add", "maxpool", "avgpool", "gap", "mul", "upsample", "pad")
# Ops that only a model's space has (``aows.extract``): a concatenation and an op aows
# does not know; both only ever touch fixed widths.
MODEL_OPS = ("cat", "other")
# "deconv": a transposed conv (groups 1), its output resolution in ``size_out``.
OPS = ("conv", "dwsep", "linear", "deconv", *TIED_OPS, *MODEL_OPS)
ACTS = ("relu", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid", "gelu", "none")


@dataclass(frozen=True)
class LayerSpec:
    """One layer. ``op`` names an op of ``aows.nn.ops`` (its plain and slimmable builders
    and FLOPs): "conv" (conv + BN + act), "dwsep" (depthwise-separable block), "dwconv"
    (depthwise conv + BN + act), "linear" (global pool + classifier), "add" (sum of its
    inputs + act), "maxpool".

    ``src``/``dst``: the width variables of its input and output (None: i and i + 1, the
    chain). ``inputs``: names of the layers whose outputs it reads ("image" for the
    network input; empty: the previous layer, or the image for the first layer).
    ``act``: the activation after it; ops that apply none (pools, the classifier) keep the
    default "relu", which means nothing there (the built-in spaces' keys).
    """

    name: str
    op: str
    kernel: int
    stride: int
    in_res: int
    bias: bool = False
    src: int | None = None
    dst: int | None = None
    inputs: tuple[str, ...] = ()
    act: str = "relu"
    # Fields that only layers found in a user's model set (``aows.extract``): a conv
    # without BatchNorm, a grouped conv, an unusual padding, an op whose output size the
    # formula below does not give, the mode of an upsampling or a padding.
    bn: bool = True
    groups: int = 1
    pad: int | None = None
    size_out: int | None = None
    mode: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))

    @property
    def type_key(self) -> str:
        key = f"{self.op}-k{self.kernel}-s{self.stride}-r{self.in_res}-b{int(self.bias)}"
        if self.op in ("add", "mul", "cat", "other"):
            key += f"-n{len(self.inputs)}"
        if self.op == "other":
            key += f"-{self.name}"  # an unknown op shares its unknowns with nothing
        if self.op in ("upsample", "pad", "deconv"):
            key += f"-o{self.out_res}"
        if self.mode is not None:
            key += f"-{self.mode}"
        for extra, on in ((f"-p{self.pad}", self.pad is not None),
                          (f"-g{self.groups}", self.groups != 1), ("-nobn", not self.bn)):
            if on:
                key += extra
        return key if self.act == "relu" else f"{key}-{self.act}"

    @property
    def padding(self) -> int:
        return self.kernel // 2 if self.pad is None else self.pad

    @property
    def out_res(self) -> int:
        if self.size_out is not None:
            return self.size_out
        if self.op in ("linear", "gap"):
            return 1
        if self.op in ("add", "mul", "cat"):
            return self.in_res
        if self.op == "deconv":  # a transposed conv, its padding 0 unless given
            return (self.in_res - 1) * self.stride - 2 * (self.pad or 0) + self.kernel
        return (self.in_res + 2 * self.padding - self.kernel) // self.stride + 1

    def describe(self) -> dict:
        """JSON-able fields; the graph fields only where set (chain files stay as they were)."""
        d = asdict(self)
        for k, default in (("src", None), ("dst", None), ("inputs", ()), ("act", "relu"),
                           ("bn", True), ("groups", 1), ("pad", None), ("size_out", None),
                           ("mode", None)):
            if d[k] == default or (k == "inputs" and not d[k]):
                del d[k]
        if "inputs" in d:
            d["inputs"] = list(d["inputs"])
        return d


def _pixels(spec: LayerSpec) -> int:
    return spec.out_res ** 2


# Multiply-accumulates per image of each op at widths (c_in, c_out): the one definition,
# torch-free, which ``aows.nn.ops`` gives each op's builders and the FLOPs fit uses.
LAYER_MACS: dict[str, Callable[[LayerSpec, int, int], float]] = {
    "conv": lambda s, i, o: s.kernel ** 2 * i * o * _pixels(s) / s.groups,
    "dwsep": lambda s, i, o: (s.kernel ** 2 * i + i * o) * _pixels(s),
    "dwconv": lambda s, i, o: s.kernel ** 2 * i * _pixels(s),
    "linear": lambda s, i, o: i * o + i * s.in_res ** 2,  # the pooling before it, too
    # a transposed conv: every input pixel scatters a k x k x c_out patch per input channel
    "deconv": lambda s, i, o: s.kernel ** 2 * i * o * s.in_res ** 2 / s.groups,
    **{op: (lambda s, i, o: 0) for op in ("gap", "avgpool", "maxpool", "mul", "add", "cat",
                                          "other", "upsample", "pad")},
}


@dataclass(frozen=True)
class SearchSpace(LatencyTerms):
    """Width variables (``choices``: one tuple per variable) and the layers between them.

    In a chain (no layer sets ``src``/``dst``), variable i is the input of layer i, the
    first and last variables are fixed and every inner one is searchable. In a graph
    space the variables with one choice are fixed and the others searchable.
    ``base_widths``: the 1.0x width of every searchable variable (uniform multiplier).
    """

    name: str
    layers: tuple[LayerSpec, ...]
    choices: tuple[tuple[int, ...], ...]
    params: dict = field(default_factory=dict, compare=False, hash=False)
    base_widths: tuple[int, ...] | None = None
    var_names: tuple[str, ...] | None = None
    # (variable, its parts): a concatenated variable and the variables it concatenates,
    # in channel order (a part may repeat); see the module's docstring
    concats: tuple[tuple[int, tuple[int, ...]], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "concats", tuple((int(v), tuple(int(p) for p in ps))
                                                  for v, ps in self.concats))
        n = len(self.choices)
        for c in self.choices:
            if not c or list(c) != sorted(set(c)) or min(c) < 1:
                raise SpaceError(f"width choices must be positive and strictly increasing: {c}")
        if self.is_chain:
            if n != len(self.layers) + 1:
                raise SpaceError("a chain needs exactly one more width variable than layers")
            if len(self.choices[0]) != 1 or len(self.choices[-1]) != 1:
                raise SpaceError("the first and last width variables must be fixed (one choice)")
        else:
            _check_graph(self)
        if self.var_names is not None and len(self.var_names) != n:
            raise SpaceError(f"{len(self.var_names)} variable names for {n} variables")
        if self.base_widths is not None and len(self.base_widths) != self.n_searchable:
            raise SpaceError(f"{len(self.base_widths)} base widths for {self.n_searchable} "
                             "searchable variables")

    # ----------------------------------------------------------------- shape
    @functools.cached_property
    def is_chain(self) -> bool:
        return all(layer.src is None and layer.dst is None and not layer.inputs
                   for layer in self.layers)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_vars(self) -> int:
        return len(self.choices)

    @property
    def classes(self) -> int:
        """The network's output width (the classes): the last layer's one choice."""
        return self.choices[self.dst(self.n_layers - 1)][0]

    def src(self, i: int) -> int:
        """Width variable read by layer i."""
        return self._ends[0][i]

    def dst(self, i: int) -> int:
        """Width variable written by layer i."""
        return self._ends[1][i]

    @functools.cached_property
    def _ends(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        src = tuple(i if layer.src is None else layer.src for i, layer in enumerate(self.layers))
        dst = tuple(i + 1 if layer.dst is None else layer.dst
                    for i, layer in enumerate(self.layers))
        return src, dst

    @functools.cached_property
    def _choice_index(self) -> tuple[dict[int, int], ...]:
        """Per searchable variable: width -> choice index (validation and indexing)."""
        return tuple({w: k for k, w in enumerate(ch)} for ch in self.searchable_choices)

    @functools.cached_property
    def searchable(self) -> tuple[int, ...]:
        """Indices of the searchable variables, in order."""
        if self.is_chain:
            return tuple(range(1, self.n_vars - 1))
        return tuple(v for v, c in enumerate(self.choices) if len(c) > 1)

    @property
    def n_searchable(self) -> int:
        return len(self.searchable)

    @property
    def searchable_choices(self) -> tuple[tuple[int, ...], ...]:
        return tuple(self.choices[v] for v in self.searchable)

    @property
    def names(self) -> tuple[str, ...]:
        """A name per variable: given, or that of the first layer writing it."""
        if self.var_names is not None:
            return self.var_names
        out = ["image"] + [""] * (self.n_vars - 1)
        for i, layer in enumerate(self.layers):
            d = self.dst(i)
            if not out[d]:
                out[d] = layer.name
        if self.is_chain:
            out[-1] = "classes"
        return tuple(o or f"v{v}" for v, o in enumerate(out))

    @property
    def sizes(self) -> list[int]:
        """Number of choices of every variable, fixed ones included."""
        return [len(c) for c in self.choices]

    def n_configurations(self) -> int:
        return int(np.prod([len(c) for c in self.searchable_choices], dtype=float))

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        """Shape of the network input: (batch, image channels, resolution, resolution)."""
        res = self.layers[0].in_res
        return (batch, self.choices[self.src(0)][0], res, res)

    # ------------------------------------------------------- configurations
    def _what(self, j: int) -> str:
        """How errors name searchable variable j (0-based): "layer 3" in a chain."""
        if self.is_chain:
            return f"layer {j + 1}"
        return f"variable {j + 1} ('{self.names[self.searchable[j]]}')"

    def validate(self, config: Sequence[int]) -> tuple[int, ...]:
        """Return the configuration as a tuple of ints, or raise one clear error."""
        config = tuple(int(c) for c in config)
        if len(config) != self.n_searchable:
            unit = "layers" if self.is_chain else "width variables"
            raise SpaceError(
                f"configuration has {len(config)} widths but space '{self.name}' has "
                f"{self.n_searchable} searchable {unit}; give one width per "
                f"{unit[:-1]} (`aows space show` lists them)"
            )
        for j, (c, allowed) in enumerate(zip(config, self._choice_index)):
            if c not in allowed:
                raise SpaceError(
                    f"width {c} of {self._what(j)} is not in space '{self.name}'; "
                    f"allowed widths for {self._what(j)}: {list(allowed)}"
                )
        return config

    def full_widths(self, config: Sequence[int]) -> tuple[int, ...]:
        """Width of every variable (fixed ones included)."""
        config = self.validate(config)
        out = [c[0] for c in self.choices]
        for v, w in zip(self.searchable, config):
            out[v] = w
        for v, ps in self.concats:
            out[v] = sum(out[p] for p in ps)
        return tuple(out)

    # ------------------------------------------------------- concatenations
    @functools.cached_property
    def parts(self) -> dict[int, tuple[int, ...]]:
        """Concatenated variable -> the variables it concatenates, in channel order."""
        return dict(self.concats)

    def part_spans(self, v: int) -> list[tuple[int, int, int]]:
        """(part, start, stop) of every part of the concatenated variable ``v``: where its
        channels sit in the full concatenation."""
        out, off = [], 0
        for p in self.parts[v]:
            out.append((p, off, off + self.choices[p][-1]))
            off = out[-1][2]
        return out

    def channel_index(self, v: int, widths: Sequence[int]) -> list[int] | None:
        """The channels of variable ``v``'s full tensor a configuration keeps (``widths``:
        ``full_widths``): None for a plain variable (its leading ``widths[v]``); for a
        concatenated one, the leading slice of every part at its offset."""
        if v not in self.parts:
            return None
        return [c for p, start, _ in self.part_spans(v) for c in range(start, start + widths[p])]

    def indices(self, config: Sequence[int]) -> np.ndarray:
        """Choice index of every variable (fixed ones are 0)."""
        config = self.validate(config)
        out = np.zeros(self.n_vars, dtype=np.int64)
        out[list(self.searchable)] = [lut[w] for lut, w in zip(self._choice_index, config)]
        return out

    def indices_many(self, configs: Sequence[Sequence[int]]) -> np.ndarray:
        """(K, n_vars) choice indices; vectorised through per-variable lookup tables."""
        arr = np.asarray(configs, dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != self.n_searchable:
            raise SpaceError(
                f"expected configurations of {self.n_searchable} widths for space '{self.name}'"
            )
        out = np.zeros((arr.shape[0], self.n_vars), dtype=np.int64)
        for j, (v, allowed) in enumerate(zip(self.searchable, self.searchable_choices)):
            lut = self._choice_index[j]
            col = arr[:, j]
            try:
                out[:, v] = [lut[int(w)] for w in col]
            except KeyError:
                bad = next(int(w) for w in col if int(w) not in lut)
                raise SpaceError(
                    f"width {bad} of {self._what(j)} is not in space '{self.name}'; "
                    f"allowed widths for {self._what(j)}: {list(allowed)}"
                ) from None
        return out

    def config_from_indices(self, idx: Sequence[int]) -> tuple[int, ...]:
        """Inverse of ``indices`` (accepts one index per variable or per searchable one)."""
        idx = list(idx)
        if len(idx) == self.n_vars and len(idx) != self.n_searchable:
            idx = [idx[v] for v in self.searchable]
        return tuple(ch[int(k)] for k, ch in zip(idx, self.searchable_choices))

    def widest(self) -> tuple[int, ...]:
        return tuple(ch[-1] for ch in self.searchable_choices)

    def median_config(self) -> tuple[int, ...]:
        """The median choice of every variable: the anchor network of the timing protocol."""
        return tuple(ch[len(ch) // 2] for ch in self.searchable_choices)

    def narrowest(self) -> tuple[int, ...]:
        return tuple(ch[0] for ch in self.searchable_choices)

    def uniform_multiplier_configs(self) -> list[tuple[float, tuple[int, ...]]]:
        """(multiplier, configuration) of uniformly scaled networks, narrowest first: every
        width the choice nearest to multiplier x its 1.0x width."""
        if self.base_widths is None:  # no 1.0x widths: scale the choice index instead
            levels = max(len(c) for c in self.searchable_choices)
            return [(f, tuple(ch[round(f * (len(ch) - 1))] for ch in self.searchable_choices))
                    for f in np.linspace(0, 1, levels)]
        lo = self.params.get("min_width", 0.0)
        hi = self.params.get("max_width", 1.0)
        levels = int(self.params.get("levels", 14))
        out = []
        for m in np.linspace(lo, hi, levels):
            cfg = self.multiplier_config(m)
            if not out or out[-1][1] != cfg:
                out.append((float(m), cfg))
        return out

    def multiplier_config(self, multiplier: float) -> tuple[int, ...]:
        """The uniformly scaled network: every width the choice nearest to ``multiplier``
        x its 1.0x width (the narrower of two equally near)."""
        if self.base_widths is None:
            raise SpaceError(f"space '{self.name}' has no 1.0x widths to scale")
        return tuple(min(ch, key=lambda w: (abs(w - b * multiplier), w))
                     for ch, b in zip(self.searchable_choices, self.base_widths))

    def uniform_sample(self, rng: np.random.Generator, count: int) -> list[tuple[int, ...]]:
        cols = [rng.integers(0, len(ch), size=count) for ch in self.searchable_choices]
        return [tuple(ch[c[k]] for ch, c in zip(self.searchable_choices, cols))
                for k in range(count)]

    def layer_flops(self, i: int, cin: int, cout: int) -> float:
        """Multiply-accumulates of layer i at widths (cin, cout), per image
        (``LAYER_MACS``: residual additions, pooling and gates count 0)."""
        return float(LAYER_MACS[self.layers[i].op](self.layers[i], cin, cout))

    def flops(self, config: Sequence[int]) -> float:
        w = self.full_widths(config)
        return sum(self.layer_flops(i, w[self.src(i)], w[self.dst(i)])
                   for i in range(self.n_layers))

    # ------------------------------------------------------------ identity
    def describe(self) -> dict:
        """JSON-able description: enough to rebuild and to check compatibility."""
        out = {
            "name": self.name,
            "params": dict(self.params),
            "layers": [layer.describe() for layer in self.layers],
            "choices": [list(c) for c in self.choices],
            "base_widths": list(self.base_widths) if self.base_widths else None,
        }
        if self.var_names is not None:
            out["var_names"] = list(self.var_names)
        if self.concats:
            out["concats"] = [[v, list(ps)] for v, ps in self.concats]
        return out

    def fingerprint(self) -> str:
        ident = {k: v for k, v in self.describe().items()
                 if k in ("layers", "choices", "concats")}
        blob = json.dumps(ident, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_description(cls, desc: dict) -> SearchSpace:
        """The space a file describes, as data (its layers and choices). A model's space
        needs its module to build networks: ``aows.catalogue.space_from_description``
        extracts it again."""
        try:
            return cls(
                name=desc["name"],
                layers=tuple(LayerSpec(**layer) for layer in desc["layers"]),
                choices=tuple(tuple(int(w) for w in c) for c in desc["choices"]),
                params=dict(desc.get("params", {})),
                base_widths=tuple(desc["base_widths"]) if desc.get("base_widths") else None,
                var_names=tuple(desc["var_names"]) if desc.get("var_names") else None,
                concats=tuple((v, tuple(ps)) for v, ps in desc.get("concats", ())),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise SpaceError(f"malformed search-space description: {err}") from None

    def mismatches(self, given: dict) -> list[tuple[str, object, object]]:
        """(parameter, given value, this space's) for every parameter in ``given`` (None:
        not given) that this space was not made with; ``classes`` is compared with the
        output width, ``input_shape`` with (in_channels, resolution, resolution) when
        the space records none, and ``name`` with the space's name."""
        res = self.params.get("resolution")
        have = {**self.params, "name": self.name, "classes": self.classes,
                "input_shape": self.params.get("input_shape") or (
                    [self.params.get("in_channels", 3), res, res] if res else None)}
        out = []
        for k, v in given.items():
            h = have.get(k)
            if v is None or h is None:
                continue
            same = (list(v) == list(h) if isinstance(v, (list, tuple)) else
                    float(v) == float(h) if isinstance(v, (int, float)) else v == h)
            if not same:
                out.append((k, v, h))
        return out

    def check_same(self, other: SearchSpace, what: str = "file") -> None:
        """Raise if ``other`` is not this space (same layers and choices)."""
        if self.fingerprint() != other.fingerprint():
            hint = ""
            if other.params.get("classes") != self.params.get("classes"):
                hint = (f" (classes {other.params.get('classes')} there, "
                        f"{self.params.get('classes')} here: --classes)")
            raise SpaceError(
                f"the {what} was made for space '{other.name}' {other.params or ''} but "
                f"'{self.name}' {self.params or ''} was requested{hint}; use the matching "
                f"--space/--resolution/--classes or regenerate the {what}"
            )


def _check_graph(space: SearchSpace) -> None:
    """Dataflow and widths of a graph space: every layer names its variables, reads
    layers defined before it, and its input width and resolution match what it reads."""
    n = space.n_vars
    for v, ps in space.concats:
        if not 0 <= v < n or not ps or any(not 0 <= p < n or p in space.parts or p == v
                                            for p in ps):
            raise SpaceError(f"concatenated variable {v}: its parts {list(ps)} must be "
                             "existing variables that are not concatenations themselves")
        full = sum(space.choices[p][-1] for p in ps)
        if space.choices[v] != (full,):
            raise SpaceError(f"concatenated variable '{space.names[v]}' has choices "
                             f"{list(space.choices[v])}; it has one, the sum of its parts' "
                             f"widest widths ({full})")
    out_of: dict[str, tuple[int, int]] = {}  # layer name -> (width variable, resolution)
    for i, layer in enumerate(space.layers):
        where = f"layer '{layer.name}'"
        if layer.op not in OPS:
            raise SpaceError(f"{where}: unknown op '{layer.op}'; known ops: {list(OPS)}")
        if layer.act not in ACTS:
            raise SpaceError(f"{where}: unknown activation '{layer.act}'; use one of {ACTS}")
        if layer.src is None or layer.dst is None:
            raise SpaceError(f"{where}: a graph space gives every layer its src and dst "
                             "width variables")
        for v in (layer.src, layer.dst):
            if not 0 <= v < n:
                raise SpaceError(f"{where}: width variable {v} does not exist "
                                 f"(the space has {n})")
        if layer.name in out_of or layer.name == "image":
            raise SpaceError(f"{where}: two layers have this name; names must be unique")
        if layer.op in TIED_OPS and layer.src != layer.dst:
            raise SpaceError(f"{where}: a {layer.op} keeps its width, so its input and "
                             "output must be the same width variable")
        inputs = layer.inputs or ((space.layers[i - 1].name,) if i else ("image",))
        many = ("add", "mul", "cat", "other")
        if layer.op not in many and len(inputs) != 1:
            raise SpaceError(f"{where}: a {layer.op} reads one tensor, got {list(inputs)}; "
                             "sum tensors with an 'add' layer")
        if layer.op in ("add", "mul") and len(inputs) < 2:
            raise SpaceError(f"{where}: an {layer.op} needs at least two inputs")
        if layer.op in MODEL_OPS:
            # a concatenation or an unknown op: reads any widths (all of them fixed)
            for v in (layer.src, layer.dst):
                if len(space.choices[v]) != 1:
                    raise SpaceError(f"{where}: a {layer.op} layer only touches fixed widths "
                                     f"(variable '{space.names[v]}' has several choices)")
            out_of[layer.name] = (layer.dst, layer.out_res)
            continue
        for name in inputs:
            if name == "image":
                got = (layer.src, space.layers[0].in_res)
                if len(space.choices[layer.src]) != 1:
                    raise SpaceError(f"{where}: reads the image, whose channels are fixed, "
                                     "so its input variable needs exactly one choice")
            elif name in out_of:
                got = out_of[name]
            else:
                raise SpaceError(f"{where}: reads '{name}', which is not a layer defined "
                                 "before it (layers are listed in execution order)")
            if got[0] != layer.src:
                raise SpaceError(f"{where}: reads '{name}', whose width is variable "
                                 f"'{space.names[got[0]]}', but its input is variable "
                                 f"'{space.names[layer.src]}'; tie them (one variable)")
            if got[1] != layer.in_res and not (layer.op in ("add", "mul") and got[1] == 1):
                raise SpaceError(f"{where}: reads '{name}' at {got[1]} px but expects "
                                 f"{layer.in_res} px")
        out_of[layer.name] = (layer.dst, layer.out_res)
    last = space.layers[-1]
    if len(space.choices[last.dst]) != 1:
        raise SpaceError(f"the last layer '{last.name}' writes the network's output: its "
                         "width variable (the classes) needs exactly one choice")


def width_choices(base: int, min_mult: float, max_mult: float, levels: int,
                  divisor: int) -> tuple[int, ...]:
    """round(base * linspace(min, max, levels) / divisor) * divisor, at least divisor,
    de-duplicated (Table D.1 of the AOWS supplementary with the defaults)."""
    raw = np.round(base * np.linspace(min_mult, max_mult, levels) / divisor) * divisor
    return tuple(sorted({max(divisor, int(v)) for v in raw}))
