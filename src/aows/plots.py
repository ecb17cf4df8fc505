"""Figures: one way to make and write them.

``figure(path, ...)`` yields a matplotlib figure and its axes and writes the PNG when the
body ends, atomically (``aows.io``: a failed write leaves no torn file and is one clear
error naming the path). It uses ``matplotlib.figure.Figure`` directly, never pyplot, so
making a figure changes no global state of the process (its backend, the current
figure): a notebook that calls aows keeps its own.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

from matplotlib.figure import Figure

from aows.io import atomic_write_bytes

__all__ = ["DPI", "figure"]

DPI = 120


@contextlib.contextmanager
def figure(path: str | Path, nrows: int = 1, ncols: int = 1,
           figsize: tuple[float, float] = (6.4, 4.4)) -> Iterator[tuple[Figure, object]]:
    """A figure of ``nrows`` x ``ncols`` axes (one ``Axes`` or an array, as
    ``Figure.subplots`` returns), laid out tight and written to ``path`` as PNG when the
    body returns (nothing is written if it raises)."""
    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols)
    yield fig, axes
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write_bytes(path, buf.getvalue())
