"""A module exported to ONNX in memory: the bytes that timing backends, remote targets
and final networks use."""

from __future__ import annotations

import inspect
import io
import warnings

import torch
from torch import nn

from aows.outputs import output_names

__all__ = ["onnx_bytes"]


def onnx_bytes(model: nn.Module, input_shape: tuple[int, ...], fp16: bool = False) -> bytes:
    """Export a module to ONNX in memory (TorchScript-based exporter, opset 17): one input
    "input"; the outputs named by ``aows.outputs.output_names`` (a dict's keys)."""
    model = model.eval()
    x = torch.randn(input_shape)
    with torch.no_grad():
        names = output_names(model(x))
    buf = io.BytesIO()
    # The TorchScript exporter needs no extra package (the dynamo one needs onnxscript);
    # torch >= 2.9 flags it as legacy, which says nothing about this use.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = ({"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters
                  else {})  # the flag exists from torch 2.5; before, legacy is the only one
        torch.onnx.export(model, (x,), buf, input_names=["input"], output_names=names,
                          opset_version=17, **legacy)
    return buf.getvalue()
