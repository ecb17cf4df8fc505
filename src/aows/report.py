"""The run's report: the comparison table (Markdown) and the figures (latency fit is
drawn by the latency stage; here the search front with the methods, measured latency
against top-1, and the width profile of each configuration)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from aows.latency.model import LatencyModel
from aows.plots import figure


def _quality(r: dict) -> tuple[str, str, Callable[[float], str]]:
    """The quality column: its key, its name, and how a value is shown (top-1 on the
    labels, or the distillation error against the user's model without them)."""
    if r.get("objective", "labels") == "distill":
        return "distill", "distillation error", lambda v: f"{v:.4f}"
    return "top1", "top-1", lambda v: f"{100 * v:.1f} %"


def report_markdown(r: dict) -> str:
    floor = r["noise_floor"]
    original = r.get("original")  # a model's space: the user's model, the reference
    speed_col = "speed-up | " if original else ""
    key, name, shown = _quality(r)
    rows = ["| method | parameters | MACs | predicted latency | budget used | measured latency "
            f"| error | {speed_col}{name} | {name} before fine-tuning |",
            "|---|---|---|---|---|---|---|" + "---|" * (3 if original else 2)]
    for e in ([original] if original else []) + list(r["methods"].values()):
        verdict = ("" if e["within_noise_floor"] is None else " ✓" if e["within_noise_floor"]
                   else f" ({100 * (abs(e['latency_error']) - floor):.1f} pts beyond)")
        size = (f"{e['params'] / 1e6:.3f} M | {e['macs'] / 1e6:.1f} M"
                if e.get("params") is not None else "| ")
        speed = ("" if not original else "1.00x | " if e is original else
                 f"{e['speedup']:.2f}x | " if e.get("speedup") is not None else " | ")
        before = ("(as given)" if e is original else shown(e[f"{key}_before_finetune"]))
        rows.append(f"| {e['label']} | {size} | {e['predicted_latency_ms']:.3f} ms | "
                    f"{100 * e['predicted_latency_ms'] / r['budget_ms']:.0f} % | "
                    f"{e['measured_latency_ms']:.3f} ms | {100 * e['latency_error']:+.1f} %"
                    f"{verdict} | {speed}{shown(e[key])} | {before} |")
    lat = r["latency_model"] or {}
    bb = lat.get("blackbox")
    latline = (f"Latency model: {lat.get('networks')} timed networks, held-out NRMSE "
               f"{100 * bb['nrmse']:.2f} % (FLOPs fit {100 * lat['flops_baseline']['nrmse']:.2f}"
               f" %), noise floor {100 * lat['noise_floor']:.2f} %.\n\n" if bb else "")
    ref = r.get("latency_refine")
    if ref:
        rounds = ", ".join(f"{100 * a:.2f} %" for a in ref["picks_nrmse"])
        latline += (f"Refined on the search's picks: NRMSE on the picks by round {rounds} "
                    f"(worst pick {100 * ref['picks_worst'][-1]:.2f} %, tolerance "
                    f"{100 * ref['tolerance']:.2f} %): "
                    + ("every pick within" if ref["converged"] else "NOT every pick within")
                    + f"; held-out NRMSE after refinement "
                    f"{100 * ref['final_heldout_nrmse']:.2f} %.\n\n")
    floor_txt = (f"{100 * floor:.1f} % ({r['noise_floor_source']})" if floor is not None
                 else "not known")
    if key == "top1":
        p = float(np.mean([e["top1"] for e in r["methods"].values()]))
        se = 100 * np.sqrt(p * (1 - p) / max(r["val_images"], 1))
        quality = (f"Top-1 on {r['val_images']} validation images of `{r['data']}` after "
                   f"fine-tuning (binomial standard error about {se:.1f} points: smaller "
                   "differences are not evidence).")
    else:
        quality = (f"Distillation error against your model on {r['val_images']} "
                   f"validation images of `{r['data']}` (no labels used; 0: its outputs, "
                   "1.0 per output: outputs of zeros), after fine-tuning by distillation.")
    trained = r.get("train_budget_ms", r["budget_ms"])
    moved = (f" on the refined latency model; the supernets were trained with "
             f"{trained:.3f} ms on the first one" if abs(trained - r["budget_ms"]) > 5e-4
             else "")
    return ("# aows report\n\n" + "\n".join(rows) + "\n\n"
            f"Budget {r['budget_ms']:.3f} ms/image (predicted{moved}). Measured latencies are the "
            f"final networks timed on the latency model's target and protocol, "
            f"drift-normalised by the anchor network; ✓ = within the noise floor, "
            f"{floor_txt}. {quality} Wall time {r['wall_seconds']:.0f} s.\n\n"
            + latline +
            "![latency fit](latency_fit.png)\n"
            + ("![latency refinement](latency_refine.png)\n" if ref else "")
            + "![pareto](pareto.png)\n![widths](widths.png)\n")


def figures(out: Path, model: LatencyModel, found: dict, entries: dict, budget: float,
            objective: str = "labels") -> None:
    """``pareto.png`` (the search's front with the chosen configurations; measured latency
    against top-1, or the distillation error without labels) and ``widths.png`` (each
    configuration's widths) in ``out``."""
    key, name, _ = _quality({"objective": objective})
    scale = 100 if key == "top1" else 1
    front = json.loads((out / "pareto.json").read_text())["front"]
    with figure(out / "pareto.png", 1, 2, figsize=(11, 4.2)) as (_, (ax, bx)):
        ax.step([p["predicted_latency_ms"] for p in front], [p["score"] for p in front],
                where="post", color="C0", lw=1.2,
                label=f"exact front ({found['base_supernet'].upper()} unaries)")
        for k, e in enumerate(entries.values()):
            ax.scatter([e["predicted_latency_ms"]], [e["score"]], s=50,
                       marker="sD^o*"[k % 5], color=f"C{k + 1}", label=e["label"], zorder=3)
            bx.scatter([e["measured_latency_ms"]], [scale * e[key]], s=50,
                       marker="sD^o*"[k % 5], color=f"C{k + 1}", label=e["label"], zorder=3)
        for a in (ax, bx):
            a.axvline(budget, color="k", ls=":", lw=1, label="budget")
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
        ax.set_xlabel("predicted latency (ms/image)")
        ax.set_ylabel("score (sum of unaries)")
        ax.set_title("search: Pareto front and the chosen configurations", fontsize=10)
        bx.set_xlabel("measured latency (ms/image)")
        bx.set_ylabel(f"{name} after fine-tuning" + (" (%)" if key == "top1" else ""))
        bx.set_title("final networks", fontsize=10)

    space = model.space
    with figure(out / "widths.png", figsize=(9, 3.8)) as (_, ax):
        layers = np.arange(1, space.n_searchable + 1)
        ax.fill_between(layers, 0, space.widest(), color="0.9", step="mid",
                        label="search space")
        for k, e in enumerate(entries.values()):
            ax.step(layers, space.validate(e["config"]), where="mid", color=f"C{k + 1}",
                    lw=1.6, label=e["label"])
        ax.set_xlabel("layer" if space.is_chain else "width variable (`aows space show`)")
        ax.set_ylabel("output channels")
        ax.set_title(f"configurations found at {budget:.3f} ms", fontsize=10)
        ax.set_xticks(layers)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
