"""aows: adaptive and optimal network width search under a latency budget.

The names below are loaded on first use, so that ``import aows`` (and so the command
line's start, ``aows --help``) does not import torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_WHERE = {"SearchSpace": "aows.space", "SpaceError": "aows.space",
          "get_space": "aows.catalogue", "mobilenet_v1": "aows.spaces"}
__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'aows' has no attribute '{name}'")
