"""The use case: a user's trained model, made faster on this CPU, its accuracy kept,
against what the user would otherwise do (a width multiplier, Torch-Pruning).

    pip install -e ".[compare]"   # torch-pruning, for the comparison only
    python benchmarks/trained_model.py [--models torchvision:resnet18 torchvision:mobilenet_v2]
        [--data digits] [--resolution 32] [--fractions 0.4 0.6 0.8] [--out DIR]

Per model (trained on --data by benchmarks/importance.py's recipe, weights cached):

1. a latency model of its width graph on this CPU (cover-sampled networks, a held-out set
   timed twice for the noise floor), as `aows run` makes one, refined on the search's
   picks at the budgets after the OWS supernet (--refine rounds, 0: off);
2. budgets: --fractions of the original's predicted latency;
3. supernets started from the trained model (channels ordered by the default importance):
   one OWS, and one AOWS per budget;
4. at each budget, one network per method, each fine-tuned with the same short recipe:
   - aows / ows: the exact search on the supernet's unaries, weights from the supernet;
   - uniform: the width multiplier that fits the budget (predicted), sliced from the
     trained model (importance-ordered) - what `aows export --model` gives;
   - torch-pruning: Torch-Pruning's magnitude pruner (group L1, the classifier kept)
     at the pruning ratio bisected until its *measured* latency, timed as the others,
     meets the budget;
   and, straight after slicing (no training, BatchNorm re-estimated), the uniform and
   the AOWS configurations sliced from the trained model with leading slices and with
   the importance order;
5. every final network timed together with the original (same chunk, same protocol,
   drift-normalised), and evaluated: measured ms, speed-up, top-1, parameters, MACs.

The uncertainty of a top-1 difference is the binomial standard error of the validation
split (printed); a measured latency is within the budget when it is at most the budget
times one plus the latency model's noise floor.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from aows.chain import BudgetError
from aows.defaults import DEFAULT_IMPORTANCE
from aows.extract import model_space
from aows.final import export_config, export_from_model, measure_networks
from aows.latency.defaults import DEFAULT_ROUNDS
from aows.latency.fit import fit
from aows.latency.measure import collect_interleaved, heldout_plan
from aows.latency.model import LatencyModel
from aows.latency.protocol import Protocol
from aows.latency.store import read_samples
from aows.latency.target import Target
from aows.latency.validate import check_model
from aows.nn.bn import reestimate_bn
from aows.refine import refine
from aows.solve import Problem, search
from aows.train.config import FinetuneConfig, TrainConfig
from aows.train.data import get_data
from aows.train.finetune import evaluate, finetune
from aows.train.loop import train_supernet
from importance import trained_model  # benchmarks/importance.py: the user's model


def latency_model(space, folder: Path, args):
    """Time and fit, as `aows run`'s latency stage does (resumable: files in folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    target, proto = Target("torch-cpu", threads=1), Protocol()
    plan = [(folder / "train.jsonl", args.networks, "cover", {}),
            *heldout_plan(space, folder, args.heldout)]
    t0 = time.perf_counter()
    collect_interleaved(space, target, proto, plan, 2, progress=False)
    model = fit(space, read_samples(folder / "train.jsonl", space))
    met, _, _ = check_model(model, read_samples(folder / "heldout.jsonl", space),
                            read_samples(folder / "heldout_retest.jsonl", space))
    model.meta["noise_floor"] = met["noise_floor"]["nrmse"]
    print(f"  latency model: {args.networks} networks, held-out NRMSE "
          f"{100 * met['nrmse']:.2f} %, noise floor {100 * model.meta['noise_floor']:.2f} % "
          f"({time.perf_counter() - t0:.0f} s)")
    return model


def torch_pruned(module, ratio: float, res: int):
    """Torch-Pruning's magnitude pruner (group L1 norm), the classifier kept whole."""
    import torch_pruning as tp
    net = copy.deepcopy(module).eval()
    fc = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1:]
    if ratio > 0:
        pruner = tp.pruner.MagnitudePruner(
            net, torch.randn(1, 3, res, res),
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=ratio, ignored_layers=fc)
        pruner.step()
    return net


def macs_of(net, res: int) -> float:
    import torch_pruning as tp
    macs, _ = tp.utils.count_ops_and_params(copy.deepcopy(net).eval(),
                                            torch.randn(1, 3, res, res))
    return float(macs)


def tp_for_budget(module, budget: float, model, res: int, steps: int):
    """The smallest Torch-Pruning ratio whose measured latency meets the budget
    (bisection on measured ms; fewer channels are never slower on this target)."""
    lo, hi, best = 0.0, 0.95, None
    for _ in range(steps):
        mid = (lo + hi) / 2
        net = torch_pruned(module, mid, res)
        ms = measure_networks({"tp": net}, model, {}, repeats=2)["networks"]["tp"][
            "measured_latency_ms"]
        if ms <= budget:
            hi, best = mid, (mid, net)
        else:
            lo = mid
    if best is None:
        best = (hi, torch_pruned(module, hi, res))
    return best


def bn_calibrated(net, data, batches: int):
    reestimate_bn(net, (x for x, _ in islice(data.train(1), batches)))
    return net.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+",
                    default=["torchvision:resnet18", "torchvision:mobilenet_v2"])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=30, help="of the user's model")
    ap.add_argument("--weight-decay", type=float, default=5e-4, help="of the user's model")
    ap.add_argument("--lr", type=float, default=0.2, help="of the user's model")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.4, 0.6, 0.8])
    ap.add_argument("--networks", type=int, default=300, help="timed for the latency model")
    ap.add_argument("--heldout", type=int, default=60)
    ap.add_argument("--supernet-epochs", type=int, default=6)
    ap.add_argument("--finetune-epochs", type=int, default=5)
    ap.add_argument("--calib", type=int, default=8, help="BatchNorm re-estimation batches")
    ap.add_argument("--bisect", type=int, default=6, help="Torch-Pruning bisection steps")
    ap.add_argument("--refine", type=int, default=DEFAULT_ROUNDS,
                    help="rounds of refining the latency model on the search's picks, as "
                    "`aows run` does (0: off)")
    ap.add_argument("--repeats", type=int, default=5, help="timing rounds of the finals")
    ap.add_argument("--cache", default="benchmarks/out/importance",
                    help="where the user's trained weights are cached (shared with "
                    "benchmarks/importance.py)")
    ap.add_argument("--out", default="benchmarks/out/trained_model")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = get_data(args.data, args.resolution, args.batch_size, args.seed)
    path = out / "trained_model.json"
    results = json.loads(path.read_text()) if path.exists() else {}  # other models' kept
    for spec in args.models:
        t_model = time.perf_counter()
        tag = spec.replace(":", "_").replace("/", "_")
        folder = out / tag
        ns = argparse.Namespace(**{**vars(args), "out": args.cache})
        _, module = trained_model(spec, data, ns)
        weights = folder / "weights.pt"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(module.state_dict(), weights)
        space = model_space(spec, resolution=args.resolution, classes=data.classes,
                            weights=str(weights))
        orig = evaluate(module, data.val(0))
        n = orig["images"]
        print(f"\n{spec}: original top-1 {100 * orig['top1']:.2f} % on {n} images, "
              f"{space.n_searchable} searchable widths")
        model = latency_model(space, folder / "latency", args)
        floor = model.meta["noise_floor"]
        orig_pred = model.predict(space.widest())
        base = TrainConfig(epochs=args.supernet_epochs, batch_size=args.batch_size,
                           seed=args.seed, device="cpu", progress=False,
                           importance=DEFAULT_IMPORTANCE, data=args.data)
        ows_net, ows_stats = train_supernet(space, data.train, base, folder / "ows", model,
                                            resume=True)
        if args.refine:  # as `aows run` does: time the search's picks, refit
            rep = refine(space, read_samples(folder / "latency" / "train.jsonl", space),
                         folder / "refine", unaries=ows_stats.unaries(),
                         budgets=[f * orig_pred for f in args.fractions], rounds=args.refine,
                         noise_floor=model.meta["noise_floor"],
                         heldout=read_samples(folder / "latency" / "heldout.jsonl", space),
                         progress=False)
            model = LatencyModel.load(folder / "refine" / "latency.json", space)
            model.meta["noise_floor"] = model.meta.get("noise_floor") or \
                rep["rounds"][-1]["tolerance"]
            print("  refined on the search's picks: NRMSE by round " + ", ".join(
                f"{100 * e['picks']['nrmse']:.2f} %" for e in rep["rounds"])
                + f" ({'every pick within' if rep['converged'] else 'NOT every pick within'}"
                " the noise floor); budgets from the refined model")
            orig_pred = model.predict(space.widest())
        ows = Problem(model, ows_stats.unaries())
        fractions = []
        for f in args.fractions:
            try:
                search(ows, f * orig_pred)
                fractions.append(f)
            except BudgetError as err:  # faster than any network of the space
                print(f"  budget {f:g} x original ({f * orig_pred:.3f} ms) is out of reach: "
                      f"{err}")
        budgets = [f * orig_pred for f in fractions]
        ft = FinetuneConfig(epochs=args.finetune_epochs, batch_size=args.batch_size,
                            seed=args.seed, device="cpu", progress=False)
        nets, configs, rows = {"original": module}, {"original": space.widest()}, []
        for frac, budget in zip(fractions, budgets):
            cfg = TrainConfig(**{**vars(base), "method": "aows", "budget": budget})
            aows_net, aows_stats = train_supernet(space, data.train, cfg,
                                                  folder / f"aows_{frac:g}", model,
                                                  resume=True)
            found = {"aows": search(Problem(model, aows_stats.unaries()), budget)["config"],
                     "ows": search(ows, budget)["config"]}
            try:
                found["uniform"] = search(ows, budget, "uniform")["config"]
            except BudgetError as err:  # the multiplier cannot go that low: said, skipped
                print(f"  budget {frac:g}: no uniform network fits ({err})")
            straight = {}
            for m in [m for m in ("uniform", "aows") if m in found]:  # sliced, no training
                for crit in ("none", DEFAULT_IMPORTANCE):
                    net, _ = export_from_model(space, found[m], crit, lambda: data.train(0),
                                               args.calib, module=copy.deepcopy(module))
                    straight[f"{m} {crit}"] = evaluate(net, data.val(0))["top1"]
            start = {
                "aows": export_config(aows_net, found["aows"], data.train(0), args.calib),
                "ows": export_config(ows_net, found["ows"], data.train(0), args.calib)}
            if "uniform" in found:
                start["uniform"] = export_from_model(space, found["uniform"],
                                                     DEFAULT_IMPORTANCE, lambda: data.train(0),
                                                     args.calib, module=copy.deepcopy(module))[0]
            ratio, tp_net = tp_for_budget(module, budget, model, args.resolution, args.bisect)
            start["torch-pruning"] = bn_calibrated(tp_net, data, args.calib)
            for m, net in start.items():
                before = evaluate(net, data.val(0))["top1"]
                res = finetune(net, data.train, None, ft, folder / "ft" / f"{m}_{frac:g}",
                               data.steps_per_epoch, resume=True)
                del res
                after = evaluate(net.eval(), data.val(0))
                name = f"{m} @{frac:g}"
                nets[name] = net.eval()
                configs[name] = found.get(m)
                rows.append({"method": m, "fraction": frac, "budget_ms": budget,
                             "config": found.get(m), "tp_ratio": ratio if m == "torch-pruning"
                             else None, "top1_before": before, "top1": after["top1"],
                             "straight": straight if m == "aows" else None})
            print(f"  budget {frac:g} x original ({budget:.3f} ms): straight after slicing "
                  + ", ".join(f"{k} {100 * v:.1f} %" for k, v in straight.items()))
        meas = measure_networks(nets, model, configs, repeats=args.repeats,
                                reference="original")
        o = meas["networks"]["original"]
        o_macs = macs_of(module, args.resolution)
        print(f"  noise floor {100 * floor:.2f} %; original: predicted {orig_pred:.3f} ms, "
              f"measured {o['measured_latency_ms']:.3f} ms, "
              f"{o['params'] / 1e6:.2f} M parameters, {o_macs / 1e6:.1f} MMACs")
        print("  | budget | method | measured ms | meets budget | speed-up | top-1 before "
              "FT | top-1 after FT | params | MMACs |")
        for r in rows:
            name = f"{r['method']} @{r['fraction']:g}"
            mr = meas["networks"][name]
            r.update(measured_ms=mr["measured_latency_ms"], speedup=mr["speedup"],
                     params=mr["params"], macs=macs_of(nets[name], args.resolution),
                     meets_budget=mr["measured_latency_ms"] <= r["budget_ms"] * (1 + floor))
            print(f"  | {r['fraction']:g} ({r['budget_ms']:.3f} ms) | {r['method']} | "
                  f"{r['measured_ms']:.3f} | {'yes' if r['meets_budget'] else 'NO'} | "
                  f"{r['speedup']:.2f}x | {100 * r['top1_before']:.1f} % | "
                  f"{100 * r['top1']:.1f} % | {r['params'] / 1e6:.3f} M | "
                  f"{r['macs'] / 1e6:.1f} |")
        p = float(np.mean([r["top1"] for r in rows]))
        print(f"  standard error of one top-1 on {n} images: about "
              f"{100 * np.sqrt(p * (1 - p) / n):.1f} points; "
              f"{time.perf_counter() - t_model:.0f} s for this model")
        results[spec] = {"fractions": fractions,
                         "original": {"top1": orig["top1"], "predicted_ms": orig_pred,
                                      "measured_ms": o["measured_latency_ms"],
                                      "params": o["params"], "macs": o_macs},
                         "noise_floor": floor, "rows": rows, "images": n}
        path.write_text(json.dumps(results, indent=1))
    print(f"\n{path}")


if __name__ == "__main__":
    main()
