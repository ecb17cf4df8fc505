"""Defaults shared by the library and the command line that must not import torch (the
command line builds its options from them before any heavy import)."""

# The channel-importance criteria (``aows.importance``) and the default: the criterion
# that kept the most top-1 straight after slicing in benchmarks/importance.py.
IMPORTANCE_CRITERIA = ("l1", "bn", "taylor", "none")
DEFAULT_IMPORTANCE = "l1"
