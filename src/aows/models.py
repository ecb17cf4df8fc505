"""A user's model by name: ``torchvision:NAME``, ``timm:NAME`` or ``path/to/file.py:FUNCTION``.

The module is built at full width, with the weights its source gives it: a function in a
file returns the user's trained module (it loads its own weights); torchvision and timm
models are built without downloading anything, so they start randomly initialised unless
``weights`` names a file of tensors (``state_dict``, read without unpickling objects).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import inspect
import logging
import sys
from pathlib import Path

from torch import nn

from aows.io import load_tensors
from aows.space import SpaceError

PREFIXES = ("torchvision:", "timm:")


def is_model_spec(name: str) -> bool:
    """True for the names this module loads (a ``.py:FUNCTION`` or a known prefix)."""
    return name.startswith(PREFIXES) or (":" in name and name.split(":", 1)[0].endswith(".py"))


# A torchvision detector is searched through this part of it (``NAME.backbone``): the
# backbone and its feature pyramid, a module from images to feature maps.
DETECTOR_PART = "backbone"


def load_model(spec: str, classes: int | None = None, weights: str | None = None) -> nn.Module:
    """The user's module at full width, in eval mode (a fresh copy on every call).

    Args:
        spec: ``torchvision:NAME``, ``timm:NAME`` or ``path/to/file.py:FUNCTION`` (a function
            that returns the module; called with ``num_classes=classes`` when it takes
            that argument and ``classes`` is given). A torchvision detector is named with
            its part: ``torchvision:fasterrcnn_resnet50_fpn.backbone``.
        classes: output classes for torchvision and timm models (default: theirs, 1000).
        weights: optional file of tensors loaded into the module (strictly); for a
            detector's backbone, the whole detector's ``state_dict`` also does.

    Raises:
        SpaceError: the model cannot be found or built, or the weights do not fit.
    """
    module = copy.deepcopy(_cached(spec, classes))
    if weights is not None:
        state = load_tensors(weights, "weights file")
        if not isinstance(state, dict):
            raise SpaceError(f"weights file {weights} holds a {type(state).__name__}, not a "
                             "state_dict; save `model.state_dict()`")
        prefix = f"{DETECTOR_PART}."
        if spec.endswith(f".{DETECTOR_PART}") and any(k.startswith(prefix) for k in state):
            # a whole detector's weights: its backbone's part
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            raise SpaceError(f"weights file {weights} does not fit model '{spec}': "
                             f"{' '.join(first[:3])[:400]}; give the weights of this model "
                             "at full width" + ("" if classes is not None or not spec.startswith(
                                 PREFIXES) else f" (a {spec.split(':')[0]} model is built "
                                 "with 1000 classes unless --classes says otherwise)")) \
                from None
    return module.eval()


@functools.lru_cache(maxsize=4)
def _cached(spec: str, classes: int | None) -> nn.Module:
    kind, _, name = spec.partition(":")
    if not name:
        raise SpaceError(f"model '{spec}' names nothing after ':'; use torchvision:NAME, "
                         "timm:NAME or path/to/file.py:FUNCTION")
    if kind == "torchvision":
        module = _torchvision(name, classes)
    elif kind == "timm":
        module = _timm(name, classes)
    else:
        module = _from_file(kind, name, classes)
    if not isinstance(module, nn.Module):
        raise SpaceError(f"model '{spec}' returned a {type(module).__name__}, not a "
                         "torch.nn.Module; the function must return the module")
    return module


def _torchvision(name: str, classes: int | None) -> nn.Module:
    try:
        import torchvision
    except ImportError:
        raise SpaceError("torchvision:... models need torchvision; install the torchvision "
                         "that matches your torch (`pip install torchvision`)") from None
    names = torchvision.models.list_models(module=torchvision.models)
    segmenters = torchvision.models.list_models(module=torchvision.models.segmentation)
    detectors = torchvision.models.list_models(module=torchvision.models.detection)
    base, _, part = name.partition(".")
    if base in detectors and part != DETECTOR_PART:
        raise SpaceError(
            f"torchvision:{name} is a detector: it takes lists of images and returns boxes, "
            f"which cannot be traced; search its backbone and feature pyramid, where its "
            f"time goes: --model torchvision:{base}.{DETECTOR_PART} (then put the exported "
            f"module back: detector.{DETECTOR_PART} = the final network)")
    if name not in names and name not in segmenters and base not in detectors:
        raise SpaceError(
            f"torchvision has no classification, segmentation or detection model '{name}'; "
            f"for example: {', '.join(n for n in names if 'resnet' in n or 'mobilenet' in n)}"
            f"; segmentation: {', '.join(segmenters)}; detection (NAME.{DETECTOR_PART}): "
            f"{', '.join(detectors)}")
    kwargs = {} if classes is None else {"num_classes": classes}
    if name not in names:  # no backbone weights either: nothing is downloaded
        kwargs["weights_backbone"] = None
    module = torchvision.models.get_model(base, weights=None, **kwargs)
    return getattr(module, DETECTOR_PART) if base in detectors else module


def _timm(name: str, classes: int | None) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise SpaceError("timm:... models need timm (`pip install timm`)") from None
    kwargs = {} if classes is None else {"num_classes": classes}
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as err:  # timm's "Unknown model"
        raise SpaceError(f"timm cannot build '{name}': {err}") from None


def _from_file(path: str, fn: str, classes: int | None) -> nn.Module:
    file = Path(path)
    if file.suffix != ".py":  # never bytecode or a native extension
        raise SpaceError(f"model file {path} is not a .py file; give path/to/file.py:FUNCTION")
    if not file.is_file():
        raise SpaceError(f"model file {path} does not exist; give path/to/file.py:FUNCTION")
    name = f"aows_user_model_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses and pickling-free torch code look modules up
    # said before: a file that loops or waits at import would otherwise hang without a word
    logging.getLogger(__name__).info(f"loading model file {path} (your code) ...")
    try:
        spec.loader.exec_module(mod)
    except Exception as err:  # the user's code: any error is theirs to fix
        del sys.modules[name]
        raise SpaceError(f"model file {path} fails to import: {type(err).__name__}: "
                         f"{err}") from None
    factory = getattr(mod, fn, None)
    if not callable(factory):
        found = [k for k, v in vars(mod).items() if callable(v) and not k.startswith("_")
                 and getattr(v, "__module__", None) == name]
        raise SpaceError(f"model file {path} has no function '{fn}'; functions there: "
                         f"{found}")
    kwargs = {}
    if classes is not None and "num_classes" in inspect.signature(factory).parameters:
        kwargs["num_classes"] = classes
    try:
        return factory(**kwargs)
    except Exception as err:
        raise SpaceError(f"{path}:{fn}() failed: {type(err).__name__}: {err}") from None
