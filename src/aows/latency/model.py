"""The latency model file: per-layer tables of predicted ms/image.

JSON layout (readable by other tools): ``"tables"`` holds one table per layer in the
space's layer order: a matrix indexed [input-width choice][output-width choice] of the
layer's input and output width variables, in the space's order of choices, or, for a
layer whose input and output are one variable (a depthwise conv, a residual addition,
a pooling), a list indexed by that variable's choice. In a chain the first layer's
matrix has one row (its input is the image), the classifier's one column. Format
version 2 adds those lists and graph spaces; version 1 files (chains) read unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aows.catalogue import space_from_description
from aows.chain import Chain
from aows.errors import AowsError
from aows.graph import WidthGraph
from aows.io import atomic_write_text
from aows.space import SearchSpace, SpaceError


class ModelFileError(AowsError, ValueError):
    """A latency model file is malformed or does not fit the requested space."""


class LatencyModel:
    """Additive latency model: latency(c) = sum_t table_t[c_src(t), c_dst(t)] (ms/image),
    one table per latency term of the space (``SearchSpace.terms``: one per layer, one
    per part of a concatenation a layer reads)."""

    def __init__(self, space: SearchSpace, tables: Sequence[np.ndarray], kind: str = "blackbox",
                 meta: dict | None = None):
        tables = [np.asarray(t, dtype=np.float64) for t in tables]
        if len(tables) != space.n_terms:
            raise ModelFileError(f"{len(tables)} tables for a space of {space.n_terms} "
                                 "latency terms (one per layer, one per part of a "
                                 "concatenation a layer reads)")
        for k, t in enumerate(tables):
            i = space.terms[k][0]
            want = space.table_shape(k)
            if t.shape != want:
                raise ModelFileError(f"table of layer {i} has shape {t.shape}, expected {want}")
            if not np.all(np.isfinite(t)):
                raise ModelFileError(f"table of layer {i} has non-finite entries")
            if np.any(t < 0):
                raise ModelFileError(f"table of layer {i} ('{space.layers[i].name}') has "
                                     "negative latencies; refit the model")
        self.space, self.tables, self.kind, self.meta = space, tables, kind, dict(meta or {})

    @classmethod
    def from_unknowns(cls, space: SearchSpace, x: np.ndarray, kind: str, meta: dict):
        _, ids = space.unknowns()
        return cls(space, [x[i] for i in ids], kind, meta)

    # --------------------------------------------------------- prediction
    def predict(self, config: Sequence[int]) -> float:
        return float(self.predict_many([config])[0])

    def predict_many(self, configs: Sequence[Sequence[int]]) -> np.ndarray:
        return self.predict_indices(self.space.indices_many(configs))

    def predict_indices(self, idx: np.ndarray) -> np.ndarray:
        """Predicted ms of the configurations given by choice indices (K, n_vars)."""
        idx = np.atleast_2d(idx)
        total = np.zeros(idx.shape[0])
        for k, t in enumerate(self.tables):
            total += self.space.term_table(k, t, idx)
        return total

    def per_layer(self, config: Sequence[int]) -> np.ndarray:
        """Predicted ms of every layer at ``config`` (its terms summed)."""
        idx = self.space.indices(config)[None]
        out = np.zeros(self.space.n_layers)
        for k, t in enumerate(self.tables):
            out[self.space.terms[k][0]] += self.space.term_table(k, t, idx)[0]
        return out

    def cost_chain(self) -> Chain:
        """The latency as a chain over all width variables (for the search of a chain)."""
        return Chain(None, self.tables)

    def cost_graph(self, ref: np.ndarray | None = None):
        """The latency as a width graph (``aows.graph.WidthGraph``): unary terms from the
        layers whose input and output are one variable, pairwise terms from the others;
        the space's ``linearised`` terms expanded around the choice indices ``ref``
        (``SearchSpace.cost_terms``)."""
        unary, pairwise = self.space.cost_terms(self.tables, ref)
        return WidthGraph(unary, pairwise)

    @property
    def anchor_ref_ms(self) -> float | None:
        """The reference state its latencies are in (median anchor timing), if any."""
        anchor = self.meta.get("anchor")
        return float(anchor["ref_ms"]) if anchor else None

    def comparable(self, samples) -> np.ndarray:
        """Measured latencies of ``samples`` in this model's units: drift-normalised to
        its reference state when both have anchors, else raw."""
        ref = self.anchor_ref_ms
        return samples.normalised(ref) if ref is not None and samples.has_anchors \
            else samples.latency_ms

    def check_space(self, space: SearchSpace) -> None:
        space.check_same(self.space, "latency model")

    # ---------------------------------------------------------------- I/O
    def to_json(self) -> dict:
        return {"aows": "latency-model", "version": 1 if self.space.is_chain else 2,
                "kind": self.kind, "unit": "ms/image",
                "space": self.space.describe(), **self.meta,
                "tables": [np.round(t, 7).tolist() for t in self.tables]}

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: str | os.PathLike, space: SearchSpace | None = None, *,
             trust_model_code: bool | str = False) -> LatencyModel:
        """Read a latency model file.

        Args:
            path: the JSON ``aows latency fit`` wrote.
            space: the space it must be of (checked); the model is then of this space (the
                one that builds networks), and no code the file names is run.
            trust_model_code: without ``space``, how a model from a file is rebuilt
                (``aows.catalogue.space_from_description``'s ``trust``): by default as data
                only, enough to predict and search.
        """
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelFileError(f"latency model {path} does not exist; make one with "
                                 "`aows latency fit`") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ModelFileError(f"latency model {path} cannot be read "
                                 f"({getattr(err, 'strerror', None) or err}); give the JSON "
                                 "file `aows latency fit` wrote") from None
        except json.JSONDecodeError as err:
            raise ModelFileError(f"latency model {path} is not valid JSON ({err})") from None
        if not isinstance(obj, dict) or obj.get("aows") != "latency-model":
            raise ModelFileError(f"{path} is not an aows latency model (no "
                                 '"aows": "latency-model" field)')
        try:
            own = (SearchSpace.from_description(obj["space"]) if space is not None else
                   space_from_description(obj["space"], trust=trust_model_code,
                                          where=f"latency model {path}"))
            meta = {k: v for k, v in obj.items()
                    if k not in ("aows", "version", "kind", "unit", "space", "tables")}
            model = cls(own, obj["tables"], obj.get("kind", "blackbox"), meta)
        except KeyError as err:
            raise ModelFileError(f"latency model {path} has no {err} field; make it with "
                                 "`aows latency fit`") from None
        except (SpaceError, ValueError, TypeError, AttributeError) as err:
            raise ModelFileError(f"latency model {path}: {err}") from None
        if space is not None:
            model.check_space(space)
            model.space = space
        return model
