"""A network's outputs, whatever their structure: a tensor, or a tuple, list or dict of
tensors (nested), as classifiers, detectors, segmenters and backbones return them. One
rule for every place that reads them (distillation, ONNX export and its check)."""

from __future__ import annotations

import torch

from aows.errors import AowsError

__all__ = ["output_names", "output_tensors"]


def output_tensors(out, what: str = "the model's output") -> list[torch.Tensor]:
    """The tensors of an output structure (tensor, tuple, list, dict; nested), in order
    (a dict's in its keys' order); an output holding none is an error."""
    found: list[torch.Tensor] = []

    def walk(o):
        if isinstance(o, torch.Tensor):
            found.append(o)
        elif isinstance(o, dict):
            for k in o:
                walk(o[k])
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)
    walk(out)
    if not found:
        raise AowsError(f"{what} holds no tensor (it is a {type(out).__name__}): aows "
                        "trains a model whose forward returns a tensor, or a tuple, list "
                        "or dict of tensors")
    return found


def output_names(out) -> list[str]:
    """Names of the tensors of an output structure, in ``output_tensors``' order: "output"
    for a lone tensor, a dict's keys (joined by dots when nested), "output<i>" for the
    items of a sequence (the ONNX graph's output names)."""
    if isinstance(out, torch.Tensor):
        return ["output"]
    names: list[str] = []

    def walk(o, prefix: str):
        if isinstance(o, torch.Tensor):
            names.append(prefix)
        elif isinstance(o, dict):
            for k in o:
                walk(o[k], f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(v, f"{prefix}.{i}" if prefix else f"output{i}")
    walk(out, "")
    return names
