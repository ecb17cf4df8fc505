"""Two processes under torchrun for tests/test_train_ddp.py (one launch, two checks):

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py \
        OUT [RUN_CONFIG]

First a DDP supernet training, compared by the test with one process: every step, both
processes get the *same* b images, so a one-process run on the two
copies side by side (batch 2b, 2G sampled configurations) is exactly the same
computation: BatchNorm statistics of [X, X] equal those of X. Each rank saves its
unary statistics and parameters to OUT/rank<r>.pt for the test to compare. Then, with
RUN_CONFIG, ``aows run RUN_CONFIG --out OUT/run`` in the same process group: training and
fine-tuning distributed, the other stages on rank 0.

The learning rate is 0: with BatchNorm over slices of 4 images, this tiny supernet
amplifies float reassociation (DDP's sum-then-average against one mean) into different
weights within 3 steps at any useful rate, which would hide real errors. At lr 0 the
SGD momentum buffers still accumulate every step's all-reduced gradient, so comparing
them checks the gradients exactly; the unary statistics check the sampler and gather.
"""

import sys

import numpy as np
import torch
import torch.distributed as dist

from aows.cli import main as aows
from aows.latency.fit import flops_vector
from aows.latency.model import LatencyModel
from aows.spaces import mobilenet_v1
from aows.train.loop import TrainConfig, train_supernet

B, G, STEPS = 8, 2, 3


def space():
    return mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)


def latency(sp, meta=None):
    f = flops_vector(sp)
    return LatencyModel.from_unknowns(sp, 0.05 + f / f.max(), "synthetic", meta or {})


def budget(model, sp):
    return 0.5 * (model.predict(sp.narrowest()) + model.predict(sp.widest()))


def images(epoch, k, copies=1):
    g = torch.Generator().manual_seed(1000 * epoch + k)
    x = torch.randn(B, 3, 32, 32, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
    return torch.cat([x] * copies), torch.cat([y] * copies)


def batches(copies=1):
    return lambda epoch: (images(epoch, k, copies) for k in range(STEPS))


def config(world):
    sp = space()
    return TrainConfig(epochs=4, batch_size=B * (2 // world), sampled=G * (2 // world),
                       method="aows", budget=budget(latency(sp), sp), lr=0.0,
                       progress=False)


def main(out, run_config=None):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    sp = space()
    net, stats = train_supernet(sp, batches(), config(2), out, latency(sp))
    torch.save({"stats": stats.state_dict(),
                "params": {k: v.detach().clone() for k, v in net.named_parameters()},
                "unaries": [torch.from_numpy(np.asarray(u)) for u in stats.unaries()]},
               f"{out}/rank{rank}.pt")
    code = 0 if run_config is None else aows(["run", run_config, "--out", f"{out}/run"])
    dist.destroy_process_group()
    sys.exit(code)


if __name__ == "__main__":
    main(*sys.argv[1:])
