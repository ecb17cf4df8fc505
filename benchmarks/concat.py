"""Concatenations searched: widths, speed range and the latency model, before and after.

    python benchmarks/concat.py [--networks 120] [--heldout 40] [--repeats 5]

For DenseNet-121 (torchvision, 32 px) and the U-Net with concatenated skips of
``aows.demo`` (32 px): the searchable widths with concatenations held (as aows did
before, ``extract(..., search_concat=False)``) and searched; the speed range, the
widest network's time over the narrowest one's, measured (torch-cpu, batch 1, the
anchored protocol of `aows latency generate`, median of --repeats timings) and in MACs.
Then, on the U-Net, whether the latency terms of its concatenations (one per part,
``SearchSpace.terms``) predict timings: a fit on --networks uniformly drawn networks,
its NRMSE on --heldout others, against the noise floor (the same held-out networks timed
a second time). Targets (issue 23): at least twice DenseNet's 58 searchable widths and a
wider speed range than 1.7x; the U-Net's held-out error near its noise floor.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from aows.demo import MODEL_FILE
from aows.extract import extract
from aows.latency.backends import Target
from aows.latency.fit import fit
from aows.latency.measure import time_configs
from aows.latency.protocol import Protocol
from aows.latency.store import Samples
from aows.latency.validate import error_metrics
from aows.models import load_model


def spaces(model: str, res: int):
    """The space with concatenations held and searched (both model spaces of ``model``)."""
    module = load_model(model, 10 if model.startswith("torchvision") else None)
    params = {"model": model, "resolution": res}
    if model.startswith("torchvision"):
        params["classes"] = 10
    held = extract(module, (3, res, res), name=model, params=dict(params),
                   search_concat=False)
    found = extract(module, (3, res, res), name=model, params=dict(params))
    return held, found


def speed_range(held, found, target, proto, repeats: int) -> dict:
    """Each network timed ``repeats`` times (separate timings, median)."""
    configs = [found.widest(), found.narrowest()]
    ms = np.median([time_configs(found, configs, target, proto, seed=k)
                    for k in range(repeats)], axis=0)
    ms_held = np.median([time_configs(held, [held.narrowest()], target, proto, seed=k)
                         for k in range(repeats)], axis=0)
    return {"widest_ms": ms[0], "narrowest_ms": ms[1], "held_narrowest_ms": ms_held[0],
            "range": ms[0] / ms[1], "held_range": ms[0] / ms_held[0],
            "macs_range": found.flops(found.widest()) / found.flops(found.narrowest()),
            "held_macs_range": held.flops(held.widest()) / held.flops(held.narrowest())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--networks", type=int, default=120)
    ap.add_argument("--heldout", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5, help="timings of each network of "
                    "the speed range (median)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    target = Target("torch-cpu", batch_size=1, threads=args.threads)
    proto = Protocol()
    models = {"DenseNet-121": "torchvision:densenet121", "U-Net (concatenated skips)":
              f"{MODEL_FILE}:cat_unet"}
    print("| model (32 px) | searchable widths, held / searched | concatenations | "
          "linearised terms | speed range measured, held / searched | MACs range, held "
          "/ searched |")
    print("|---|---|---|---|---|---|")
    unet = None
    for name, model in models.items():
        t = time.perf_counter()
        held, found = spaces(model, 32)
        r = speed_range(held, found, target, proto, args.repeats)
        print(f"| {name} | {held.n_searchable} / {found.n_searchable} | "
              f"{len(found.concats)} | {len(found.linearised)} of "
              f"{found.n_terms} | {r['held_range']:.2f}x / {r['range']:.2f}x "
              f"({r['widest_ms']:.2f} ms widest) | {r['held_macs_range']:.2f}x / "
              f"{r['macs_range']:.2f}x |  ({time.perf_counter() - t:.0f} s)", flush=True)
        if model.endswith("cat_unet"):
            unet = found
    rng = np.random.default_rng(0)
    train = unet.uniform_sample(rng, args.networks)
    test = unet.uniform_sample(rng, args.heldout)
    t = time.perf_counter()
    y = time_configs(unet, train, target, proto, seed=1)
    first = time_configs(unet, test, target, proto, seed=2)
    second = time_configs(unet, test, target, proto, seed=3)
    model = fit(unet, Samples([tuple(c) for c in train], y), normalise=False)
    pred = model.predict_many(test)
    floor = error_metrics(second, first)["nrmse"]
    err = error_metrics(pred, (first + second) / 2)["nrmse"]
    print(f"\nU-Net latency model ({len(model.space.unknowns()[0])} unknowns, "
          f"{sum(k.endswith('-cat') or k.endswith('-cat+') for k, _, _ in unet.unknowns()[0])}"
          f" of them concatenation parts): fit on {args.networks} networks, held-out "
          f"NRMSE {100 * err:.2f} % against a noise floor (test-retest) of "
          f"{100 * floor:.2f} %; ratio {err / floor:.2f} "
          f"({time.perf_counter() - t:.0f} s of timing and fitting)")


if __name__ == "__main__":
    main()
