"""The latency terms of a search space: what its per-layer latency tables are indexed by.

Every layer costs one term L(c_in, c_out) of its input and output width variables (one
variable: a term of that variable alone); layers of one type key share their unknowns
(the paper's Section 4). A layer reading a concatenated variable costs one term per part
(see ``terms``). The cost graph the solvers see (``cost_terms``) has these terms as
unary and pairwise terms, a few of them linearised where concatenations make the graph
too wide to eliminate exactly (``linearised``). A mixin of ``aows.space.SearchSpace``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from aows.graph.model import MAX_WIDTH, induced_width

if TYPE_CHECKING:
    from aows.space import LayerSpec


class LatencyTerms:
    """Latency terms, unknowns and cost graph of a space (``SearchSpace`` has them)."""

    @functools.cached_property
    def terms(self) -> tuple[tuple[int, int, int, str], ...]:
        """The latency terms: (layer, input variable, output variable, type key) each.
        One per layer, except that a layer reading a concatenated variable has one per
        part; a layer whose input and output are one variable has a term on one
        variable.

        The parts' keys: the first part's is the layer's type key + ``-cat``, the others'
        + ``-cat+``, so that L(w_1 + ... + w_k, c) = a(c) + b(c) (w_1 + ... + w_k), the
        shape of a conv's cost, is represented exactly (the first part carries the
        layer's own cost a(c), the others the cost of their channels) and the layers of
        one type share their unknowns whatever the number of parts they read."""
        out = []
        for i, layer in enumerate(self.layers):
            s, d = self.src(i), self.dst(i)
            ps = self.parts.get(s)
            if ps is None:
                out.append((i, s, d, layer.type_key))
                continue
            for j, p in enumerate(ps):
                out.append((i, p, p if d == s else d,
                            f"{layer.type_key}-cat{'+' if j else ''}"))
        return tuple(out)

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    def term_specs(self) -> dict[str, LayerSpec]:
        """Type key of every term -> a layer of that type (its op, kernel, resolution)."""
        out: dict[str, LayerSpec] = {}
        for i, _, _, key in self.terms:
            out.setdefault(key, self.layers[i])
        return out

    def unknowns(self) -> tuple[list[tuple[str, int, int]], list[np.ndarray]]:
        """Latency unknowns shared across identical layer types.

        Returns the list of keys (type_key, c_in, c_out) and, per term (``terms``: one
        per layer but for layers reading a concatenation), the unknown ids: a matrix
        indexed [input choice][output choice], or for a term whose input and output are
        one variable a vector indexed by that variable's choice.
        """
        keys, tables = self._unknowns
        return list(keys), [t.copy() for t in tables]

    @functools.cached_property
    def _unknowns(self):  # computed once per space (the fit asks several times)
        keys: list[tuple[str, int, int]] = []
        where: dict[tuple[str, int, int], int] = {}

        def uid(key):
            if key not in where:
                where[key] = len(keys)
                keys.append(key)
            return where[key]

        tables = []
        for _, s, d, tkey in self.terms:
            cs, cd = self.choices[s], self.choices[d]
            if s == d:
                ids = np.array([uid((tkey, c, c)) for c in cs], dtype=np.int64)
            else:
                ids = np.empty((len(cs), len(cd)), dtype=np.int64)
                for a, cin in enumerate(cs):
                    for b, cout in enumerate(cd):
                        ids[a, b] = uid((tkey, cin, cout))
            tables.append(ids)
        return keys, tables

    def term_table(self, t: int, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Entries of term t's table (``values``, shaped like its unknown ids) at the
        choice indices ``idx`` (K, n_vars) of K configurations."""
        _, s, d, _ = self.terms[t]
        if s == d:
            return values[idx[:, s]]
        return values[idx[:, s], idx[:, d]]

    def table_shape(self, t: int) -> tuple[int, ...]:
        """Shape of term t's table: (input choices,) or (input, output choices)."""
        _, s, d, _ = self.terms[t]
        return (len(self.choices[s]),) if s == d else (len(self.choices[s]),
                                                         len(self.choices[d]))

    def cost_terms(self, tables: Sequence[np.ndarray], ref: np.ndarray | None = None
                   ) -> tuple[list[np.ndarray], list[tuple[tuple[int, int], np.ndarray]]]:
        """Per-term tables as terms of the width graph: a unary vector per variable (the
        terms on one variable) and pairwise ((src, dst), matrix) terms.

        The terms of ``linearised`` (a graph the exact solvers cannot eliminate
        otherwise) are replaced by their first-order expansion around the choice
        indices ``ref`` (default: the median configuration), exact at ``ref``:
        T(a, b) ~ T(a, rb) + T(ra, b) - T(ra, rb)."""
        unary = [np.zeros(len(c)) for c in self.choices]
        pairwise = []
        soft = self.linearised
        if soft and ref is None:
            ref = self.indices(self.median_config())
        for k, t in enumerate(tables):
            t = np.asarray(t, dtype=np.float64)
            _, s, d, _ = self.terms[k]
            if s == d:
                unary[s] = unary[s] + t
            elif k in soft:
                ra, rb = int(ref[s]), int(ref[d])
                unary[s] = unary[s] + t[:, rb]
                unary[d] = unary[d] + t[ra, :] - t[ra, rb]
            else:
                pairwise.append(((s, d), t))
        return unary, pairwise

    @functools.cached_property
    def linearised(self) -> frozenset[int]:
        """The concatenation terms that ``cost_terms`` linearises: none where the width
        graph's induced width is within what the exact solvers eliminate
        (``aows.graph.MAX_WIDTH``); else every pairwise term of a layer reading two or
        more searchable parts, then as many of them given back, layer by layer in
        order, as keep the induced width within it. Empty for every space without
        concatenations: its search is exact."""
        searchable = set(self.searchable)
        edges = {}
        for k, (_, s, d, _) in enumerate(self.terms):
            if s != d and s in searchable and d in searchable:
                edges[k] = (s, d)
        if not self.concats or induced_width(self.n_vars, edges.values()) <= MAX_WIDTH:
            return frozenset()
        by_layer: dict[int, list[int]] = {}
        for k, (i, _, _, _) in enumerate(self.terms):
            if k in edges and self.src(i) in self.parts:
                by_layer.setdefault(i, []).append(k)
        soft = {k for ks in by_layer.values() if len(ks) > 1 for k in ks}
        for _, ks in sorted(by_layer.items()):
            if len(ks) < 2:
                continue
            trial = soft - set(ks)
            if induced_width(self.n_vars, [e for k, e in edges.items()
                                           if k not in trial]) <= MAX_WIDTH:
                soft = trial
        return frozenset(soft)
