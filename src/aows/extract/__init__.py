"""From a user's ``nn.Module`` to its width graph.

The module is traced with ``torch.fx`` (PyTorch's own graph capture) and run once on an
example input to learn every tensor's shape. Each tensor with a channel dimension gets a
channel slot; slots that must have one width are merged (union-find):

- a convolution, transposed convolution or linear map starts a new slot at its output;
  a depthwise conv keeps its input's;
- BatchNorm, activations, dropout, pooling, a flatten of a 1x1 map, upsampling and
  spatial padding keep their input's (an upsampling or padding is a layer of its own: it
  changes the resolution);
- an elementwise addition or multiplication merges the slots it combines (residuals,
  squeeze-and-excitation gates);
- a concatenation makes a slot whose parts are its inputs' slots: every branch keeps its
  own width, and what reads the concatenation reads the leading slice of each branch at
  its offset (``SearchSpace.channel_index``).

Every merged slot is a width variable. What width search cannot change safely is
*held* at its width, with the reason: the input image and the output, a concatenation
whose channels are combined with others (added, multiplied), a grouped conv (its group
count must divide the width), a reshape that folds channels into other dimensions, a
parameter added or multiplied along the channels, and anything aows does not know
(another module type, a subclass of Conv2d with its own forward, an unknown function).
Held is the safe default: an unknown op can only cost search freedom, never a wrong
network.

The layers of the graph (their type keys are the latency unknowns) are the convs with
the BatchNorm and activation that directly follow them, pools, residual additions and
gates, concatenations, the classifier (with its global pooling), and unknown ops as
constant terms.

Why not Torch-Pruning's DependencyGraph: it groups channels for pruning arbitrary index
sets, not for a slimmable supernet whose every configuration is a leading slice per
variable (its groups do run through concatenations by index mapping, as these slots
do); and it gives no op types and resolutions, which the latency model needs. One fx
trace gives both.
"""

from aows.extract.model import ModelSpace, extract, model_choices, model_space
from aows.extract.rules import register
from aows.extract.trace import held_kind, summarise_held

__all__ = ["ModelSpace", "extract", "held_kind", "model_choices", "model_space", "register",
           "summarise_held"]
