"""The catalogue of search spaces: every front end that produces a width graph, by name.

``get_space`` is the one way in for a name a user gives: a built-in space
(``aows.spaces.SPACES``), a space file (``*.yaml``), or a model (``torchvision:NAME``,
``timm:NAME``, ``path/to/file.py:FUNCTION``) whose width graph ``aows.extract`` finds.
``space_from_description`` rebuilds the space a file describes, a model's included.
"""

from __future__ import annotations

from aows.extract import model_space
from aows.models import is_model_spec
from aows.space import SearchSpace, SpaceError
from aows.spaces import SPACES, load_space_file

__all__ = ["get_space", "space_from_description"]


def get_space(name: str, **params) -> SearchSpace:
    """A search space.

    Args:
        name: a built-in space (``SPACES``: mobilenet_v1, resnet18, resnet50,
            mobilenet_v2), the path of a space file (``*.yaml``/``*.yml``), or a model
            (``torchvision:NAME``, ``timm:NAME``, ``path/to/file.py:FUNCTION``) whose
            width graph ``aows.extract`` finds.
        **params: resolution, classes, min_width, max_width, levels, divisor, ...;
            None keeps the space's default.

    Returns:
        The space (a ``ModelSpace`` for a model: it also builds the model's networks).

    Raises:
        SpaceError: an unknown name, a malformed file, or parameters the space refuses.

    Example:
        >>> space = get_space("resnet18", resolution=64)
        >>> space.n_searchable
        12
    """
    params = {k: v for k, v in params.items() if v is not None}
    if is_model_spec(name):
        return model_space(name, **params)
    if name.endswith((".yaml", ".yml")):
        return load_space_file(name, **params)
    if name not in SPACES:
        raise SpaceError(f"unknown search space '{name}'; available: {sorted(SPACES)}, or a "
                         "space file (.yaml)")
    return SPACES[name](**params)


def space_from_description(desc: dict) -> SearchSpace:
    """The space a file (samples, latency model, unaries, final network) describes. A
    model's space is extracted again from the model (its module is needed to build
    networks) and must match the description."""
    model = (desc.get("params") or {}).get("model") if isinstance(desc, dict) else None
    if model:
        space = model_space(**desc["params"])
        space.check_same(SearchSpace.from_description({**desc, "params": {}}), "file")
        return space
    return SearchSpace.from_description(desc)
