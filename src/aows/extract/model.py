"""A user's module as a width graph (``ModelSpace``): ``extract`` traces a module,
``model_space`` a model named by ``aows.models``; both check that the narrowest
configuration slices cleanly before anything else uses the graph."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aows.defaults import DEFAULT_RESOLUTION
from aows.defaults import MODEL_WIDTH_RULE as _RULE
from aows.extract.trace import _first_line, _Trace
from aows.models import load_model
from aows.nn.modelnet import ModuleSupernet, slice_module
from aows.space import LayerSpec, SearchSpace, SpaceError, width_choices
from aows.spaces import check_solvable

__all__ = ["ModelSpace", "extract", "model_choices", "model_space"]


@dataclass(frozen=True)
class ModelSpace(SearchSpace):
    """The width graph of a user's module (``params["model"]`` names it).

    ``plan``: (module name, kind, input variable, output variable) of every conv
    ("conv" or "dw"), BatchNorm ("bn") and linear ("linear") that follows the widths;
    ``held``: (variable, reason) of every width held fixed.
    ``locked``: set on a space read from a file whose model code was not run
    (``aows.catalogue.space_from_description``): its layers and choices serve the fit and
    the search, and building a network raises this message, which says how to consent.
    """

    plan: tuple[tuple[str, str, int, int], ...] = field(default=(), compare=False)
    held: tuple[tuple[int, str], ...] = field(default=(), compare=False)
    locked: str = field(default="", compare=False)

    def load_module(self) -> nn.Module:
        """The user's module at full width (a fresh copy)."""
        if self.locked:
            raise SpaceError(self.locked)
        return load_model(self.params["model"], self.params.get("classes"),
                          self.params.get("weights"))

    def build(self, config: Sequence[int]) -> nn.Module:
        """The user's own module with physically smaller layers (leading slices of its
        weights) at ``config``."""
        return slice_module(self.load_module(), self, config)

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
                min_width: float = _RULE["min_width"], max_width: float = _RULE["max_width"],
                levels: int = _RULE["levels"], divisor: int = _RULE["divisor"],
                input_shape: Sequence[int] | None = None,
                weights: str | None = None, **ignored) -> ModelSpace:
    """The width graph of a model named by ``aows.models`` (see ``extract``).

    Args:
        model: ``torchvision:NAME``, ``timm:NAME`` or ``path/to/file.py:FUNCTION``.
        resolution: square input size (default ``DEFAULT_RESOLUTION``), or
            ``input_shape`` (C, H, W).
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
        input_shape = (3, resolution or DEFAULT_RESOLUTION, resolution or DEFAULT_RESOLUTION)
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
            params: dict | None = None, min_width: float = _RULE["min_width"],
            max_width: float = _RULE["max_width"], levels: int = _RULE["levels"],
            divisor: int = _RULE["divisor"], verify: bool = True,
            search_concat: bool = True) -> ModelSpace:
    """The width graph of ``module`` on inputs of ``input_shape`` (C, H, W).

    Args:
        module: the network at full width (traced with ``torch.fx``, run once).
        input_shape: one example input's shape without the batch, e.g. (3, 224, 224).
        name: the space's name. params: recorded in the space (how to rebuild it).
        min_width, max_width, levels, divisor: the width rule (``model_choices``).
        verify: run the narrowest configuration once to check it slices cleanly.
        search_concat: search the widths of concatenated branches (each read at its
            offset); False holds them, as aows did before (for comparisons).

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
    trace = _Trace(module, tuple(input_shape), name, search_concat)
    space = _space_of(trace, name, dict(params or {}), (min_width, max_width, levels, divisor))
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
                a = slice_module(module, space, cfg).eval()(x)
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


def _space_of(t: _Trace, name: str, params: dict, rule) -> ModelSpace:
    """The width graph of a finished trace: merged slots become width variables, held
    (with their reasons) or given the width rule's choices."""
    # a module called twice shares its weights: its widths are one variable each
    seen: dict[str, tuple[int, int]] = {}
    for q, _, a, b in t.plan:
        if q in seen:
            t.union(seen[q][0], a)
            t.union(seen[q][1], b)
        seen[q] = (a, b)
    roots = sorted({t.find(s) for s in range(len(t.parent))})
    used = set()
    for lay in t.layers:
        used.update((t.find(lay["src"]), t.find(lay["dst"])))
    if t.image is None or not t.layers:
        raise SpaceError(f"model '{name}' has no input tensor or no layer aows can "
                         "search (convs, linear maps)")
    used.add(t.find(t.slot[t.image]))
    roots = [r for r in roots if r in used]
    for q, _, a, b in t.plan:  # a module whose tensors the forward also reads itself
        if q in t.attrs:
            why = f"the tensors of '{q}' are also read directly at {t.attrs[q]}"
            t.hold(a, why)
            t.hold(b, why)
    var = {r: v for v, r in enumerate(roots)}
    written = {t.find(lay["dst"]) for lay in t.layers
               if lay["op"] in ("conv", "deconv", "linear") and lay["src"] != lay["dst"]}
    cats = {r: ([t.find(p) for p in parts], where) for r, (parts, where) in t.cats.items()
            if r in var}
    choices, held = [None] * len(roots), []
    for r in roots:
        if r in cats:
            continue
        why = list(t.reasons.get(r, []))
        if not why and r not in written:
            why.append("no conv or linear map writes it")
        ch = model_choices(t.size[r], *rule) if not why else (t.size[r],)
        if not why and len(ch) == 1:
            why.append(f"too narrow ({t.size[r]}) for more than one width")
        choices[var[r]] = ch
        held.extend((var[r], w) for w in why)
    concats = []
    for r, (parts, where) in cats.items():
        choices[var[r]] = (t.size[r],)
        if all(p in var for p in parts) and any(len(choices[var[p]]) > 1 for p in parts):
            concats.append((var[r], tuple(var[p] for p in parts)))
        else:  # every part held: a width like any held one
            held.append((var[r], f"concatenated at {where}, whose parts are all held"))
    names = ["image"] + [""] * (len(roots) - 1)
    for tied in (False, True):  # named after the first layer writing it
        for lay in t.layers:
            d = var[t.find(lay["dst"])]
            if not names[d] and (tied or lay["src"] != lay["dst"]):
                names[d] = lay["name"]
    names = [n or f"v{v}" for v, n in enumerate(names)]
    if len(set(names)) != len(names):
        names = [n if names.count(n) == 1 else f"{n}#{v}" for v, n in enumerate(names)]
    layers = []
    for lay in t.layers:
        lay = dict(lay, src=var[t.find(lay["src"])], dst=var[t.find(lay["dst"])])
        layers.append(LayerSpec(**lay))
    # keep the default inputs (the previous layer) implicit, as built-in spaces do
    layers = [_implicit(layers, i) for i in range(len(layers))]
    plan = tuple((q, kind, var[t.find(a)], var[t.find(b)])
                 for q, kind, a, b in t.plan if t.find(a) in var)
    params["in_channels"] = int(t.size[roots[0]])
    searchable = [v for v, c in enumerate(choices) if len(c) > 1]
    return ModelSpace(name, tuple(layers), tuple(tuple(c) for c in choices), params,
                      tuple(choices[v][-1] for v in searchable), tuple(names),
                      tuple(sorted(concats)), plan=plan, held=tuple(held))

def _implicit(layers: list[LayerSpec], i: int) -> LayerSpec:
    default = (layers[i - 1].name,) if i else ("image",)
    lay = layers[i]
    if tuple(lay.inputs) == default:
        lay = LayerSpec(**{**lay.__dict__, "inputs": ()})
    return lay
