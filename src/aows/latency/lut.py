"""Baseline: a per-layer lookup table (every layer timed alone, then summed).

This is what the black-box model replaces: timing layers in isolation misses what the
runtime does across layers (fusion, memory reuse, launch overhead), so the sum is
biased. Same backend and protocol as the black-box samples, for a fair comparison.
"""

from __future__ import annotations

import sys

import numpy as np
from torch import nn
from tqdm import tqdm

from aows.errors import AowsError
from aows.latency.backends import Target
from aows.latency.measure import Timer, target_record
from aows.latency.model import LatencyModel
from aows.latency.protocol import Protocol
from aows.latency.remote import connected
from aows.nn import build_layer, layer_input_shape
from aows.space import SearchSpace


class _Repeat(nn.Module):
    """Feeds one input n times to a layer that reads n tensors (a residual add)."""

    def __init__(self, mod: nn.Module, n: int):
        super().__init__()
        self.mod, self.n = mod, n

    def forward(self, x):
        return self.mod(*([x] * self.n))


def build_lookup_table(space: SearchSpace, target: Target, protocol: Protocol,
                       progress: bool = True) -> LatencyModel:
    """The baseline the paper compares with: every layer timed alone, its table entry
    being its own time (no fitting; the sum over a network ignores what layers share).

    Args:
        space: the search space; each (layer type, c_in, c_out) is timed once.
        target: where to time.
        protocol: how (the chunks of layers are timed like the networks of a sample file,
            interleaved, with the anchor).
        progress: show a progress bar (stderr).

    Returns:
        A ``LatencyModel`` of kind "lookup-table".
    """
    if space.concats:
        raise AowsError(f"space '{space.name}' has layers that read concatenations, whose "
                        "latency is fitted per part of the concatenation: a layer timed alone "
                        "has no such parts; use the black-box fit (`aows latency fit`)")
    with connected(target):  # a remote target's runners, stopped after
        return _lookup_table(space, target, protocol, progress)


def _lookup_table(space, target, protocol, progress) -> LatencyModel:
    timer = Timer(space, target, protocol)  # the anchored protocol of the samples
    backend = timer.backend
    keys, _ = space.unknowns()
    first = {}
    for i, layer in enumerate(space.layers):
        first.setdefault(layer.type_key, i)
    x = np.zeros(len(keys))
    bar = tqdm(total=len(keys), unit="layer", desc="timing layers", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    for start in range(0, len(keys), protocol.chunk):
        chunk = range(start, min(start + protocol.chunk, len(keys)))
        runners = []
        for v in chunk:
            tkey, cin, cout = keys[v]
            i = first[tkey]
            mod = build_layer(space.layers[i], cin, cout)
            if len(space.layers[i].inputs) > 1:  # an add: timed on copies of one tensor
                mod = _Repeat(mod, len(space.layers[i].inputs))
            runners.append(backend.prepare(mod, layer_input_shape(space, i, cin,
                                                                  target.batch_size)))
        secs, _ = timer.run(runners, np.random.default_rng([protocol.seed, start]))
        x[list(chunk)] = secs * 1e3 / target.batch_size
        bar.update(len(chunk))
    bar.close()
    meta = {"target": target_record(target, backend),
            "fit": {"method": "lookup-table", "protocol": protocol.asdict()}}
    return LatencyModel.from_unknowns(space, x, "lookup-table", meta)
