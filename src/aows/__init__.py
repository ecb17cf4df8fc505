"""aows: adaptive and optimal network width search under a latency budget."""

from aows.space import SearchSpace, SpaceError, get_space, mobilenet_v1

__version__ = "0.1.0"
__all__ = ["SearchSpace", "SpaceError", "get_space", "mobilenet_v1", "__version__"]
