"""`aows quickstart`: a small real run on this machine, offline, in a few minutes.

Until supernet training lands, the quickstart is the latency-model half of the method
on this CPU: time MobileNet-v1 networks of the Table D.1 space at 64 px (biased
sampling until every layer width pair is covered, then uniform), fit the black-box
model, and check it on uniformly sampled networks that were timed twice (the second
timing, some minutes later, gives the noise floor), next to a FLOPs baseline. Training
and held-out networks are timed in alternating blocks, so both see the same states of
the machine. Every stage resumes: rerun the command after an interruption.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from aows.latency.backends import Target
from aows.latency.fit import fit, fit_flops
from aows.latency.measure import collect_interleaved, heldout_plan
from aows.latency.model import atomic_write_text
from aows.latency.protocol import Protocol
from aows.latency.store import read_samples
from aows.latency.validate import error_metrics, scatter_plot, test_retest
from aows.space import mobilenet_v1


def quickstart(out: str | Path = "quickstart", quick: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    space = mobilenet_v1(resolution=64)
    target = Target("torch-cpu", batch_size=1, threads=1)
    proto = Protocol(rounds=3, runs=2, chunk=20) if quick else Protocol(chunk=30)
    n_train, n_held, blocks = (40, 12, 2) if quick else (300, 60, 3)
    print(f"aows quickstart: MobileNet-v1 space (Table D.1, {space.n_configurations():.2e} "
          f"configurations) at 64 px on this CPU, torch-cpu, batch 1, 1 thread -> {out}/")
    print(f"[1/4] timing {n_train} networks (biased sampling until every layer width pair "
          f"is covered, then uniform), and {n_held} "
          f"uniformly sampled held-out networks twice, in {blocks} interleaved blocks")
    plan = [(out / "train.jsonl", n_train, "cover", {}), *heldout_plan(space, out, n_held)]
    collect_interleaved(space, target, proto, plan, blocks)
    print("[2/4] reading the timings")
    held = read_samples(out / "heldout.jsonl", space)
    retest = read_samples(out / "heldout_retest.jsonl", space)
    print("[3/4] fitting the black-box latency model and the FLOPs baseline")
    train = read_samples(out / "train.jsonl", space)
    model = fit(space, train)
    model.save(out / "latency.json")
    flops = fit_flops(space, train)
    flops.save(out / "latency_flops.json")
    print("[4/4] validating on the held-out networks")
    # latencies drift-normalised by the chunk anchors (the model's units), raw alongside
    ref = model.anchor_ref_ms
    noise = test_retest(held.by_config(ref), retest.by_config(ref))
    noise_raw = test_retest(held.by_config(), retest.by_config())
    y = model.comparable(held)
    pred, pred_f = model.predict_many(held.configs), flops.predict_many(held.configs)
    met, met_f = error_metrics(pred, y), error_metrics(pred_f, y)
    met_raw = error_metrics(pred, held.latency_ms)
    scatter_plot(pred, y, out / "latency_fit.png",
                 title=f"black-box model, {len(train)} timed networks",
                 noise_nrmse=noise["nrmse"], extra={"FLOPs fit": (pred_f, y)})
    report = {"space": space.describe()["params"], "target": model.meta.get("target"),
              "train_networks": len(train), "heldout_networks": len(held),
              "blackbox": met, "flops_baseline": met_f, "noise_floor": noise,
              "blackbox_raw": met_raw, "noise_floor_raw": noise_raw, "anchor_ref_ms": ref,
              "fit": model.meta["fit"], "wall_seconds": round(time.time() - t0, 1)}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    rows = [("black-box model (ours)", met), ("FLOPs-proportional fit", met_f),
            ("noise floor: same networks re-timed", noise),
            ("black-box model, raw timings", met_raw),
            ("noise floor, raw timings", noise_raw)]
    lines = ["| latency predictor | NRMSE | MAPE | max error | within 5 % |",
             "|---|---|---|---|---|"]
    for name, m in rows:
        lines.append(f"| {name} | {100 * m['nrmse']:.2f} % | {100 * m['mape']:.2f} % | "
                     f"{100 * m['max_abs_pct_err']:.1f} % | {100 * m['within_5pct']:.0f} % |")
    table = "\n".join(lines)
    md = (f"# aows quickstart\n\nHeld-out: {len(held)} uniformly sampled networks "
          f"(mean {met['mean_latency_ms']:.3f} ms/image), model fitted on {len(train)} "
          f"networks (biased sampling until covered, then uniform). Latencies are "
          f"drift-normalised: every chunk of networks also times one anchor network, and "
          f"each timing is scaled by "
          f"(median anchor / its chunk's anchor), which removes the slow drift of a shared "
          f"machine; the last two rows use the raw timings.\n\n{table}\n\n"
          f"![latency fit](latency_fit.png)\n")
    atomic_write_text(out / "report.md", md)
    print()
    print(table)
    print(f"\nfiles: {out}/latency.json (model), {out}/latency_fit.png, {out}/report.md; "
          f"{report['wall_seconds']:.0f} s")
    return report
