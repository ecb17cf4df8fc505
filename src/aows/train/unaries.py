"""Unary statistics: the per-layer accuracy model that the search decodes.

For an image run at configuration c with d = CE(c) - CE(max), every searchable layer i
receives -d / n at its choice c_i (the paper's OWS accuracy model). u_i(c) is the average of what
its term received: over the last full epoch (the paper) or over a moving window of the
last N values per term (the reference uses N = 100,000).

In epoch mode, a choice that no image used during the last epoch keeps the average of
the last epoch that did use it (AOWS's adaptive sampling stops visiting most choices as
the temperature falls; with no new evidence the old estimate is the best one, which is
also what the reference's window does). Choices never seen get the lowest value of
their layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class UnaryStats:
    def __init__(self, sizes: Sequence[int], mode: str = "epoch", window: int = 100_000):
        if mode not in ("epoch", "window"):
            raise ValueError("mode must be 'epoch' or 'window'")
        self.sizes = [int(s) for s in sizes]
        self.mode, self.window = mode, int(window)
        self.n = len(self.sizes)
        S = max(self.sizes)
        self.sum = np.zeros((self.n, S))
        self.count = np.zeros((self.n, S), dtype=np.int64)
        self.last_sum = np.zeros((self.n, S))   # the previous full epoch ("epoch" mode)
        self.last_count = np.zeros((self.n, S), dtype=np.int64)
        # per choice, the average of the last epoch that saw it (NaN: never seen)
        self.known = np.full((self.n, S), np.nan)
        if mode == "window":
            self.ring = np.zeros((self.n, S, self.window), dtype=np.float32)

    def update(self, idx: np.ndarray, d: np.ndarray) -> None:
        """idx: (B, n) choice indices of the searchable layers; d: (B,) loss differences."""
        idx = np.asarray(idx, dtype=np.int64)
        vals = -np.asarray(d, dtype=np.float64) / self.n
        for i in range(self.n):
            if self.mode == "epoch":
                np.add.at(self.sum[i], idx[:, i], vals)
                np.add.at(self.count[i], idx[:, i], 1)
            else:
                self._push_window(i, idx[:, i], vals)

    def _push_window(self, i: int, choices: np.ndarray, vals: np.ndarray) -> None:
        """Append values to the ring buffers of layer i (one slice op per choice)."""
        W = self.window
        for c in np.unique(choices):
            v = vals[choices == c].astype(np.float32)
            for part in range(0, v.size, W):  # more than W values: keep pushing in turn
                chunk = v[part:part + W]
                k, start = chunk.size, int(self.count[i, c])
                pos = (start + np.arange(k)) % W
                overwritten = (start + np.arange(k)) >= W
                self.sum[i, c] += float(chunk.sum(dtype=np.float64))
                self.sum[i, c] -= float(self.ring[i, c, pos[overwritten]].sum(dtype=np.float64))
                self.ring[i, c, pos] = chunk
                self.count[i, c] = start + k

    def end_epoch(self) -> None:
        if self.mode == "epoch":
            self.last_sum, self.last_count = self.sum.copy(), self.count.copy()
            seen = self.count > 0
            self.known[seen] = self.sum[seen] / self.count[seen]
            self.sum[:] = 0.0
            self.count[:] = 0

    def unaries(self) -> list[np.ndarray]:
        """u_i(c) per layer (see the module's docstring for unseen choices)."""
        if self.mode == "epoch" and self.last_count.any():
            vals = self.known
        else:  # window, or the first epoch still running: the running averages
            s, c = (self.sum, np.minimum(self.count, self.window)) if self.mode == "window" \
                else (self.sum, self.count)
            vals = np.where(c > 0, s / np.maximum(c, 1), np.nan)
        out = []
        for i, size in enumerate(self.sizes):
            u = vals[i, :size]
            fill = np.nanmin(u) if np.any(~np.isnan(u)) else 0.0
            out.append(np.where(np.isnan(u), fill, u))
        return out

    _ARRAYS = ("sum", "count", "last_sum", "last_count", "known", "ring")

    def state_dict(self) -> dict:
        """Tensors only, so checkpoints load with torch.load(weights_only=True)."""
        return {k: torch.from_numpy(getattr(self, k).copy()) for k in self._ARRAYS
                if hasattr(self, k)}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            if k not in self._ARRAYS or getattr(self, k).shape != tuple(v.shape):
                raise ValueError(f"unary statistics checkpoint does not fit: {k}")
            setattr(self, k, v.numpy().copy())

    def counts(self) -> list[np.ndarray]:
        c = self.last_count if self.mode == "epoch" and self.last_count.any() else self.count
        return [c[i, :s].copy() for i, s in enumerate(self.sizes)]
