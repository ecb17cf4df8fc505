"""aows: adaptive and optimal network width search under a latency budget.

The entry points a user needs, one import away (``aows.get_space``, ``aows.fit``, ...):

    >>> import aows
    >>> space = aows.get_space("torchvision:resnet18", resolution=64, classes=10)
    >>> small, order = aows.export_from_model(space, space.multiplier_config(0.5))

They are loaded on first use, so that ``import aows`` (and so the command line's start,
``aows --help``) does not import torch. Each is documented where it lives (the module in
``_WHERE``); ``examples/`` runs them end to end.
"""

from importlib import import_module

__version__ = "0.1.0"

_WHERE = {
    # the width graph: spaces by name, a model's graph, the data model
    "get_space": "aows.catalogue", "model_space": "aows.extract",
    "mobilenet_v1": "aows.spaces", "SearchSpace": "aows.space", "SpaceError": "aows.space",
    # stage 1: latency
    "collect": "aows.latency.measure", "read_samples": "aows.latency.store",
    "fit": "aows.latency.fit", "LatencyModel": "aows.latency.model",
    # stage 2: supernet training
    "TrainConfig": "aows.train.config", "train_supernet": "aows.train.loop",
    "order_channels": "aows.importance",
    # stage 3: search
    "Problem": "aows.solve", "search": "aows.solve", "load_unaries": "aows.solve",
    # stage 4: the final network
    "export_config": "aows.final", "export_from_model": "aows.final",
    "load_supernet": "aows.final", "save_final": "aows.final", "load_final": "aows.final",
    "measure_networks": "aows.final",
    # all of it
    "run": "aows.pipeline", "load_config": "aows.config",
}
_RENAMED = {"run": "run_pipeline"}
__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'aows' has no attribute '{name}'")


def __dir__():
    return sorted([*globals(), *_WHERE])
