"""The supernet of a space: one constructor for built-in spaces and users' models."""

from __future__ import annotations

from torch import nn

from aows.nn.modelnet import ModuleSupernet
from aows.nn.slimmable import SlimmableNetwork
from aows.space import SearchSpace

__all__ = ["make_supernet"]


def make_supernet(space: SearchSpace, scratch: bool = False,
                  module: nn.Module | None = None) -> nn.Module:
    """The supernet of a space: built from its ops, or, for a model's space, the user's
    module (``module``, default ``space.load_module()``) with slimmable layers holding
    its own weights (``scratch``: re-initialised)."""
    if hasattr(space, "plan"):  # aows.extract.ModelSpace
        return ModuleSupernet(space, scratch=scratch, module=module)
    return SlimmableNetwork(space)
