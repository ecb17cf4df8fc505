"""Importance-ordered channels: a trained module's channels sorted so that every leading
slice holds the channels the model relies on most.

A narrow configuration keeps each width variable's *leading* channels (``[0:w]``), in the
supernet and in the exported network alike. Started from a trained model, those are
whichever channels happen to come first. Before a supernet or an export is built from a
module with weights, ``order_channels`` permutes each searchable variable's channels once,
most important first. Every tool of the field ranks channels before it slices or prunes
them (Torch-Pruning's group importances, Once-for-All's channel sorting before elastic
width, NetAdapt, HALP); this is that step for a width graph.

One permutation per searchable variable, applied to every tensor along it (the space's
plan lists them): the producers' output channels (conv, depthwise conv and linear weight
rows and biases), the BatchNorm tensors (weight, bias, running mean and variance), and
the consumers' input channels (the next convs and linears). A variable is a tied group
(every tensor added by a residual, an SE gate and what it gates), so one permutation
covers all its members. A concatenation's parts keep their own permutations: a consumer
of the concatenation has each part's input channels at that part's offset, permuted
there by the part's order. Held variables are never permuted: the extraction holds every
width whose channels an op aows does not slice reads, so the permuted module at full
width computes the same function as the original.

Criteria (``CRITERIA``; each member of a group is scored per channel, normalised to mean
1, and the members summed):

- ``l1``: the group's magnitude: mean |w| of every weight along the variable, the
  producers' output filters (convs, depthwise convs, linears), the consumers' input
  channels and the BatchNorm scales (as Torch-Pruning's group magnitude importance);
- ``bn``: |gamma| of the variable's BatchNorms (``l1`` where it has none);
- ``taylor``: first-order Taylor, (sum of w * dL/dw over the channel's slice)^2, averaged
  over a few batches of (images, labels), cross-entropy loss, over every parameter along
  the variable (Molchanov et al., CVPR 2019);
- ``none``: the module's own order (leading slices).

Which criterion keeps the most accuracy is measured, not assumed: see
``benchmarks/importance.py`` and the documentation's benchmark page.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aows.defaults import DEFAULT_IMPORTANCE as DEFAULT_CRITERION
from aows.defaults import IMPORTANCE_CRITERIA
from aows.errors import AowsError
from aows.io import atomic_write_text
from aows.registry import Registry

__all__ = ["CRITERIA", "DEFAULT_CRITERION", "IMPORTANCE_BATCHES", "Member", "channel_scores",
           "channel_order", "permute_channels", "order_channels", "order_record",
           "check_criterion"]

IMPORTANCE_BATCHES = 4  # batches of data the taylor criterion reads


@dataclass(frozen=True)
class Member:
    """One tensor along a width variable: ``module.<tensor>`` indexed on ``dim``.

    ``role``: "filter" (a producer's output channels), "norm" (a BatchNorm's) or "input"
    (a consumer's input channels). ``start``/``stop``: the channels along ``dim`` that
    are the variable's (a part of a concatenation sits at an offset); ``stop`` None: to
    the end."""

    module: str
    tensor: str
    dim: int
    role: str
    start: int = 0
    stop: int | None = None


_NORM = ("weight", "bias", "running_mean", "running_var")


def members(module: nn.Module, space) -> dict[int, list[Member]]:
    """Every tensor along each searchable variable of ``space`` (a ``ModelSpace``), from
    its plan; a module reached under two names is listed once."""
    out: dict[int, list[Member]] = {v: [] for v in space.searchable}
    seen: set[int] = set()
    for name, kind, a, b in space.plan:
        m = module.get_submodule(name)
        if id(m) in seen:
            continue
        seen.add(id(m))
        m = getattr(m, "inner", m)  # a BatchNorm subclass wrapped by the supernet
        if kind in ("bn", "bnx"):
            along = [(a, t, 0, "norm") for t in _NORM]
        elif kind == "dw":
            along = [(a, "weight", 0, "filter"), (a, "bias", 0, "filter")]
        elif kind == "deconv":  # a transposed conv's weight is (in, out, kH, kW)
            along = [(b, "weight", 1, "filter"), (b, "bias", 0, "filter"),
                     (a, "weight", 0, "input")]
        else:  # conv, linear
            along = [(b, "weight", 0, "filter"), (b, "bias", 0, "filter"),
                     (a, "weight", 1, "input")]
        for v, t, dim, role in along:
            if getattr(m, t, None) is None:
                continue
            for p, start, stop in _spans(space, v):
                if p in out:
                    out[p].append(Member(name, t, dim, role, start, stop))
    return out


def _spans(space, v: int) -> list[tuple[int, int, int | None]]:
    """(variable, start, stop) of the channels of variable ``v``'s tensors: all of them,
    or for a concatenation, each part's at its offset."""
    return space.part_spans(v) if v in space.parts else [(v, 0, None)]


def _whole(module: nn.Module, m: Member) -> torch.Tensor:
    owner = module.get_submodule(m.module)
    return getattr(getattr(owner, "inner", owner), m.tensor)  # a supernet's wrapped norm


def _tensor(module: nn.Module, m: Member) -> torch.Tensor:
    """The member's channels of its tensor (a view)."""
    t = _whole(module, m)
    stop = t.shape[m.dim] if m.stop is None else m.stop
    return t.narrow(m.dim, m.start, stop - m.start)


def _per_channel(t: torch.Tensor, dim: int) -> np.ndarray:
    """Mean over every axis but ``dim``, as float64."""
    t = t.detach().double().movedim(dim, 0)
    return t.reshape(t.shape[0], -1).mean(1).cpu().numpy()


def _normalised_sum(parts: list[np.ndarray], width: int) -> np.ndarray | None:
    total, used = np.zeros(width), 0
    for p in parts:
        mean = float(p.mean())
        if mean > 0 and np.all(np.isfinite(p)):
            total += p / mean
            used += 1
    return total if used else None


def _l1(module, groups, batches):
    out = {}
    for v, ms in groups.items():
        parts = [_per_channel(_tensor(module, m).abs(), m.dim) for m in ms
                 if m.tensor == "weight"]
        out[v] = _normalised_sum(parts, _width(module, ms))
    return out


def _bn(module, groups, batches):
    out = _l1(module, groups, batches)  # where a variable has no BatchNorm
    for v, ms in groups.items():
        parts = [_per_channel(_tensor(module, m).abs(), 0) for m in ms
                 if m.role == "norm" and m.tensor == "weight"]
        score = _normalised_sum(parts, _width(module, ms))
        if score is not None:
            out[v] = score
    return out


def _taylor(module, groups, batches):
    if batches is None:
        raise AowsError("the taylor importance needs data (a few batches of images and "
                        "labels): give --data, or choose --importance l1, bn or none")
    params = {}
    for ms in groups.values():
        for m in ms:
            t = _whole(module, m)
            if isinstance(t, nn.Parameter):
                params.setdefault(id(t), t)
    tensors = list(params.values())
    index = {id(t): k for k, t in enumerate(tensors)}
    acc = {(v, k): np.zeros(_width(module, ms)) for v, ms in groups.items()
           for k in range(len(ms))}
    modes = [(m, m.training) for m in module.modules()]
    grads_on = [t.requires_grad for t in tensors]
    n = 0
    try:
        module.eval()  # running statistics used, not changed
        for t in tensors:
            t.requires_grad_(True)
        for x, y in islice(batches, IMPORTANCE_BATCHES):
            out = module(x)
            if not isinstance(out, torch.Tensor) or out.dim() != 2:
                raise AowsError("the taylor importance needs a classifier (logits of shape "
                                "(batch, classes)); choose --importance l1 or bn")
            loss = nn.functional.cross_entropy(out.float(), y)
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            for v, ms in groups.items():
                for k, m in enumerate(ms):
                    t = _whole(module, m)
                    g = grads[index[id(t)]] if id(t) in index else None
                    if g is not None:
                        t = _tensor(module, m)
                        g = g.narrow(m.dim, m.start, t.shape[m.dim])
                        s = (t.detach() * g).double().movedim(m.dim, 0)
                        acc[(v, k)] += (s.reshape(s.shape[0], -1).sum(1) ** 2).cpu().numpy()
            n += 1
    finally:
        for t, on in zip(tensors, grads_on):
            t.requires_grad_(on)
        for m, mode in modes:
            m.training = mode
    if n == 0:
        raise AowsError("the taylor importance got no batch of data")
    return {v: _normalised_sum([acc[(v, k)] / n for k in range(len(ms))],
                               _width(module, ms)) for v, ms in groups.items()}


def _none(module, groups, batches):
    return {v: None for v in groups}


CRITERIA: Registry = Registry("importance criterion")
for _name, _fn in (("l1", _l1), ("bn", _bn), ("taylor", _taylor), ("none", _none)):
    CRITERIA.register(_name, _fn)
assert set(CRITERIA) == set(IMPORTANCE_CRITERIA)


def check_criterion(name: str) -> str:
    """``name`` if it is a criterion, else one clear error listing them."""
    CRITERIA.get(name)
    return name


def _width(module: nn.Module, ms: list[Member]) -> int:
    m = ms[0]
    return int(_tensor(module, m).shape[m.dim])


def channel_scores(module: nn.Module, space, criterion: str = DEFAULT_CRITERION,
                   batches: Iterable | None = None) -> dict[int, np.ndarray | None]:
    """Per searchable variable, each channel's importance (higher: kept longer); None
    where the criterion has nothing to score (the module's order is kept).

    Args:
        module: the user's module at full width (not changed).
        space: its ``ModelSpace`` (``aows.extract``).
        criterion: a name of ``CRITERIA``.
        batches: (images, labels) batches; the ``taylor`` criterion reads
            ``IMPORTANCE_BATCHES`` of them.
    """
    groups = {v: ms for v, ms in members(module, space).items() if ms}
    return CRITERIA[check_criterion(criterion)](module, groups, batches)


def channel_order(module: nn.Module, space, criterion: str = DEFAULT_CRITERION,
                  batches: Iterable | None = None) -> dict[int, np.ndarray]:
    """Per searchable variable, its channels most important first (a permutation; ties
    keep the module's order, so ``none`` is the identity)."""
    scores = channel_scores(module, space, criterion, batches)
    groups = members(module, space)
    out = {}
    for v, ms in groups.items():
        if not ms:
            continue
        s = scores.get(v)
        width = _width(module, ms)
        out[v] = (np.arange(width) if s is None else
                  np.argsort(-s, kind="stable"))
    return out


@torch.no_grad()
def permute_channels(module: nn.Module, space, order: dict[int, np.ndarray]) -> nn.Module:
    """Permute, in place, every tensor along each variable of ``order`` by its
    permutation; returns ``module``. At full width the module computes what it did."""
    done: set[tuple[int, int]] = set()
    for v, ms in members(module, space).items():
        if v not in order:
            continue
        for m in ms:
            key = (id(_whole(module, m)), m.dim, m.start)
            if key in done:  # one tensor shared by two modules
                continue
            done.add(key)
            t = _tensor(module, m)
            idx = torch.as_tensor(np.asarray(order[v]), dtype=torch.long, device=t.device)
            if idx.numel() != t.shape[m.dim]:
                raise AowsError(f"channel order of '{space.names[v]}' has {idx.numel()} "
                                f"entries, {m.module}.{m.tensor} has {t.shape[m.dim]} "
                                "channels: the order was made for another model")
            t.copy_(t.index_select(m.dim, idx))
    return module


def order_channels(module: nn.Module, space, criterion: str = DEFAULT_CRITERION,
                   batches: Iterable | None = None) -> dict[int, np.ndarray]:
    """Score, then permute ``module``'s channels in place (``channel_order`` then
    ``permute_channels``); returns the order applied."""
    order = channel_order(module, space, criterion, batches)
    permute_channels(module, space, order)
    return order


def order_record(space, order: dict[int, np.ndarray], criterion: str) -> dict:
    """The order as JSON: ``{"criterion", "variables": {name: [channel, ...]}}``, where
    entry i of a variable is the original channel now at position i."""
    return {"aows": "channel-order", "criterion": criterion,
            "variables": {space.names[v]: [int(c) for c in p] for v, p in order.items()}}


def write_order(path: str | Path, space, order: dict[int, np.ndarray], criterion: str
                ) -> Path:
    """Write ``order_record`` to ``path`` (atomically)."""
    atomic_write_text(Path(path), json.dumps(order_record(space, order, criterion)))
    return Path(path)
