"""Label-free width search on dense-output models: a U-Net (a map out) and a feature
pyramid (a dict of maps out), the supernet trained by distillation from the user's model
on images alone, against the width multiplier at the same predicted latency.

    python benchmarks/distill.py [--models unet fpn] [--resolution 32]
        [--fractions 0.5 0.7] [--out benchmarks/out/distill]

Per model (``aows.demo``: ``unet`` and ``fpn``):

1. the user's model: a segmenter trained once on the digits (--epochs) to label every
   pixel with its digit where there is ink and with "background" elsewhere (at each
   pyramid level's resolution for the FPN), weights cached in --out; from here on the
   labels are never used by aows;
2. a latency model of its width graph on this CPU, as benchmarks/trained_model.py makes
   one (cover-sampled networks, held-out networks timed twice for the noise floor);
3. an OWS supernet started from the model, trained with ``objective="distill"`` (every
   configuration matches the frozen model's outputs; the unaries are distillation-loss
   differences);
4. at each budget (--fractions of the model's predicted latency): the exact search's
   configuration and the uniform multiplier's (the widest uniform configuration within
   the budget, ``search(..., "uniform")``), both exported from the same supernet with
   BatchNorm re-estimated on --calib batches, and scored by their distillation error
   against the user's model on the validation images (``compare_outputs``: 0 is the
   model's outputs, 1.0 per output is outputs of zeros), and, as the task metric, by
   the share of ink pixels labelled with the right digit (the finest output).

The target (issue #23): at every budget the searched configuration's error is below the
multiplier's, at a predicted latency no higher. The ratio searched / uniform is printed;
the spread of the error over the validation images gives its standard error.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from aows.chain import BudgetError
from aows.demo import MODEL_FILE, ink_accuracy, train_segmenter
from aows.extract import model_space
from aows.final import export_config
from aows.io import load_tensors
from aows.outputs import output_tensors
from aows.solve import Problem, search
from aows.train.config import TrainConfig
from aows.train.data import get_data
from aows.train.loop import train_supernet
from aows.train.objective import distill_loss, to_float
from trained_model import latency_model  # benchmarks/trained_model.py


def user_model(name: str, data, args):
    """The user's model: a digit segmenter trained with labels (weights cached)."""
    spec = f"{MODEL_FILE}:{name}"
    cache = Path(args.out) / f"{name}_{args.resolution}px_{args.epochs}ep_seg.pt"
    space = model_space(spec, input_shape=(3, args.resolution, args.resolution))
    module = space.load_module()
    if cache.exists():
        module.load_state_dict(load_tensors(cache, "weights"))
        return spec, cache, module.eval()
    t0 = time.perf_counter()
    train_segmenter(module, data.train, args.epochs, args.seed)
    print(f"{name}: trained {args.epochs} epochs to segment the digits in "
          f"{time.perf_counter() - t0:.0f} s; ink-pixel accuracy "
          f"{100 * ink_accuracy(module, data.val(0)):.1f} %")
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().clone() for k, v in module.state_dict().items()}, cache)
    return spec, cache, module


@torch.no_grad()
def distill_error(net, teacher, batches) -> tuple[float, float]:
    """Mean per-image distillation error against the teacher on the whole set (squared
    errors over the set's mean square, as `aows evaluate` gives it) and its standard
    error."""
    net.eval()
    outs, refs = [], []
    for x, _ in batches:
        outs.append(output_tensors(to_float(net(x))))
        refs.append(output_tensors(to_float(teacher(x))))
    per = distill_loss([torch.cat(t) for t in zip(*outs)], [torch.cat(t) for t in zip(*refs)])
    return float(per.mean()), float(per.std() / per.numel() ** 0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["unet", "fpn"])
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=6, help="of the user's model")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.7])
    ap.add_argument("--networks", type=int, default=150, help="timed for the latency model")
    ap.add_argument("--heldout", type=int, default=40)
    ap.add_argument("--supernet-epochs", type=int, default=10)
    ap.add_argument("--calib", type=int, default=8, help="BatchNorm re-estimation batches")
    ap.add_argument("--out", default="benchmarks/out/distill")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = get_data("digits", args.resolution, args.batch_size, args.seed)
    results = {}
    for name in args.models:
        t0 = time.perf_counter()
        folder = out / name
        spec, weights, teacher = user_model(name, data, args)
        space = model_space(spec, input_shape=(3, args.resolution, args.resolution),
                            weights=str(weights))
        print(f"\n{name}: {space.n_searchable} searchable widths")
        model = latency_model(space, folder / "latency", args)
        widest = model.predict(space.widest())
        cfg = TrainConfig(epochs=args.supernet_epochs, batch_size=args.batch_size,
                          seed=args.seed, device="cpu", progress=False, objective="distill",
                          data="digits")
        run = folder / f"ows_{args.supernet_epochs}ep"
        net, stats = train_supernet(space, data.train, cfg, run, model, resume=True)
        problem = Problem(model, stats.unaries())
        rows = []
        for frac in args.fractions:
            budget = frac * widest
            row = {"fraction": frac, "budget_ms": budget}
            for method in ("exact", "uniform"):
                try:
                    found = search(problem, budget, method)
                except BudgetError as err:
                    print(f"  budget {frac:g}: no {method} network fits ({err})")
                    break
                plain = export_config(net, found["config"], data.train(0), args.calib)
                err, se = distill_error(plain, teacher, data.val(0))
                row[method] = {"config": list(found["config"]), "error": err, "se": se,
                               "predicted_ms": found["predicted_latency_ms"],
                               "ink_accuracy": ink_accuracy(plain, data.val(0))}
            else:
                row["ratio"] = row["exact"]["error"] / row["uniform"]["error"]
                rows.append(row)
                print(f"  budget {frac:g} x {widest:.3f} ms: searched error "
                      f"{row['exact']['error']:.4f} +- {row['exact']['se']:.4f} at "
                      f"{row['exact']['predicted_ms']:.3f} ms (ink "
                      f"{100 * row['exact']['ink_accuracy']:.1f} %), uniform "
                      f"{row['uniform']['error']:.4f} +- {row['uniform']['se']:.4f} at "
                      f"{row['uniform']['predicted_ms']:.3f} ms (ink "
                      f"{100 * row['uniform']['ink_accuracy']:.1f} %): ratio {row['ratio']:.2f} "
                      f"({'target met' if row['ratio'] < 1 else 'target missed'})")
        results[name] = {"searchable": space.n_searchable, "widest_ms": widest, "rows": rows,
                         "ink_accuracy": ink_accuracy(teacher, data.val(0)),
                         "seconds": round(time.perf_counter() - t0)}
    (out / "distill.json").write_text(json.dumps(results, indent=1))
    print(f"\n{out / 'distill.json'}")


if __name__ == "__main__":
    main()
