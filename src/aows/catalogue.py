"""The catalogue of search spaces: every front end that produces a width graph, by name.

``get_space`` is the one way in for a name a user gives: a built-in space
(``aows.spaces.SPACES``), a space file (``*.yaml``), or a model (``torchvision:NAME``,
``timm:NAME``, ``path/to/file.py:FUNCTION``) whose width graph ``aows.extract`` finds.
``space_from_description`` rebuilds the space a file describes, a model's included.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from aows.extract import ModelSpace, model_space
from aows.models import PREFIXES, is_model_spec
from aows.space import SearchSpace, SpaceError
from aows.spaces import SPACES, load_space_file

__all__ = ["get_space", "model_code_file", "space_from_description"]

log = logging.getLogger(__name__)


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


def model_code_file(model: str | None) -> str | None:
    """The file of user code a model name runs (``path/to/file.py:FUNCTION``), else None
    (``torchvision:``/``timm:`` names and built-in spaces run no code of a user's). Any
    other model name counts as code, whatever its file is called."""
    if not model:
        return None
    if not isinstance(model, str):
        raise SpaceError(f"the model name {model!r} is not a string")
    if model.startswith(PREFIXES):
        return None
    return model.split(":", 1)[0]


def space_from_description(desc: dict, *, trust: bool | str = False,
                           where: str = "the file") -> SearchSpace:
    """The space a file (samples, latency model, unaries, final network) describes.

    A model's space is extracted again from the model (its module builds the networks) and
    must match the description. The one rule for code a file names: a model from a file
    (``path/to/file.py:FUNCTION``) is imported only with the user's consent, since
    whoever wrote the file chose the code. Without it the space comes back as data (its
    layers and choices: enough to fit, predict and search) and building a network of it
    raises an error that says how to consent. A weights path a file names is never read
    (the width graph does not depend on the weights, and every loader replaces them).

    Args:
        desc: the ``"space"`` field of the file.
        trust: False: run no code the file names; True: run the model file the
            description records (it is logged); a model name: the model the user gave
            (``--model``), used instead of the recorded one.
        where: the file, for messages.
    """
    params = dict((desc.get("params") or {}) if isinstance(desc, dict) else {})
    model = params.get("model")
    if not model:
        return SearchSpace.from_description(desc)
    data = SearchSpace.from_description({**desc, "params": {}})
    params.pop("weights", None)
    code = model_code_file(model)
    if isinstance(trust, str):
        params["model"] = trust
    elif code is not None and not trust:
        return replace(ModelSpace.from_description(desc), locked=(
            f"{where} was made from your model code {code}; aows runs no code that a file "
            f"names: add --trust-model-code to run {code} (from Python: "
            "trust_model_code=True)"))
    elif code is not None:
        log.warning(f"running model code {code}, named by {where} (trusted)")
    space = model_space(**params)
    space.check_same(data, where)
    return space
