"""Networks: plain PyTorch modules for one configuration of a search space."""

from aows.nn.build import build_layer, build_network, layer_input_shape
from aows.nn.ops import OPS, get_op

__all__ = ["OPS", "build_layer", "build_network", "get_op", "layer_input_shape"]
