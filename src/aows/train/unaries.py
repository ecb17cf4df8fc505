"""Unary statistics: the per-layer accuracy model that the search decodes.

For an image run at configuration c with d = CE(c) - CE(max), every searchable layer i
receives -d / n at its choice c_i (method.md section 2). u_i(c) is the average of what
its term received: over the last full epoch (the paper) or over a moving window of the
last N values per term (the reference uses N = 100,000).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
            self.sum[:] = 0.0
            self.count[:] = 0

    def unaries(self) -> list[np.ndarray]:
        """u_i(c) per layer; a choice never seen gets the lowest seen value of its layer."""
        if self.mode == "epoch":
            s, c = (self.last_sum, self.last_count) if self.last_count.any() else \
                (self.sum, self.count)
        else:
            s, c = self.sum, np.minimum(self.count, self.window)
        out = []
        for i, size in enumerate(self.sizes):
            cnt = c[i, :size]
            u = np.where(cnt > 0, s[i, :size] / np.maximum(cnt, 1), np.nan)
            fill = np.nanmin(u) if np.any(cnt > 0) else 0.0
            out.append(np.where(np.isnan(u), fill, u))
        return out

    _ARRAYS = ("sum", "count", "last_sum", "last_count", "ring")

    def state_dict(self) -> dict:
        """Tensors only, so checkpoints load with torch.load(weights_only=True)."""
        import torch
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
