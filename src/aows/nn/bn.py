"""BatchNorm statistics re-estimated for one configuration: the shared statistics of a
supernet (or a sliced model's full-width ones) fit none of its narrower widths, so they
are replaced by the cumulative average over a few training batches run at that
configuration before a network is evaluated or exported."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

__all__ = ["recalibrate_bn", "reestimate_bn"]


@torch.no_grad()
def recalibrate_bn(net: nn.Module, config: Sequence[int],
                   batches: Iterable[torch.Tensor]) -> None:
    """Re-estimate BN running statistics at ``config`` (cumulative average over batches),
    in place: the statistics of every width are replaced."""
    net.set_config(config)
    reestimate_bn(net, batches)


@torch.no_grad()
def reestimate_bn(net: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace the running statistics of every BatchNorm of ``net`` (a supernet at its
    current configuration, or any plain module) by their cumulative average over
    ``batches`` of images, in place; momentum, the batch counters and the module's mode
    are left as they were. Returns the number of batches read (0: statistics reset)."""
    was_training = net.training
    # every BatchNorm: the supernet's sliced ones and a user model's own (all at the
    # widths of this configuration)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = None
        m.num_batches_tracked.zero_()
        m.running_mean.zero_()
        m.running_var.fill_(1.0)
    net.train()
    n = 0
    for x in batches:
        net(x)
        n += 1
    for m, (mom, nbt) in zip(bns, saved):
        m.momentum = mom
        m.num_batches_tracked.copy_(nbt)
    net.train(was_training)
    return n
