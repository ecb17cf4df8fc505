"""The latency model file: per-layer pairwise tables of predicted ms/image.

JSON layout (readable by other tools): ``"tables"`` holds one matrix per layer in chain
order, indexed [input-width choice][output-width choice] in the space's order; the
first layer's matrix has one row (its input is the image), the classifier's one column.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aows.chain import Chain
from aows.errors import AowsError
from aows.space import SearchSpace, SpaceError


class ModelFileError(AowsError, ValueError):
    """A latency model file is malformed or does not fit the requested space."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temp file + rename, so an interrupted write leaves no torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class LatencyModel:
    """Additive latency model: latency(c) = sum_i table_i[c_i, c_i+1] (ms/image)."""

    def __init__(self, space: SearchSpace, tables: Sequence[np.ndarray], kind: str = "blackbox",
                 meta: dict | None = None):
        tables = [np.asarray(t, dtype=np.float64) for t in tables]
        if len(tables) != space.n_layers:
            raise ModelFileError(f"{len(tables)} tables for a space of {space.n_layers} layers")
        for i, t in enumerate(tables):
            want = (len(space.choices[i]), len(space.choices[i + 1]))
            if t.shape != want:
                raise ModelFileError(f"table of layer {i} has shape {t.shape}, expected {want}")
            if not np.all(np.isfinite(t)):
                raise ModelFileError(f"table of layer {i} has non-finite entries")
        self.space, self.tables, self.kind, self.meta = space, tables, kind, dict(meta or {})

    @classmethod
    def from_unknowns(cls, space: SearchSpace, x: np.ndarray, kind: str, meta: dict):
        _, ids = space.unknowns()
        return cls(space, [x[i] for i in ids], kind, meta)

    # --------------------------------------------------------- prediction
    def predict(self, config: Sequence[int]) -> float:
        return float(self.predict_many([config])[0])

    def predict_many(self, configs: Sequence[Sequence[int]]) -> np.ndarray:
        idx = self.space.indices_many(configs)
        total = np.zeros(idx.shape[0])
        for i, t in enumerate(self.tables):
            total += t[idx[:, i], idx[:, i + 1]]
        return total

    def per_layer(self, config: Sequence[int]) -> np.ndarray:
        idx = self.space.indices(config)
        return np.array([t[idx[i], idx[i + 1]] for i, t in enumerate(self.tables)])

    def cost_chain(self) -> Chain:
        """The latency as a chain over all width nodes (for the search)."""
        return Chain(None, self.tables)

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
        return {"aows": "latency-model", "version": 1, "kind": self.kind, "unit": "ms/image",
                "space": self.space.describe(), **self.meta,
                "tables": [np.round(t, 7).tolist() for t in self.tables]}

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: str | os.PathLike, space: SearchSpace | None = None) -> LatencyModel:
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelFileError(f"latency model {path} does not exist; make one with "
                                 "`aows latency fit`") from None
        except json.JSONDecodeError as err:
            raise ModelFileError(f"latency model {path} is not valid JSON ({err})") from None
        if not isinstance(obj, dict) or obj.get("aows") != "latency-model":
            raise ModelFileError(f"{path} is not an aows latency model (no "
                                 '"aows": "latency-model" field)')
        try:
            own = SearchSpace.from_description(obj["space"])
            meta = {k: v for k, v in obj.items()
                    if k not in ("aows", "version", "kind", "unit", "space", "tables")}
            model = cls(own, obj["tables"], obj.get("kind", "blackbox"), meta)
        except (KeyError, SpaceError) as err:
            raise ModelFileError(f"latency model {path}: {err}") from None
        if space is not None:
            model.check_space(space)
        return model
