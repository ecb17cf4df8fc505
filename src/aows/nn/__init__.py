"""Networks: plain PyTorch modules for one configuration of a search space."""

from aows.nn.build import LAYER_BUILDERS, build_layer, build_network, layer_input_shape

__all__ = ["LAYER_BUILDERS", "build_layer", "build_network", "layer_input_shape"]
