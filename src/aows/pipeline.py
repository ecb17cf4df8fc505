"""`aows run CONFIG.yaml`: the whole method, stage by stage, resumable.

    latency -> supernet training (OWS and/or AOWS) -> latency refinement on the
    search's picks -> search (exact, plus the greedy and uniform baselines) -> export +
    fine-tune + evaluate -> measure -> report

Every stage writes its outputs under the run folder and then a marker
``stages/<stage>.json``; a stage with a marker is skipped, and a stage without one
resumes from what it already wrote (timings files, training checkpoints), so an
interrupted run continues where it stopped. The resolved configuration (the defaults of
``aows.config.RunConfig`` merged with the user's file) is saved as ``config.yaml``;
rerunning a folder with a different configuration is refused rather than mixing
results.

Outputs: ``report.json`` (one entry per method: config, predicted and measured latency,
top-1), ``report.md``, and the figures ``latency_fit.png``, ``pareto.png``,
``widths.png``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml

from aows.catalogue import get_space
from aows.config import RunConfig, load_config, quickstart_config
from aows.errors import AowsError
from aows.final import (
    describe_measurement,
    export_config,
    export_onnx,
    load_final,
    load_supernet,
    measure_networks,
    save_final,
)
from aows.io import atomic_write_text
from aows.latency.defaults import DEFAULT_SAMPLER
from aows.latency.fit import fit, fit_flops
from aows.latency.measure import collect_interleaved, heldout_plan
from aows.latency.model import LatencyModel
from aows.latency.store import read_samples
from aows.latency.validate import check_model, error_metrics, scatter_plot
from aows.log import indented
from aows.nn import build_network
from aows.refine import refine
from aows.report import figures, report_markdown
from aows.settings import as_dict, load
from aows.solve import Problem, load_unaries, pareto, search
from aows.space import SearchSpace
from aows.train.data import get_data
from aows.train.finetune import evaluate, finetune
from aows.train.loop import branch_from_warmup, train_supernet, warmup_epochs
from aows.train.objective import compare_outputs
from aows.train.runtime import (
    dist_info,
    init_distributed,
    load_checkpoint,
    resolve_device,
    run_lock,
)

__all__ = ["Pipeline", "RunConfig", "load_config", "quickstart_config", "run_pipeline"]
log = logging.getLogger(__name__)

# method -> label in logs and reports
ORIGINAL = "original (your model)"
METHOD_LABELS = {"uniform": "uniform width multiplier", "greedy": "greedy (AutoSlim-style)",
                 "ows": "OWS", "aows": "AOWS"}


def _space_of(cfg: RunConfig, classes: int) -> SearchSpace:
    params = {**cfg.space.params(), "resolution": _resolution(cfg)}
    name = cfg.model or cfg.space.name
    try:
        return get_space(name, classes=classes, **params)
    except TypeError as err:
        raise AowsError(f"space: {err}; check the settings of the space section") from None


def _resolution(cfg: RunConfig) -> int:
    """The input size: a model's input_shape where given, else space.resolution."""
    return cfg.space.input_shape[-1] if cfg.space.input_shape else cfg.space.resolution


class Pipeline:
    """One run folder; ``run()`` executes the stages that are not done yet."""

    def __init__(self, cfg: RunConfig, out: str | Path,
                 should_stop: Callable[[], bool] | None = None):
        init_distributed(cfg.device)  # under torchrun: join the process group
        self.rank, self.world = dist_info()
        self.cfg, self.out, self.should_stop = cfg, Path(out), should_stop
        saved = self.out / "config.yaml"
        # settings added to aows since the folder was made take their defaults
        if saved.exists() and load(RunConfig, yaml.safe_load(saved.read_text()) or {},
                                   str(saved)) != cfg:
            raise AowsError(f"{self.out} holds a run with another configuration "
                            f"({saved}); use another --out, or delete the folder")
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(saved, yaml.safe_dump(as_dict(cfg), sort_keys=False))
        # without labels (objective distill) the user's model is the measure of quality
        self.labels = cfg.train.objective == "labels"
        self.data = get_data(cfg.data.name, _resolution(cfg), cfg.data.batch_size, cfg.seed,
                             self.rank, self.world, cfg.data.workers, labels=self.labels)
        self.space = _space_of(cfg, self.data.classes if self.labels else None)
        self._teacher = None
        self.until: str | None = None

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def agree(self, value):
        """Rank 0's ``value`` on every process (a JSON-like object)."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    # ------------------------------------------------------------ plumbing
    def _marker(self, stage: str) -> Path:
        return self.out / "stages" / f"{stage}.json"

    def done(self, stage: str) -> dict | None:
        """The stage's marker, or None when the stage is not complete: no marker, or a
        torn or foreign one (it is done again)."""
        p = self._marker(stage)
        try:
            res = json.loads(p.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as err:
            raise AowsError(f"cannot read {p} ({err.strerror}); make it readable, or delete "
                            "it to redo the stage") from None
        except ValueError:  # JSON or UTF-8: a torn marker
            res = None
        if not isinstance(res, dict):
            log.warning(f"[{stage}] its marker {p} is torn or not aows's: the stage is "
                        "done again")
            return None
        return res

    def _stage(self, stage: str, fn: Callable[[], dict | None],
               everyone: bool = False) -> dict | None:
        """Run a stage unless done. ``everyone``: all processes run it (training);
        otherwise rank 0 does and the others wait and read its marker."""
        # Rank 0 decides whether the stage is done and tells the others: each reading the
        # marker itself raced with rank 0 writing it (a fast stage, such as reusing a
        # latency model, was marked done before another process looked, which then skipped
        # the stage's barrier and every later collective paired with the wrong one: the
        # intermittent hang of the two-process test, seen in a py-spy dump)
        done = self.agree(self.done(stage) if self.rank == 0 else None)
        if done is not None:
            log.info(f"[{stage}] done before, skipped")
        else:
            log.info(f"[{stage}] ...")
            t0 = time.time()
            with indented():
                res = fn() if (everyone or self.rank == 0) else None
            if res is not None and self.rank == 0:
                res = {**res, "seconds": round(time.time() - t0, 1)}
                atomic_write_text(self._marker(stage), json.dumps(res, indent=1))
            self.barrier()
            # None: stopped by a signal (on every process alike); nothing marked, resumes
            done = self.done(stage)
        if done is not None and stage == self.until:
            log.info(f"stopped after [{stage}] as asked (--until); run again without it "
                     "to go on")
            self.until = "reached"
            return None
        return done

    def methods(self) -> list[str]:
        """The baselines searched, then the trained methods (checked by ``RunConfig``)."""
        return list(self.cfg.search.baselines) + list(self.cfg.train.methods)

    # -------------------------------------------------------------- stages
    def stages(self) -> list[str]:
        return (["latency"] + [f"train_{m}" for m in self.cfg.train.methods] +
                (["refine"] if self.refines() else []) + ["search"] +
                [f"final_{m}" for m in self.methods()] + ["measure"])

    def run(self, until: str | None = None) -> dict | None:
        """All stages not done yet; with ``until``, stop after that stage (e.g. time the
        latency model on the target in one process, then train under torchrun)."""
        if until is not None and until not in self.stages():
            raise AowsError(f"--until {until}: the stages are {', '.join(self.stages())}")
        self.until = until
        if self.world > 1 and not self.cfg.latency.model and not self.done("latency"):
            raise AowsError("under torchrun, time the latency model first in one process "
                            "(`aows run CONFIG --out DIR --until latency` on the target), "
                            "or give latency.model")
        t0 = time.time()
        lat = self._stage("latency", self.stage_latency)
        if lat is None:
            return self._stopped()
        model = LatencyModel.load(self.out / "latency" / "latency.json", self.space)
        budget = trained = self.budget(model)  # the one AOWS's sampling anneals toward
        for m in self.cfg.train.methods:
            if self._stage(f"train_{m}", lambda m=m: self.stage_train(m, model, budget),
                           everyone=True) is None:
                return self._stopped()
        if self.refines():
            if self._stage("refine", lambda: self.stage_refine(model)) is None:
                return self._stopped()
            first, model = model, LatencyModel.load(
                self.out / "latency" / "refine" / "latency.json", self.space)
            budget = self.search_budget(first, model, budget)
        found = self._stage("search", lambda: self.stage_search(model, budget, trained))
        if found is None:
            return None
        for m in self.methods():
            if self._stage(f"final_{m}", lambda m=m: self.stage_final(
                    m, found["methods"][m]["config"]), everyone=True) is None:
                return self._stopped()
        meas = self._stage("measure", lambda: self.stage_measure(model))
        if self.rank != 0 or meas is None:
            return None
        t1 = time.time()
        report = self.stage_report(model, lat, found, meas, 0.0)
        log.info(f"report: {time.time() - t1:.1f} s; this invocation {time.time() - t0:.0f} s")
        return report

    def _stopped(self) -> None:
        if self.until != "reached":
            log.info(f"stopped; run the same command again to resume ({self.out})")
        return None

    def budget(self, model: LatencyModel) -> float:
        s = self.cfg.search
        if s.budget_ms is not None:
            b = float(s.budget_ms)
        elif s.budget_multiplier is not None:
            m = float(s.budget_multiplier)
            uni = self.space.uniform_multiplier_configs()
            mult, config = min(uni, key=lambda mc: abs(mc[0] - m))
            if abs(mult - m) > 1e-6:
                raise AowsError(f"search.budget_multiplier {m}: the space's uniform networks "
                                f"have multipliers {[round(u[0], 3) for u in uni]}")
            b = model.predict(config)
        else:
            lo = model.predict(self.space.narrowest())
            hi = model.predict(self.space.widest())
            b = lo + float(s.budget_fraction) * (hi - lo)
        if not np.isfinite(b) or b <= 0:
            raise AowsError(f"search budget {b} ms is not a positive number")
        narrowest = model.predict(self.space.narrowest())
        if s.budget_ms is not None and b < narrowest:  # before any training, not after it
            raise AowsError(f"search.budget_ms {b:g}: the latency model predicts "
                            f"{narrowest:.3f} ms for the narrowest network of the space; "
                            "give a larger budget")
        return b

    def search_budget(self, first: LatencyModel, refined: LatencyModel, budget: float) -> float:
        """The budget the search uses once refinement has replaced the first model.

        A budget given in ms stays what it is. One derived from the model (a fraction of the
        range, a uniform network's latency) is derived again from the refined model, so it
        keeps its meaning: refinement can shift every prediction, and did on a loaded CI
        machine (its picks timed 19 % above the first model in one round), which put the
        first model's half-way budget, 3.362 ms, below the refined model's narrowest
        network, 3.535 ms, and the search had nothing to return.
        """
        if self.cfg.search.budget_ms is None:
            again = self.budget(refined)
            log.info(f"budget {again:.3f} ms on the refined model ({budget:.3f} ms on the "
                     "first one, which the supernets were trained with)")
            return again
        narrowest = refined.predict(self.space.narrowest())
        if budget < narrowest:
            raise AowsError(
                f"search.budget_ms {budget:g}: the refined latency model predicts "
                f"{narrowest:.3f} ms for the narrowest network (the first model "
                f"{first.predict(self.space.narrowest()):.3f} ms); run again with a larger "
                "budget, or with latency.refine: 0, in a new --out folder")
        return budget

    def stage_latency(self) -> dict | None:
        c, folder = self.cfg.latency, self.out / "latency"
        folder.mkdir(parents=True, exist_ok=True)
        if c.model:
            model = LatencyModel.load(c.model, self.space)
            model.save(folder / "latency.json")
            log.info(f"reusing {c.model}")
            return {"reused": str(c.model), "noise_floor": model.meta.get("noise_floor")}
        log.info(f"timing {c.networks} networks and {c.heldout} held-out ones twice on "
                 f"{c.backend} (batch {c.batch_size}, {c.threads} threads)")
        plan = [(folder / "train.jsonl", c.networks, DEFAULT_SAMPLER, {}),
                *heldout_plan(self.space, folder, c.heldout)]
        collect_interleaved(self.space, self.cfg.target(), c.protocol, plan, c.blocks,
                            should_stop=self.should_stop)
        if self.should_stop is not None and self.should_stop():
            return None  # the timings so far are in the files; a rerun continues them
        train = read_samples(folder / "train.jsonl", self.space)
        model = fit(self.space, train, K=c.K, smooth=c.smooth)
        held = read_samples(folder / "heldout.jsonl", self.space)
        met, pred, y = check_model(model, held, read_samples(folder / "heldout_retest.jsonl",
                                                             self.space))
        noise = met.pop("noise_floor")
        flops = fit_flops(self.space, train).predict_many(held.configs)
        met_f = error_metrics(flops, y)
        model.meta["noise_floor"] = noise["nrmse"]
        model.save(folder / "latency.json")
        scatter_plot(pred, y, self.out / "latency_fit.png",
                     title=f"black-box latency model, {len(train)} timed networks",
                     noise_nrmse=noise["nrmse"], extra={"FLOPs fit": (flops, y)})
        log.info(f"held-out NRMSE {100 * met['nrmse']:.2f} % (FLOPs fit "
                 f"{100 * met_f['nrmse']:.2f} %), noise floor {100 * noise['nrmse']:.2f} %")
        return {"networks": len(train), "heldout": len(held), "blackbox": met,
                "flops_baseline": met_f, "noise_floor": noise["nrmse"],
                "noise_floor_metrics": noise}

    def refines(self) -> bool:
        """Refinement needs the timings the model was fitted on (not a reused model)."""
        return self.cfg.latency.refine > 0 and not self.cfg.latency.model

    def stage_refine(self, model: LatencyModel) -> dict | None:
        c, folder = self.cfg.latency, self.out / "latency"
        # every trained supernet's picks: the search picks each method's networks with its
        # own scores, and AOWS's differ from OWS's (refined on OWS's picks alone, one
        # quickstart's AOWS network measured 6 % above its prediction in the quietest
        # timing round, the three others within 2.5 %)
        methods = list(self.cfg.train.methods)
        rep = refine(self.space, read_samples(folder / "train.jsonl", self.space),
                     folder / "refine",
                     unaries={m: load_unaries(self.out / f"supernet_{m}" / "unaries.json",
                                              self.space) for m in methods},
                     n_budgets=c.refine_budgets, rounds=c.refine,
                     noise_floor=model.meta.get("noise_floor"),
                     K=model.meta["fit"]["K"], smooth=model.meta["fit"]["smooth"],
                     heldout=read_samples(folder / "heldout.jsonl", self.space),
                     should_stop=self.should_stop, remote=self.cfg.remote())
        if rep["stopped"]:
            return None
        shutil.copyfile(folder / "refine" / "refine.png", self.out / "latency_refine.png")
        last = rep["rounds"][-1]
        if not rep["converged"]:
            log.info(f"not every pick within the noise floor after {c.refine} rounds; "
                     "the refined model has all their timings")
        return {"rounds": len(rep["rounds"]), "converged": rep["converged"],
                "picks_unaries": methods, "tolerance": last["tolerance"],
                "picks_nrmse": [e["picks"]["nrmse"] for e in rep["rounds"]],
                "picks_bias": [e["picks"]["bias_pct"] for e in rep["rounds"]],
                "picks_worst": [e["picks"]["max_abs_pct_err"] for e in rep["rounds"]],
                "heldout_nrmse": [e["heldout"]["nrmse"] for e in rep["rounds"]],
                "final_heldout_nrmse": rep.get("final_heldout", last["heldout"])["nrmse"]}

    def stage_train(self, method: str, model: LatencyModel, budget: float) -> dict | None:
        cfg = self.cfg.train_config(method, budget)
        folder = self.out / f"supernet_{method}"
        keep = ()
        if method == "ows" and "aows" in self.cfg.train.methods:
            keep = (warmup_epochs(cfg),)  # AOWS can start from there
        if method == "aows" and self.rank == 0:
            k = branch_from_warmup(self.out / "supernet_ows", cfg, folder)
            if k:
                log.info(f"the first {k} epochs (AOWS's uniform warm-up) are the OWS run's, "
                         "same draws and steps: reused from supernet_ows")
        self.barrier()
        train_supernet(self.space, self.data.train, cfg, folder, model, resume=True,
                       should_stop=self.should_stop, val_batches=self.data.val,
                       steps_per_epoch=self.data.steps_per_epoch, keep_epochs=keep)
        # every process decides on its own state (rank 0 writes the checkpoint: another
        # process reading it here could see the one before the last save)
        self.barrier()
        pos = load_checkpoint(folder / "checkpoint.pt")["position"]
        if pos["epoch"] < cfg.epochs or pos["iteration"] != 0:
            return None
        last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
        return {"folder": folder.name, "last_epoch": last}

    def stage_search(self, model: LatencyModel, budget: float, trained: float) -> dict:
        problems = {m: Problem(model, load_unaries(self.out / f"supernet_{m}" /
                                                   "unaries.json", self.space))
                    for m in self.cfg.train.methods}
        base = self.base_supernet()
        out = {}
        for m in self.methods():
            solver = m if m in ("uniform", "greedy") else "exact"
            src = base if m in ("uniform", "greedy") else m
            res = search(problems[src], budget, solver)
            res["supernet"] = src
            # every configuration scored with the same (base) unaries, for the figure
            res["score_base"] = problems[base].score(res["config"])
            out[m] = res
            log.info(f"{METHOD_LABELS[m]}: {res['predicted_latency_ms']:.3f} ms predicted "
                     f"(budget {budget:.3f}), {','.join(map(str, res['config']))}")
        front = pareto(problems[base], 100)
        atomic_write_text(self.out / "pareto.json", json.dumps(front))
        return {"budget_ms": budget, "train_budget_ms": trained, "base_supernet": base,
                "methods": out}

    def base_supernet(self) -> str:
        """The supernet whose weights and unaries the baselines use: OWS if trained."""
        trained = self.cfg.train.methods
        return "ows" if "ows" in trained else trained[0]

    @property
    def teacher(self):
        """The user's model as loaded (objective distill: what quality is measured
        against)."""
        if self._teacher is None:
            self._teacher = self.space.load_module().eval()
        return self._teacher

    def quality(self, net, device) -> dict:
        """Top-1 / top-5 on the labels, or the distillation error against the user's
        model (objective distill), on the validation images."""
        if self.labels:
            return evaluate(net, self.data.val(0), device)
        return compare_outputs(net, self.teacher, self.data.val(0), device)

    def stage_final(self, method: str, config: list[int]) -> dict | None:
        init = self.cfg.finetune.init
        src = method if method in ("ows", "aows") else self.base_supernet()
        folder = self.out / "final" / method
        inherited = folder / "inherited"
        if not (inherited / "weights.pt").exists() and self.rank == 0:
            if init == "inherited":
                net = export_config(load_supernet(self.out / f"supernet_{src}", self.space),
                                    config, self.data.train(0), self.cfg.train.calib_batches)
            else:
                torch.manual_seed(self.cfg.seed)
                net = build_network(self.space, config)
            save_final(inherited, net, self.space, config, method=method, init=init,
                       supernet=f"supernet_{src}")
        self.barrier()  # the others load what rank 0 exported
        device = resolve_device(self.cfg.device)
        net, _, _ = load_final(inherited, space=self.space)
        key = "top1" if self.labels else "distill"
        before = self.quality(net.to(device), device)
        log.info(f"{METHOD_LABELS[method]}: {_quality_text(key, before[key])} with {init} "
                 "weights, before fine-tuning")
        res = finetune(net, self.data.train, self.data.val, self.cfg.finetune_config(),
                       folder / "finetune", self.data.steps_per_epoch, resume=True,
                       should_stop=self.should_stop,
                       teacher=None if self.labels else self.teacher)
        if res["stopped"]:
            return None
        after = self.quality(net, device)
        net = net.cpu().eval()
        if self.rank != 0:
            return {key: after[key]}
        scores = ({"top1": after["top1"], "top5": after["top5"]} if self.labels
                  else {"distill": after["distill"]})
        save_final(folder, net, self.space, config, method=method, init=init, **scores)
        onnx_diff = None
        if self.cfg.onnx:
            onnx_diff = export_onnx(net, self.space, folder / "model.onnx")
        return {"config": config, f"{key}_before_finetune": before[key], **scores,
                "val_images": after["images"], "onnx_max_rel_diff": onnx_diff}

    def stage_measure(self, model: LatencyModel) -> dict:
        nets, configs = {}, {}
        for m in self.methods():
            nets[m], _, configs[m] = load_final(self.out / "final" / m, space=self.space)
        reference = None
        if self.is_model:  # the user's own model, timed beside what was found
            reference = ORIGINAL
            nets[reference] = self.space.build(self.space.widest())
            configs[reference] = self.space.widest()
        res = measure_networks(nets, model, configs, self.cfg.measure.repeats,
                               remote=self.cfg.remote(),
                               seed=self.cfg.seed, protocol=self.cfg.measure.protocol,
                               reference=reference)
        log.info(describe_measurement(res))
        return res

    # -------------------------------------------------------------- report
    @property
    def is_model(self) -> bool:
        """Whether the space is a user's model's (its widest configuration is the
        model)."""
        return hasattr(self.space, "plan")

    def original_entry(self, meas: dict) -> dict | None:
        """The report's row of the user's own model: as given (its weights), timed
        beside the found networks."""
        mr = (meas.get("networks") or {}).get(ORIGINAL)
        if mr is None:
            return None
        ev = (evaluate(self.space.load_module(), self.data.val(0)) if self.labels
              else {"distill": 0.0})  # the reference of the distillation error itself
        return {"label": ORIGINAL, "config": list(self.space.widest()),
                "predicted_latency_ms": mr["predicted_latency_ms"],
                "measured_latency_ms": mr["measured_latency_ms"],
                "measured_raw_ms": mr["measured_raw_ms"],
                "latency_error": mr["relative_error"],
                "within_noise_floor": mr["within_noise_floor"],
                "params": mr["params"], "macs": mr["macs"],
                **{k: ev.get(k) for k in QUALITY_KEYS}}

    def stage_report(self, model, lat, found, meas, wall) -> dict:
        entries = {}
        for m in self.methods():
            fin = self.done(f"final_{m}")
            mr = meas["networks"][m]
            entries[m] = {
                "label": METHOD_LABELS[m], "config": found["methods"][m]["config"],
                "predicted_latency_ms": mr["predicted_latency_ms"],
                "measured_latency_ms": mr["measured_latency_ms"],
                "measured_raw_ms": mr["measured_raw_ms"],
                "latency_error": mr["relative_error"],
                "within_noise_floor": mr["within_noise_floor"],
                **{k: fin.get(k) for k in QUALITY_KEYS},
                "supernet": found["methods"][m]["supernet"],
                "score": found["methods"][m]["score_base"],
                "params": mr.get("params"), "macs": mr.get("macs"),
                "speedup": mr.get("speedup")}
        report = {"budget_ms": found["budget_ms"],
                  "train_budget_ms": found.get("train_budget_ms", found["budget_ms"]),
                  "noise_floor": meas["noise_floor"],
                  "noise_floor_source": meas["noise_floor_source"],
                  "space": self.cfg.space.params() | {"name": self.cfg.model or
                                                       self.cfg.space.name},
                  "data": self.cfg.data.name, "objective": self.cfg.train.objective,
                  "val_images": next(iter(self.done(f"final_{m}")["val_images"]
                                          for m in self.methods())),
                  "target": meas["target"], "latency_model": lat,
                  "latency_refine": self.done("refine"),
                  "original": self.original_entry(meas),
                  "methods": entries}
        stages = {p.stem: (self.done(p.stem) or {}).get("seconds")
                  for p in sorted((self.out / "stages").glob("*.json"))}
        # all stages, over however many invocations the run took
        report.update(wall_seconds=round(sum(v or 0 for v in stages.values()) + wall, 1),
                      stage_seconds=stages)
        atomic_write_text(self.out / "report.json", json.dumps(report, indent=1))
        figures(self.out, model, found, entries, found["budget_ms"], self.cfg.train.objective)
        md = report_markdown(report)
        atomic_write_text(self.out / "report.md", md)
        return report


QUALITY_KEYS = ("top1", "top5", "top1_before_finetune", "distill", "distill_before_finetune")


def _quality_text(key: str, value: float) -> str:
    return (f"top-1 {100 * value:.1f} %" if key == "top1"
            else f"distillation error {value:.4f}")


def summary(report: dict, out: str | Path) -> str:
    """The report's table and the files written: what ``aows run`` prints at the end."""
    md = report_markdown(report)
    files = [f for f in ("report.md", "report.json", "latency_fit.png", "latency_refine.png",
                         "pareto.png", "widths.png") if (Path(out) / f).exists()]
    table = md.split("\n\n", 2)[1] if "\n\n" in md else md
    return f"{table}\n\nin {out}/: {', '.join(files)}"


def run_pipeline(config: str | Path | dict | RunConfig | None, out: str | Path,
                 should_stop: Callable[[], bool] | None = None,
                 until: str | None = None) -> dict | None:
    """Run (or resume) the whole method: latency model, OWS/AOWS supernets, search,
    final networks, their measured latency, the report. Progress goes to the ``aows``
    logger (``aows.log.console`` shows it).

    Args:
        config: a ``RunConfig``, a YAML path, a mapping of settings, or None for the
            defaults; every problem in it is reported at once, before anything runs.
        out: the run folder; a rerun skips complete stages and resumes the others. It is
            locked for the call: another process running into it is an error naming its
            PID.
        should_stop: polled between steps and timing chunks; when it turns true the
            stage in progress saves what it has and the call returns None.
        until: stop after this stage (e.g. "latency").

    Returns:
        The report (per method: configuration, predicted and measured latency, top-1),
        or None when stopped (or on a process other than rank 0).
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    init_distributed(cfg.device)  # under torchrun: rank 0 alone writes, and locks, the folder
    with run_lock(out):  # one process per run folder, its stages (same lock) nested in it
        return Pipeline(cfg, out, should_stop).run(until)
