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
                for c, v in zip(idx[:, i], vals):
                    k = self.count[i, c]
                    slot = k % self.window
                    if k >= self.window:
                        self.sum[i, c] -= self.ring[i, c, slot]
                    self.ring[i, c, slot] = v
                    self.sum[i, c] += np.float32(v)
                    self.count[i, c] = k + 1

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

    def counts(self) -> list[np.ndarray]:
        c = self.last_count if self.mode == "epoch" and self.last_count.any() else self.count
        return [c[i, :s].copy() for i, s in enumerate(self.sizes)]
