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
    atomic_write_bytes(path, text.encode())


def _umask() -> int:
    """The process's umask. Linux reports it in /proc/self/status; elsewhere it can only
    be read by setting and restoring it, and a file another thread creates in between
    would get umask 0, so the module reads it that way once, at import."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK_AT_IMPORT


def _read_umask_by_setting() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _read_umask_by_setting()


def atomic_write_bytes(path: str | os.PathLike, data: bytes | None = None, write=None) -> None:
    """Write ``data`` (or call ``write(file)``) to a temp file beside ``path``, fsync it and
    rename it over ``path``: an interrupted write leaves the old file, never a torn one,
    and no temp file (it is removed on any error, a full disk included). The file gets
    the permissions of any new file (0666 less the umask), not mkstemp's 0600, so others
    on shared storage can read models, reports and checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise AowsError(f"{path} is a folder; give a file name to write")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise AowsError(f"cannot write in {path.parent} ({err.strerror}); choose a writable "
                        "folder") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            if write is not None:
                write(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise AowsError(f"could not write {path} ({err.strerror}); nothing was replaced: "
                            "free space or choose another folder") from None
        raise


class LatencyModel:
    """Additive latency model: latency(c) = sum_i table_i[c_src(i), c_dst(i)] (ms/image)."""

    def __init__(self, space: SearchSpace, tables: Sequence[np.ndarray], kind: str = "blackbox",
                 meta: dict | None = None):
        tables = [np.asarray(t, dtype=np.float64) for t in tables]
        if len(tables) != space.n_layers:
            raise ModelFileError(f"{len(tables)} tables for a space of {space.n_layers} layers")
        for i, t in enumerate(tables):
            src, dst = space.src(i), space.dst(i)
            want = ((len(space.choices[src]),) if src == dst else
                    (len(space.choices[src]), len(space.choices[dst])))
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
        idx = self.space.indices_many(configs)
        total = np.zeros(idx.shape[0])
        for i, t in enumerate(self.tables):
            total += self.space.layer_table(i, t, idx)
        return total

    def per_layer(self, config: Sequence[int]) -> np.ndarray:
        idx = self.space.indices(config)[None]
        return np.array([self.space.layer_table(i, t, idx)[0]
                         for i, t in enumerate(self.tables)])

    def cost_chain(self) -> Chain:
        """The latency as a chain over all width variables (for the search of a chain)."""
        return Chain(None, self.tables)

    def cost_graph(self):
        """The latency as a width graph (``aows.graph.WidthGraph``): unary terms from the
        layers whose input and output are one variable, pairwise terms from the others."""
        from aows.graph import WidthGraph
        unary, pairwise = self.space.cost_terms(self.tables)
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
        except KeyError as err:
            raise ModelFileError(f"latency model {path} has no {err} field; make it with "
                                 "`aows latency fit`") from None
        except (SpaceError, ValueError) as err:
            raise ModelFileError(f"latency model {path}: {err}") from None
        if space is not None:
            model.check_space(space)
        return model
