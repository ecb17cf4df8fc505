"""`aows run CONFIG.yaml`: the whole method, stage by stage, resumable.

    latency -> supernet training (OWS and/or AOWS) -> latency refinement on the
    search's picks -> search (exact, plus the greedy and uniform baselines) -> export +
    fine-tune + evaluate -> measure -> report

Every stage writes its outputs under the run folder and then a marker
``stages/<stage>.json``; a stage with a marker is skipped, and a stage without one
resumes from what it already wrote (timings files, training checkpoints), so an
interrupted run continues where it stopped. The resolved configuration (the defaults
below merged with the user's file) is saved as ``config.yaml``; rerunning a folder with
a different configuration is refused rather than mixing results.

Outputs: ``report.json`` (one entry per method: config, predicted and measured latency,
top-1), ``report.md``, and the figures ``latency_fit.png``, ``pareto.png``,
``widths.png``.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from aows.errors import AowsError
from aows.latency.model import LatencyModel, atomic_write_text
from aows.report import figures, report_markdown
from aows.space import SearchSpace, get_space

DEFAULTS: dict = {
    "seed": 0,
    "device": "auto",
    "space": {"name": "mobilenet_v1", "resolution": 224},
    # your model instead of space.name (torchvision:NAME, timm:NAME, file.py:FUNCTION);
    # space's other settings (resolution, widths, input_shape, weights) apply to it
    "model": None,
    "data": {"name": "digits", "batch_size": 64},
    "latency": {
        "model": None,  # an existing latency.json to reuse instead of timing
        "backend": "torch-cpu", "batch_size": 1, "threads": 1, "dtype": "fp32",
        "channels_last": False,
        "networks": 2000,  # timed to fit the model (biased until covered, then uniform)
        "heldout": 100,  # uniformly sampled, timed twice: validation and noise floor
        "blocks": 3,  # the sets are timed in alternating blocks
        "protocol": {},  # aows.latency.protocol.Protocol fields
        "K": 100.0, "smooth": 1.0,
        # `aows latency refine` after training: time the search's picks at
        # refine_budgets budgets, add them, refit; at most this many rounds (0: off)
        "refine": 3, "refine_budgets": 10,
    },
    "train": {"methods": ["ows", "aows"], "epochs": 20, "sampled": 2, "lr": 0.1,
              "schedule": "cosine", "warmup_epochs": 0.0, "sampling": "joint",
              "unary_mode": "epoch", "calib_batches": 8},
    "search": {"budget_ms": None,
               # or the predicted latency of the uniform network at this width multiplier
               # (1.0 = MobileNet-v1 1.0x, the paper's comparison)
               "budget_multiplier": None,
               # else narrowest + fraction x (widest - narrowest), predicted
               "budget_fraction": 0.5,
               "baselines": ["uniform", "greedy"]},
    "finetune": {"epochs": 10, "lr": 0.1, "warmup_epochs": 1.0, "label_smoothing": 0.1,
                 "mixup": 0.0, "weight_decay": 4e-5, "init": "inherited"},
    "measure": {"repeats": 3, "protocol": None},  # protocol None: the latency model's
    "onnx": True,
}

# method -> (solver, supernet whose unaries and weights it uses)
METHOD_LABELS = {"uniform": "uniform width multiplier", "greedy": "greedy (AutoSlim-style)",
                 "ows": "OWS", "aows": "AOWS"}


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """The defaults merged with a YAML file (and ``overrides``); unknown keys are an
    error that names them."""
    user = {}
    if path is not None:
        path = Path(path)
        try:
            user = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise AowsError(f"{path} does not exist") from None
        except yaml.YAMLError as err:
            raise AowsError(f"{path} is not valid YAML: {err}") from None
        if user is None:
            raise AowsError(f"{path} is empty; give at least the sections you change from "
                            "the defaults (see configs/), e.g. space: {resolution: 128}")
        if not isinstance(user, dict):
            raise AowsError(f"{path}: expected a mapping of sections (space, data, ...)")
    cfg = _merge(DEFAULTS, user, str(path or "config"))
    if overrides:
        cfg = _merge(cfg, overrides, "overrides")
    return cfg


def quickstart_config() -> dict:
    text = resources.files("aows").joinpath("configs/quickstart.yaml").read_text()
    return _merge(DEFAULTS, yaml.safe_load(text), "quickstart.yaml")


# settings that must be at least 1 (counts), or at least 0
_AT_LEAST_1 = {"latency.networks", "latency.heldout", "latency.blocks", "latency.batch_size",
               "latency.threads", "latency.refine_budgets", "data.batch_size", "train.epochs",
               "train.sampled", "train.calib_batches", "finetune.epochs", "measure.repeats"}
_AT_LEAST_0 = {"seed", "latency.refine", "latency.K", "latency.smooth", "train.lr",
               "train.warmup_epochs", "finetune.lr", "finetune.warmup_epochs",
               "finetune.label_smoothing", "finetune.mixup", "finetune.weight_decay"}


def _merge(base: dict, user: dict, where: str, prefix: str = "") -> dict:
    """``user`` over ``base``; every unknown key, wrongly typed value or value out of
    range is reported, all at once, before anything runs."""
    out, problems = copy.deepcopy(base), []
    _merge_into(out, base, user, prefix, problems)
    if problems:
        raise AowsError(f"{where}: " + "; ".join(problems))
    return out


def _merge_into(out: dict, base: dict, user: dict, prefix: str, problems: list) -> None:
    for k, v in user.items():
        key = f"{prefix}{k}"
        if k not in base:
            problems.append(f"unknown setting '{key}' (known here: {', '.join(sorted(base))})")
            continue
        free = k in ("space", "protocol") or base[k] is None  # free-form sections
        if isinstance(base[k], dict) and not free:
            if not isinstance(v, dict):
                problems.append(f"'{key}' is a section: give a mapping, not {v!r}")
            else:
                _merge_into(out[k], base[k], v, f"{key}.", problems)
            continue
        d = base[k]
        if key in ("latency.K", "latency.smooth") and v == "auto":
            pass  # chosen by cross-validation
        elif d is not None and not free and v is not None:
            if isinstance(d, bool):
                ok = isinstance(v, bool)
            elif isinstance(d, (int, float)):
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
                if ok and isinstance(d, int) and not isinstance(d, bool) and \
                        key in _AT_LEAST_1 | {"seed"}:
                    ok = float(v).is_integer()
            else:
                ok = isinstance(v, type(d))
            if not ok:
                kind = {bool: "true or false", int: "an integer", float: "a number",
                        str: "a string", list: "a list"}.get(type(d), type(d).__name__)
                problems.append(f"'{key}' must be {kind} (default {d!r}), got {v!r}")
                continue
            if key in _AT_LEAST_1 and v < 1:
                problems.append(f"'{key}' must be at least 1, got {v}")
                continue
            if key in _AT_LEAST_0 and v < 0:
                problems.append(f"'{key}' must be at least 0, got {v}")
                continue
        out[k] = copy.deepcopy(v)


def _space_of(cfg: dict, classes: int) -> SearchSpace:
    params = {k: v for k, v in cfg["space"].items() if k != "name"}
    name = cfg.get("model") or cfg["space"].get("name", "mobilenet_v1")
    if not isinstance(name, str):
        raise AowsError(f"model: {name!r} is not a model name; give torchvision:NAME, "
                        "timm:NAME or path/to/file.py:FUNCTION")
    try:
        return get_space(name, classes=classes, **params)
    except TypeError as err:
        raise AowsError(f"space: {err}; check the settings of the space section") from None


class Pipeline:
    """One run folder; ``run()`` executes the stages that are not done yet."""

    def __init__(self, cfg: dict, out: str | Path, log: Callable[[str], None] = print,
                 should_stop: Callable[[], bool] | None = None):
        from aows.train.runtime import dist_info, init_distributed
        init_distributed(cfg["device"])  # under torchrun: join the process group
        self.rank, self.world = dist_info()
        self.cfg, self.out, self.should_stop = cfg, Path(out), should_stop
        self.log = log if self.rank == 0 else (lambda msg: None)
        saved = self.out / "config.yaml"
        # settings added to aows since the folder was made take their defaults
        if saved.exists() and _merge(DEFAULTS, yaml.safe_load(saved.read_text()) or {},
                                     str(saved)) != cfg:
            raise AowsError(f"{self.out} holds a run with another configuration "
                            f"({saved}); use another --out, or delete the folder")
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(saved, yaml.safe_dump(cfg, sort_keys=False))
        from aows.train.data import get_data
        d = cfg["data"]
        self.data = get_data(d["name"], cfg["space"]["resolution"], d["batch_size"],
                             cfg["seed"], self.rank, self.world)
        self.space = _space_of(cfg, self.data.classes)
        self.until: str | None = None

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def agree(self, value):
        """Rank 0's ``value`` on every process (a JSON-like object)."""
        if self.world == 1:
            return value
        import torch.distributed as dist
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    # ------------------------------------------------------------ plumbing
    def _marker(self, stage: str) -> Path:
        return self.out / "stages" / f"{stage}.json"

    def done(self, stage: str) -> dict | None:
        p = self._marker(stage)
        return json.loads(p.read_text()) if p.exists() else None

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
            self.log(f"[{stage}] done before, skipped")
        else:
            self.log(f"[{stage}] ...")
            t0 = time.time()
            res = fn() if (everyone or self.rank == 0) else None
            if res is not None and self.rank == 0:
                res = {**res, "seconds": round(time.time() - t0, 1)}
                atomic_write_text(self._marker(stage), json.dumps(res, indent=1))
            self.barrier()
            # None: stopped by a signal (on every process alike); nothing marked, resumes
            done = self.done(stage)
        if done is not None and stage == self.until:
            self.log(f"stopped after [{stage}] as asked (--until); run again without it "
                     "to go on")
            self.until = "reached"
            return None
        return done

    def methods(self) -> list[str]:
        trained = list(self.cfg["train"]["methods"])
        bad = [m for m in trained if m not in ("ows", "aows")]
        if bad or not trained:
            raise AowsError(f"train.methods must list ows and/or aows, got {trained}")
        base = [b for b in self.cfg["search"]["baselines"] if b in ("uniform", "greedy")]
        if len(base) != len(self.cfg["search"]["baselines"]):
            raise AowsError("search.baselines may hold 'uniform' and 'greedy' only")
        return base + trained

    # -------------------------------------------------------------- stages
    def stages(self) -> list[str]:
        return (["latency"] + [f"train_{m}" for m in self.cfg["train"]["methods"]] +
                (["refine"] if self.refines() else []) + ["search"] +
                [f"final_{m}" for m in self.methods()] + ["measure"])

    def run(self, until: str | None = None) -> dict | None:
        """All stages not done yet; with ``until``, stop after that stage (e.g. time the
        latency model on the target in one process, then train under torchrun)."""
        if until is not None and until not in self.stages():
            raise AowsError(f"--until {until}: the stages are {', '.join(self.stages())}")
        self.until = until
        if self.world > 1 and not self.cfg["latency"]["model"] and not self.done("latency"):
            raise AowsError("under torchrun, time the latency model first in one process "
                            "(`aows run CONFIG --out DIR --until latency` on the target), "
                            "or give latency.model")
        t0 = time.time()
        lat = self._stage("latency", self.stage_latency)
        if lat is None:
            return self._stopped()
        model = LatencyModel.load(self.out / "latency" / "latency.json", self.space)
        budget = self.budget(model)
        for m in self.cfg["train"]["methods"]:
            if self._stage(f"train_{m}", lambda m=m: self.stage_train(m, model, budget),
                           everyone=True) is None:
                return self._stopped()
        if self.refines():
            if self._stage("refine", lambda: self.stage_refine(model)) is None:
                return self._stopped()
            model = LatencyModel.load(self.out / "latency" / "refine" / "latency.json",
                                      self.space)
        found = self._stage("search", lambda: self.stage_search(model, budget))
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
        report = self.stage_report(model, budget, lat, found, meas, 0.0)
        self.log(f"report: {time.time() - t1:.1f} s; this invocation {time.time() - t0:.0f} s")
        return report

    def _stopped(self) -> None:
        if self.until != "reached":
            self.log(f"stopped; run the same command again to resume ({self.out})")
        return None

    def budget(self, model: LatencyModel) -> float:
        s = self.cfg["search"]
        if s["budget_ms"] is not None:
            b = float(s["budget_ms"])
        elif s["budget_multiplier"] is not None:
            m = float(s["budget_multiplier"])
            uni = self.space.uniform_multiplier_configs()
            mult, config = min(uni, key=lambda mc: abs(mc[0] - m))
            if abs(mult - m) > 1e-6:
                raise AowsError(f"search.budget_multiplier {m}: the space's uniform networks "
                                f"have multipliers {[round(u[0], 3) for u in uni]}")
            b = model.predict(config)
        else:
            lo = model.predict(self.space.narrowest())
            hi = model.predict(self.space.widest())
            b = lo + float(s["budget_fraction"]) * (hi - lo)
        if not np.isfinite(b) or b <= 0:
            raise AowsError(f"search budget {b} ms is not a positive number")
        return b

    def stage_latency(self) -> dict:
        c = self.cfg["latency"]
        folder = self.out / "latency"
        folder.mkdir(parents=True, exist_ok=True)
        if c["model"]:
            model = LatencyModel.load(c["model"], self.space)
            model.save(folder / "latency.json")
            self.log(f"  reusing {c['model']}")
            return {"reused": str(c["model"]), "noise_floor": model.meta.get("noise_floor")}
        from aows.latency.backends import Target
        from aows.latency.fit import fit, fit_flops
        from aows.latency.measure import collect_interleaved, heldout_plan
        from aows.latency.protocol import Protocol
        from aows.latency.store import read_samples
        from aows.latency.validate import error_metrics, scatter_plot, test_retest
        target = Target(c["backend"], c["batch_size"], c["threads"], c["dtype"],
                        c["channels_last"])
        proto = Protocol(**c["protocol"])
        self.log(f"  timing {c['networks']} networks and {c['heldout']} held-out ones twice "
                 f"on {c['backend']} (batch {c['batch_size']}, {c['threads']} threads)")
        plan = [(folder / "train.jsonl", c["networks"], "cover", {}),
                *heldout_plan(self.space, folder, c["heldout"])]
        collect_interleaved(self.space, target, proto, plan, c["blocks"],
                            should_stop=self.should_stop)
        if self.should_stop is not None and self.should_stop():
            return None  # the timings so far are in the files; a rerun continues them
        train = read_samples(folder / "train.jsonl", self.space)
        model = fit(self.space, train, K=c["K"], smooth=c["smooth"])
        held = read_samples(folder / "heldout.jsonl", self.space)
        retest = read_samples(folder / "heldout_retest.jsonl", self.space)
        ref = model.anchor_ref_ms
        noise = test_retest(held.by_config(ref), retest.by_config(ref))
        y = model.comparable(held)
        pred = model.predict_many(held.configs)
        flops = fit_flops(self.space, train)
        met, met_f = error_metrics(pred, y), error_metrics(flops.predict_many(held.configs), y)
        model.meta["noise_floor"] = noise["nrmse"]
        model.save(folder / "latency.json")
        scatter_plot(pred, y, self.out / "latency_fit.png",
                     title=f"black-box latency model, {len(train)} timed networks",
                     noise_nrmse=noise["nrmse"],
                     extra={"FLOPs fit": (flops.predict_many(held.configs), y)})
        self.log(f"  held-out NRMSE {100 * met['nrmse']:.2f} % (FLOPs fit "
                 f"{100 * met_f['nrmse']:.2f} %), noise floor {100 * noise['nrmse']:.2f} %")
        return {"networks": len(train), "heldout": len(held), "blackbox": met,
                "flops_baseline": met_f, "noise_floor": noise["nrmse"],
                "noise_floor_metrics": noise}

    def refines(self) -> bool:
        """Refinement needs the timings the model was fitted on (not a reused model)."""
        return self.cfg["latency"]["refine"] > 0 and not self.cfg["latency"]["model"]

    def stage_refine(self, model: LatencyModel) -> dict | None:
        import shutil

        from aows.latency.refine import refine
        from aows.latency.store import read_samples
        from aows.search import load_unaries
        c, folder = self.cfg["latency"], self.out / "latency"
        base = self.base_supernet()
        rep = refine(self.space, read_samples(folder / "train.jsonl", self.space),
                     folder / "refine",
                     unaries=load_unaries(self.out / f"supernet_{base}" / "unaries.json",
                                          self.space),
                     n_budgets=c["refine_budgets"], rounds=c["refine"],
                     noise_floor=model.meta.get("noise_floor"),
                     K=model.meta["fit"]["K"], smooth=model.meta["fit"]["smooth"],
                     heldout=read_samples(folder / "heldout.jsonl", self.space),
                     log=self._indent, should_stop=self.should_stop)
        if rep["stopped"]:
            return None
        shutil.copyfile(folder / "refine" / "refine.png", self.out / "latency_refine.png")
        last = rep["rounds"][-1]
        if not rep["converged"]:
            self.log(f"  not every pick within the noise floor after {c['refine']} rounds; "
                     "the refined model has all their timings")
        return {"rounds": len(rep["rounds"]), "converged": rep["converged"],
                "picks_unaries": base, "tolerance": last["tolerance"],
                "picks_nrmse": [e["picks"]["nrmse"] for e in rep["rounds"]],
                "picks_bias": [e["picks"]["bias_pct"] for e in rep["rounds"]],
                "picks_worst": [e["picks"]["max_abs_pct_err"] for e in rep["rounds"]],
                "heldout_nrmse": [e["heldout"]["nrmse"] for e in rep["rounds"]],
                "final_heldout_nrmse": rep.get("final_heldout", last["heldout"])["nrmse"]}

    def stage_train(self, method: str, model: LatencyModel, budget: float) -> dict | None:
        from aows.train.data import data_id
        from aows.train.loop import TrainConfig, branch_from_warmup, train_supernet, warmup_epochs
        t, d = self.cfg["train"], self.cfg["data"]
        cfg = TrainConfig(epochs=t["epochs"], batch_size=d["batch_size"], lr=t["lr"],
                          schedule=t["schedule"], warmup_epochs=t["warmup_epochs"],
                          sampled=t["sampled"], method=method, budget=budget,
                          sampling=t["sampling"], unary_mode=t["unary_mode"],
                          calib_batches=t["calib_batches"], seed=self.cfg["seed"],
                          device=self.cfg["device"], data=data_id(d["name"]))
        folder = self.out / f"supernet_{method}"
        keep = ()
        if method == "ows" and "aows" in t["methods"]:
            keep = (warmup_epochs(cfg),)  # AOWS can start from there
        if method == "aows" and self.rank == 0:
            k = branch_from_warmup(self.out / "supernet_ows", cfg, folder)
            if k:
                self.log(f"  the first {k} epochs (AOWS's uniform warm-up) are the OWS "
                         "run's, same draws and steps: reused from supernet_ows")
        self.barrier()
        train_supernet(self.space, self.data.train, cfg, folder, model, log=self._indent,
                       resume=True, should_stop=self.should_stop, val_batches=self.data.val,
                       steps_per_epoch=self.data.steps_per_epoch, keep_epochs=keep)
        from aows.train.runtime import load_checkpoint
        pos = load_checkpoint(folder / "checkpoint.pt")["position"]
        if pos["epoch"] < t["epochs"] or pos["iteration"] != 0:
            return None
        last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
        return {"folder": folder.name, "last_epoch": last}

    def stage_search(self, model: LatencyModel, budget: float) -> dict:
        from aows.search import Problem, load_unaries, pareto, search
        problems = {m: Problem(model, load_unaries(self.out / f"supernet_{m}" /
                                                   "unaries.json", self.space))
                    for m in self.cfg["train"]["methods"]}
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
            self.log(f"  {METHOD_LABELS[m]}: {res['predicted_latency_ms']:.3f} ms predicted "
                     f"(budget {budget:.3f}), {','.join(map(str, res['config']))}")
        front = pareto(problems[base], 100)
        atomic_write_text(self.out / "pareto.json", json.dumps(front))
        return {"budget_ms": budget, "base_supernet": base, "methods": out}

    def base_supernet(self) -> str:
        """The supernet whose weights and unaries the baselines use: OWS if trained."""
        trained = self.cfg["train"]["methods"]
        return "ows" if "ows" in trained else trained[0]

    def stage_final(self, method: str, config: list[int]) -> dict | None:
        from itertools import islice

        import torch

        from aows.final import export_onnx, load_supernet, save_final
        from aows.nn import build_network
        from aows.train.finetune import FinetuneConfig, evaluate, finetune
        f, d = self.cfg["finetune"], self.cfg["data"]
        src = method if method in ("ows", "aows") else self.base_supernet()
        folder = self.out / "final" / method
        inherited = folder / "inherited"
        if f["init"] not in ("inherited", "scratch"):
            raise AowsError("finetune.init must be 'inherited' or 'scratch'")
        if not (inherited / "weights.pt").exists() and self.rank == 0:
            if f["init"] == "inherited":
                supernet = load_supernet(self.out / f"supernet_{src}", self.space)
                calib = (x for x, _ in islice(self.data.train(0),
                                              self.cfg["train"]["calib_batches"]))
                net = supernet.export(config, calibration=calib)
            else:
                torch.manual_seed(self.cfg["seed"])
                net = build_network(self.space, config)
            save_final(inherited, net, self.space, config, method=method, init=f["init"],
                       supernet=f"supernet_{src}")
        self.barrier()  # the others load what rank 0 exported
        from aows.final import load_final
        from aows.train.runtime import resolve_device
        device = resolve_device(self.cfg["device"])
        net, _, _ = load_final(inherited)
        before = evaluate(net.to(device), self.data.val(0), device)
        self.log(f"  {METHOD_LABELS[method]}: top-1 {100 * before['top1']:.1f} % with "
                 f"{f['init']} weights, before fine-tuning")
        fcfg = FinetuneConfig(epochs=f["epochs"], batch_size=d["batch_size"], lr=f["lr"],
                              warmup_epochs=f["warmup_epochs"],
                              label_smoothing=f["label_smoothing"], mixup=f["mixup"],
                              weight_decay=f["weight_decay"], seed=self.cfg["seed"],
                              device=self.cfg["device"])
        res = finetune(net, self.data.train, self.data.val, fcfg, folder / "finetune",
                       self.data.steps_per_epoch, log=self._indent, resume=True,
                       should_stop=self.should_stop)
        if res["stopped"]:
            return None
        after = evaluate(net, self.data.val(0), device)
        net = net.cpu().eval()
        if self.rank != 0:
            return {"top1": after["top1"]}
        save_final(folder, net, self.space, config, method=method, init=f["init"],
                   top1=after["top1"], top5=after["top5"])
        onnx_diff = None
        if self.cfg["onnx"]:
            onnx_diff = export_onnx(net, self.space, folder / "model.onnx")
        return {"config": config, "top1_before_finetune": before["top1"],
                "top1": after["top1"], "top5": after["top5"], "val_images": after["images"],
                "onnx_max_abs_diff": onnx_diff}

    def stage_measure(self, model: LatencyModel) -> dict:
        from aows.final import describe_measurement, load_final, measure_networks
        from aows.latency.protocol import Protocol
        nets, configs = {}, {}
        for m in self.methods():
            nets[m], _, configs[m] = load_final(self.out / "final" / m)
        p = self.cfg["measure"]["protocol"]
        res = measure_networks(nets, model, configs, self.cfg["measure"]["repeats"],
                               seed=self.cfg["seed"],
                               protocol=None if p is None else Protocol(**p), log=self._indent)
        for line in describe_measurement(res).splitlines():
            self.log("  " + line)
        return res

    # -------------------------------------------------------------- report
    def stage_report(self, model, budget, lat, found, meas, wall) -> dict:
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
                "top1": fin["top1"], "top5": fin["top5"],
                "top1_before_finetune": fin["top1_before_finetune"],
                "supernet": found["methods"][m]["supernet"],
                "score": found["methods"][m]["score_base"]}
        report = {"budget_ms": budget, "noise_floor": meas["noise_floor"],
                  "noise_floor_source": meas["noise_floor_source"],
                  "space": self.cfg["space"], "data": self.cfg["data"]["name"],
                  "val_images": next(iter(self.done(f"final_{m}")["val_images"]
                                          for m in self.methods())),
                  "target": meas["target"], "latency_model": lat,
                  "latency_refine": self.done("refine"),
                  "methods": entries}
        stages = {p.stem: json.loads(p.read_text()).get("seconds")
                  for p in sorted((self.out / "stages").glob("*.json"))}
        # all stages, over however many invocations the run took
        report.update(wall_seconds=round(sum(v or 0 for v in stages.values()) + wall, 1),
                      stage_seconds=stages)
        atomic_write_text(self.out / "report.json", json.dumps(report, indent=1))
        figures(self.out, model, found, entries, budget)
        md = report_markdown(report)
        atomic_write_text(self.out / "report.md", md)
        self.log("")
        self.log(md.split("\n\n", 2)[1] if "\n\n" in md else md)
        files = [f for f in ("report.md", "report.json", "latency_fit.png",
                             "latency_refine.png", "pareto.png", "widths.png")
                 if (self.out / f).exists()]
        self.log(f"\nin {self.out}/: {', '.join(files)}")
        return report

    def _indent(self, msg: str) -> None:
        self.log("  " + msg)


def run_pipeline(config: str | Path | dict | None, out: str | Path,
                 log: Callable[[str], None] = print,
                 should_stop: Callable[[], bool] | None = None,
                 until: str | None = None) -> dict | None:
    """Run (or resume) the whole method: latency model, OWS/AOWS supernets, search,
    final networks, their measured latency, the report.

    Args:
        config: a YAML path, a dict of settings, or None for the defaults (``DEFAULTS``);
            every problem in it is reported at once, before anything runs.
        out: the run folder; a rerun skips complete stages and resumes the others.
        log: where progress lines go.
        should_stop: polled between steps and timing chunks; when it turns true the
            stage in progress saves what it has and the call returns None.
        until: stop after this stage (e.g. "latency").

    Returns:
        The report (per method: configuration, predicted and measured latency, top-1),
        or None when stopped.
    """
    if isinstance(config, dict):
        cfg = _merge(DEFAULTS, config, "config")
    else:
        cfg = load_config(config)
    return Pipeline(cfg, out, log, should_stop).run(until)
