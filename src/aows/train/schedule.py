"""AOWS temperature schedule (the AOWS supplementary, section B), stretched to a run's length.

Uniform sampling during warm-up; then T is piecewise log-linear *per iteration*
through 1 at the end of warm-up (epoch 5 of 20), 1e-2 one epoch later, 1e-3 at
epoch 10 and 5e-4 at the end (epoch 20). For a run of E epochs the knots after the
warm-up keep their share of the post-warm-up span.
"""

from __future__ import annotations

import numpy as np

# (epoch, temperature) of the paper's 20-epoch run
PAPER_KNOTS = ((5.0, 1.0), (6.0, 1e-2), (10.0, 1e-3), (20.0, 5e-4))
PAPER_EPOCHS = 20.0


def temperature(progress_epochs: float, epochs: float, warmup: float | None = None
                ) -> float | None:
    """Temperature at a (fractional) epoch, or None during warm-up (uniform sampling).

    ``warmup`` defaults to the paper's 5/20 of the run.
    """
    if epochs <= 0:
        raise ValueError("epochs must be > 0")
    p0 = PAPER_KNOTS[0][0]
    warmup = epochs * p0 / PAPER_EPOCHS if warmup is None else float(warmup)
    if progress_epochs < warmup:
        return None
    span = max(epochs - warmup, 1e-12)
    xs = [warmup + (e - p0) / (PAPER_EPOCHS - p0) * span for e, _ in PAPER_KNOTS]
    logs = [np.log(t) for _, t in PAPER_KNOTS]
    return float(np.exp(np.interp(progress_epochs, xs, logs)))
