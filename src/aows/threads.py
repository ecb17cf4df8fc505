"""torch's CPU thread count, set for one piece of work and restored after (it is
process-wide: left set by a timing, it slowed the training that followed to one core)."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """torch's CPU thread count (process-wide) set to ``threads`` inside, restored after;
    None leaves it as it is."""
    prev = torch.get_num_threads()
    if threads is not None and threads != prev:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != prev:
            torch.set_num_threads(prev)
