"""Supernet training throughput: sliced weights (ours) against channel masking (the
reference: every pass at full width, channels beyond each image's width zeroed).

    python benchmarks/train_throughput.py [--resolution 64] [--batch 32] [--threads 2]
    python benchmarks/train_throughput.py --model torchvision:resnet18 --sampled 2

``--model``: a user's module (``aows.extract``) instead of the MobileNet-v1 space; masking
then zeroes, per image, the channels beyond its width after every conv and BatchNorm
(forward hooks on the same supernet, run at full width).

Both run the same sandwich step (forward + backward + SGD): the widest configuration
on the labels, the narrowest and sampled configurations on its soft predictions. With
masking the sampled configurations are per image, in one full-width pass (written here,
as the reference does it); with slicing, G sampled configurations each run on their own
slice of the batch, and the step timed is the library's own (``aows.train.loop``,
unary statistics included). Steps are timed interleaved (A, B, A, B, ...) and the
median is kept, so load drifts hit both alike.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

from aows.catalogue import get_space
from aows.nn.supernet import make_supernet
from aows.spaces import mobilenet_v1
from aows.train.loop import TrainConfig, prepare_run
from aows.train.sampler import sample_configs


def distill(logits, soft):
    return -(soft * F.log_softmax(logits, 1)).sum(1).mean()


def sliced_runner(space, x, y, G, out):
    """The library's training step at G sampled configurations, on CPU, OWS sampling."""
    run = prepare_run(space, TrainConfig(batch_size=x.shape[0], sampled=G, lr=0.01,
                                         device="cpu", progress=False), out)
    return lambda: run.step(x, y, None)


class Masker:
    """Channel masking on a model's supernet: hooks after every planned conv, BatchNorm
    and linear zero the channels beyond each image's width of their variable."""

    def __init__(self, net, space):
        self.masks = {}
        pos = {v: j for j, v in enumerate(space.searchable)}
        for name, kind, _, b in space.plan:
            if b in pos and kind != "linear":
                net.net.get_submodule(name).register_forward_hook(
                    functools.partial(self.hook, b))
        self.pos = pos

    def hook(self, var, mod, inp, out):
        m = self.masks.get(var)
        return out if m is None else out * m[:, : out.shape[1], None, None]

    def forward(self, net, space, x, widths_per_image):
        for v, j in self.pos.items():
            c = space.choices[v][-1]
            self.masks[v] = (torch.arange(c)[None] < widths_per_image[:, j, None]).to(x.dtype)
        try:
            return net(x, space.widest())
        finally:
            self.masks.clear()


def masked_forward(net, space, x, widths_per_image):
    """Full-width pass; layer i's output channels beyond the image's width are zeroed."""
    if hasattr(space, "plan"):
        return net.masker.forward(net, space, x, widths_per_image)
    net.set_config(space.widest())
    h = x
    for i, layer in enumerate(net.layers):
        h = layer(h)
        if i < len(net.layers) - 1:
            w = widths_per_image[:, i]
            mask = (torch.arange(h.shape[1])[None, :] < w[:, None]).to(h.dtype)
            h = h * mask[:, :, None, None]
    return h


def masked_step(net, opt, space, x, y, rng):
    B = x.shape[0]
    opt.zero_grad(set_to_none=True)
    logits = net(x, space.widest())
    F.cross_entropy(logits, y).backward()
    soft = logits.detach().softmax(1)
    narrow = torch.tensor(space.narrowest())[None].expand(B, -1)
    distill(masked_forward(net, space, x, narrow), soft).backward()
    idx = sample_configs(rng, B, space)  # one configuration per image
    widths = torch.tensor([space.config_from_indices(r) for r in idx])
    distill(masked_forward(net, space, x, widths), soft).backward()
    opt.step()


def aows_overhead(space, repeat=50) -> float:
    """Seconds per step of AOWS sampling on the space: fresh unaries every
    step, so the Lagrangian decode is cold each time (the worst case)."""
    from aows.latency.fit import flops_vector
    from aows.latency.model import LatencyModel
    from aows.train.unaries import UnaryStats

    f = flops_vector(space)
    model = LatencyModel.from_unknowns(space, 0.05 + 8.0 * f / f.sum() * space.n_layers,
                                       "synthetic", {})
    budget = 0.5 * (model.predict(space.narrowest()) + model.predict(space.widest()))
    rng = np.random.default_rng(0)
    stats = UnaryStats([len(c) for c in space.searchable_choices])
    idx = sample_configs(rng, 4096, space)
    stats.update(idx, rng.normal(size=4096) + idx.sum(1) * -0.01)
    t = time.perf_counter()
    for _ in range(repeat):
        stats.update(idx[:32], rng.normal(size=32))
        sample_configs(rng, 2, space, model, stats.unaries(), budget, 1e-2)
    return (time.perf_counter() - t) / repeat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--sampled", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--model", default=None, help="e.g. torchvision:resnet18")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        space = get_space(args.model, resolution=args.resolution, classes=1000)
    else:
        space = mobilenet_v1(resolution=args.resolution, classes=1000)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution)
    y = torch.randint(0, 1000, (args.batch,))
    rng = np.random.default_rng(0)
    net = make_supernet(space)
    if args.model:
        net.masker = Masker(net, space)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    runs = {"masking": functools.partial(masked_step, net, opt, space, x, y, rng)}
    tmp = tempfile.mkdtemp()
    for G in args.sampled:
        runs[f"sliced G={G}"] = sliced_runner(space, x, y, G, f"{tmp}/G{G}")
    times = {k: [] for k in runs}
    for k in runs:  # warm-up
        runs[k]()
    for _ in range(args.steps):
        for k in runs:
            t = time.perf_counter()
            runs[k]()
            times[k].append(time.perf_counter() - t)
    base = args.batch / np.median(times["masking"])
    overhead = aows_overhead(space)
    what = args.model or "MobileNet-v1 space (Table D.1)"
    print(f"{what}, {args.resolution} px, batch {args.batch}, "
          f"{args.threads} threads, median of {args.steps} interleaved steps")
    for k, ts in times.items():
        ips = args.batch / np.median(ts)
        print(f"  {k:14s} {ips:7.1f} images/s   {ips / base:5.2f}x masking")
    step = float(np.median(times[f"sliced G={args.sampled[min(1, len(args.sampled) - 1)]}"]))
    print(f"AOWS sampling per step (unaries, Lagrangian gamma, joint sampling of G=2): "
          f"{1e3 * overhead:.2f} ms = {100 * overhead / step:.2f} % of the sliced step "
          f"({1e3 * step:.0f} ms)")


if __name__ == "__main__":
    main()
