"""Search spaces: a chain of layers, each mapping c_i channels to c_{i+1}.

A space has n layers and n + 1 width *nodes*: node 0 is the image (fixed), node n the
classes (fixed), nodes 1..n-1 are searchable with a finite set of choices each.
Every layer has a type key (op, kernel, stride, input resolution, bias); layers of the
same type share latency unknowns (method.md section 1).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from aows.errors import AowsError


class SpaceError(AowsError, ValueError):
    """A configuration or file does not fit the search space."""


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the chain. ``op`` names a builder in ``aows.nn``."""

    name: str
    op: str  # "conv" (stem), "dwsep" (depthwise-separable block), "linear" (pool + classifier)
    kernel: int
    stride: int
    in_res: int
    bias: bool = False

    @property
    def type_key(self) -> str:
        return f"{self.op}-k{self.kernel}-s{self.stride}-r{self.in_res}-b{int(self.bias)}"

    @property
    def out_res(self) -> int:
        if self.op == "linear":
            return 1
        return (self.in_res + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1


@dataclass(frozen=True)
class SearchSpace:
    """Layers plus the width choices of every node (``choices[0]`` and ``choices[-1]`` fixed)."""

    name: str
    layers: tuple[LayerSpec, ...]
    choices: tuple[tuple[int, ...], ...]
    params: dict = field(default_factory=dict, compare=False, hash=False)
    base_widths: tuple[int, ...] | None = None  # the 1.0x widths (uniform-multiplier baseline)

    def __post_init__(self):
        if len(self.choices) != len(self.layers) + 1:
            raise SpaceError("a space needs exactly one more width node than layers")
        if len(self.choices[0]) != 1 or len(self.choices[-1]) != 1:
            raise SpaceError("the first and last width nodes must be fixed (one choice)")
        for c in self.choices:
            if list(c) != sorted(set(c)) or min(c) < 1:
                raise SpaceError(f"width choices must be positive and strictly increasing: {c}")

    # ----------------------------------------------------------------- shape
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_searchable(self) -> int:
        return len(self.layers) - 1

    @property
    def searchable_choices(self) -> tuple[tuple[int, ...], ...]:
        return self.choices[1:-1]

    @property
    def sizes(self) -> list[int]:
        """Number of choices of every node, fixed ends included."""
        return [len(c) for c in self.choices]

    def n_configurations(self) -> int:
        return int(np.prod([len(c) for c in self.searchable_choices], dtype=float))

    # ------------------------------------------------------- configurations
    def validate(self, config: Sequence[int]) -> tuple[int, ...]:
        """Return the configuration as a tuple of ints, or raise one clear error."""
        config = tuple(int(c) for c in config)
        if len(config) != self.n_searchable:
            raise SpaceError(
                f"configuration has {len(config)} widths but space '{self.name}' has "
                f"{self.n_searchable} searchable layers; give one width per layer"
            )
        for i, (c, allowed) in enumerate(zip(config, self.searchable_choices), start=1):
            if c not in allowed:
                raise SpaceError(
                    f"width {c} of layer {i} is not in space '{self.name}'; "
                    f"allowed widths for layer {i}: {list(allowed)}"
                )
        return config

    def full_widths(self, config: Sequence[int]) -> tuple[int, ...]:
        """Widths of all nodes (image channels and classes included)."""
        return (self.choices[0][0], *self.validate(config), self.choices[-1][0])

    def indices(self, config: Sequence[int]) -> np.ndarray:
        """Choice index of every node (length n + 1, fixed ends are 0)."""
        config = self.validate(config)
        return np.array([0, *(ch.index(c) for c, ch in zip(config, self.searchable_choices)), 0])

    def indices_many(self, configs: Sequence[Sequence[int]]) -> np.ndarray:
        """(K, n + 1) choice indices; vectorised through per-node lookup tables."""
        arr = np.asarray(configs, dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != self.n_searchable:
            raise SpaceError(
                f"expected configurations of {self.n_searchable} widths for space '{self.name}'"
            )
        out = np.zeros((arr.shape[0], self.n_layers + 1), dtype=np.int64)
        for j, allowed in enumerate(self.searchable_choices):
            lut = {w: k for k, w in enumerate(allowed)}
            col = arr[:, j]
            try:
                out[:, j + 1] = [lut[int(w)] for w in col]
            except KeyError:
                bad = next(int(w) for w in col if int(w) not in lut)
                raise SpaceError(
                    f"width {bad} of layer {j + 1} is not in space '{self.name}'; "
                    f"allowed widths for layer {j + 1}: {list(allowed)}"
                ) from None
        return out

    def config_from_indices(self, idx: Sequence[int]) -> tuple[int, ...]:
        """Inverse of ``indices`` (accepts length n + 1 or n - 1)."""
        idx = list(idx)
        if len(idx) == self.n_layers + 1:
            idx = idx[1:-1]
        return tuple(ch[int(k)] for k, ch in zip(idx, self.searchable_choices))

    def widest(self) -> tuple[int, ...]:
        return tuple(ch[-1] for ch in self.searchable_choices)

    def median_config(self) -> tuple[int, ...]:
        """The median choice of every layer: the anchor network of the timing protocol."""
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
            cfg = tuple(min(ch, key=lambda w: (abs(w - b * m), w))
                        for ch, b in zip(self.searchable_choices, self.base_widths))
            if not out or out[-1][1] != cfg:
                out.append((float(m), cfg))
        return out

    def uniform_sample(self, rng: np.random.Generator, count: int) -> list[tuple[int, ...]]:
        cols = [rng.integers(0, len(ch), size=count) for ch in self.searchable_choices]
        return [tuple(ch[c[k]] for ch, c in zip(self.searchable_choices, cols))
                for k in range(count)]

    # ----------------------------------------------------- latency unknowns
    def unknowns(self) -> tuple[list[tuple[str, int, int]], list[np.ndarray]]:
        """Latency unknowns shared across identical layer types.

        Returns the list of keys (type_key, c_in, c_out) and, per layer, a matrix of
        unknown ids indexed [input choice][output choice].
        """
        keys, tables = self._unknowns
        return list(keys), [t.copy() for t in tables]

    @functools.cached_property
    def _unknowns(self):  # computed once per space (the fit asks several times)
        keys: list[tuple[str, int, int]] = []
        where: dict[tuple[str, int, int], int] = {}
        tables = []
        for i, layer in enumerate(self.layers):
            ids = np.empty((len(self.choices[i]), len(self.choices[i + 1])), dtype=np.int64)
            for a, cin in enumerate(self.choices[i]):
                for b, cout in enumerate(self.choices[i + 1]):
                    key = (layer.type_key, cin, cout)
                    if key not in where:
                        where[key] = len(keys)
                        keys.append(key)
                    ids[a, b] = where[key]
            tables.append(ids)
        return keys, tables

    def layer_flops(self, i: int, cin: int, cout: int) -> float:
        """Multiply-accumulates of layer i at widths (cin, cout), per image."""
        layer = self.layers[i]
        r_out = layer.out_res
        if layer.op == "conv":
            return float(layer.kernel**2 * cin * cout * r_out**2)
        if layer.op == "dwsep":
            return float(layer.kernel**2 * cin * r_out**2 + cin * cout * r_out**2)
        if layer.op == "linear":
            return float(cin * cout + cin * layer.in_res**2)
        raise SpaceError(f"unknown op '{layer.op}'")

    def flops(self, config: Sequence[int]) -> float:
        w = self.full_widths(config)
        return sum(self.layer_flops(i, w[i], w[i + 1]) for i in range(self.n_layers))

    # ------------------------------------------------------------ identity
    def describe(self) -> dict:
        """JSON-able description: enough to rebuild and to check compatibility."""
        return {
            "name": self.name,
            "params": dict(self.params),
            "layers": [asdict(layer) for layer in self.layers],
            "choices": [list(c) for c in self.choices],
            "base_widths": list(self.base_widths) if self.base_widths else None,
        }

    def fingerprint(self) -> str:
        ident = {k: v for k, v in self.describe().items() if k in ("layers", "choices")}
        blob = json.dumps(ident, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_description(cls, desc: dict) -> SearchSpace:
        try:
            return cls(
                name=desc["name"],
                layers=tuple(LayerSpec(**layer) for layer in desc["layers"]),
                choices=tuple(tuple(int(w) for w in c) for c in desc["choices"]),
                params=dict(desc.get("params", {})),
                base_widths=tuple(desc["base_widths"]) if desc.get("base_widths") else None,
            )
        except (KeyError, TypeError) as err:
            raise SpaceError(f"malformed search-space description: {err}") from None

    def check_same(self, other: SearchSpace, what: str = "file") -> None:
        """Raise if ``other`` is not this space (same layers and choices)."""
        if self.fingerprint() != other.fingerprint():
            raise SpaceError(
                f"the {what} was made for space '{other.name}' {other.params or ''} but "
                f"'{self.name}' {self.params or ''} was requested; use the matching "
                f"--space/--resolution or regenerate the {what}"
            )


# --------------------------------------------------------------------- registry
SPACES: dict[str, Callable[..., SearchSpace]] = {}


def register_space(fn: Callable[..., SearchSpace]) -> Callable[..., SearchSpace]:
    SPACES[fn.__name__] = fn
    return fn


def get_space(name: str, **params) -> SearchSpace:
    if name not in SPACES:
        raise SpaceError(f"unknown search space '{name}'; available: {sorted(SPACES)}")
    params = {k: v for k, v in params.items() if v is not None}
    return SPACES[name](**params)


def width_choices(base: int, min_mult: float, max_mult: float, levels: int,
                  divisor: int) -> tuple[int, ...]:
    """round(base * linspace(min, max, levels) / divisor) * divisor, at least divisor,
    de-duplicated (Table D.1 of the seed with the defaults)."""
    raw = np.round(base * np.linspace(min_mult, max_mult, levels) / divisor) * divisor
    return tuple(sorted({max(divisor, int(v)) for v in raw}))


# (output width, stride) of MobileNet-v1's 13 depthwise-separable blocks.
_MBV1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


@register_space
def mobilenet_v1(min_width: float = 0.2, max_width: float = 1.5, levels: int = 14,
                 divisor: int = 8, resolution: int = 224, classes: int = 1000,
                 in_channels: int = 3) -> SearchSpace:
    """MobileNet-v1: stem conv, 13 depthwise-separable blocks, pool + classifier.

    15 layers, 14 searchable widths; the defaults reproduce Table D.1 of the seed.
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


def parse_config(text: str) -> tuple[int, ...]:
    """Parse "8,16,48" or "8 16 48" into widths."""
    parts = text.replace(",", " ").split()
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise SpaceError(f"could not read configuration '{text}': give comma-separated "
                         "integer widths, e.g. 8,16,48,...") from None
