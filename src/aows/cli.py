"""`aows` command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from aows.defaults import DEFAULT_IMPORTANCE, IMPORTANCE_CRITERIA
from aows.errors import AowsError, Interrupted


# ------------------------------------------------------------------ helpers
def _positive(kind):
    """argparse type: a number > 0 (argparse prints the error and exits with 2)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _nonneg(kind, auto: bool = False):
    """argparse type: a number >= 0 (or 'auto' where allowed), kept as text for 'auto'."""
    def parse(text):
        if auto and text == "auto":
            return text
        try:
            v = kind(text)
        except ValueError:
            hint = " or 'auto'" if auto else ""
            raise argparse.ArgumentTypeError(f"'{text}' is not a number{hint}") from None
        if not v >= 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return text if auto else v
    parse.__name__ = f"non-negative {kind.__name__}"
    return parse


POS_INT, POS_FLOAT, NONNEG_FLOAT = _positive(int), _positive(float), _nonneg(float)


class _Signals:
    """SIGTERM / Ctrl-C set a flag that long work polls between steps (it then saves and
    returns); ``check`` turns a raised flag into ``Interrupted`` (a non-zero exit)."""

    def __enter__(self):
        from aows.train.runtime import signal_flag
        self.flag, self._restore = signal_flag()
        return self

    def __exit__(self, *exc):
        self._restore()
        return False

    def check(self, how_to_resume: str) -> None:
        if self.flag():
            import signal
            name = signal.Signals(self.flag.signum).name
            raise Interrupted(f"stopped by {name}; everything written so far is kept: "
                              f"{how_to_resume}", self.flag.signum)

SPACE_HELP = ("search space: mobilenet_v1, resnet18, resnet50, mobilenet_v2, or a space "
              "file FILE.yaml (`aows space show` lists its width variables)")
MODEL_HELP = ("your model instead of a space: torchvision:NAME, timm:NAME or "
              "path/to/file.py:FUNCTION (returns the module at full width, trained weights "
              "loaded); its width graph is found from the module")


def _space_args(p: argparse.ArgumentParser, required: bool = True, positional: bool = False
                ) -> None:
    if positional:
        p.add_argument("space", nargs="?", default=None, help=SPACE_HELP)
    else:
        p.add_argument("--space", default=None, help=SPACE_HELP)
    p.set_defaults(space_required=required)
    p.add_argument("--resolution", type=POS_INT, default=None, help="input resolution (px)")
    p.add_argument("--classes", type=POS_INT, default=None, help="number of classes")
    _model_args(p)
    _width_args(p)


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("your own model (instead of --space)")
    g.add_argument("--model", default=None, help=MODEL_HELP)
    g.add_argument("--input-shape", type=_shape, default=None,
                   help="C,H,W of one input (default 3,R,R with R the --resolution)")
    g.add_argument("--weights", default=None,
                   help="tensors-only state_dict file loaded into the model")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not C,H,W (e.g. 3,224,224)") from None
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not C,H,W (e.g. 3,224,224)")
    return shape


def _space_name(args) -> str:
    """--model or --space (one of them; --space has a default where the command had one)."""
    model, space = getattr(args, "model", None), getattr(args, "space", None)
    if model and space:
        raise AowsError(f"give --space {space} or --model {model}, not both")
    if model:
        from aows.models import is_model_spec
        if not is_model_spec(model):
            raise AowsError(f"--model {model}: use torchvision:NAME, timm:NAME or "
                            "path/to/file.py:FUNCTION")
        return model
    if space:
        return space
    if getattr(args, "space_required", False):
        raise AowsError("give a search space (--space NAME) or your model (--model ...)")
    return "mobilenet_v1"


def _space_params(args) -> dict:
    """Parameters of the space that every command takes (None keeps a default)."""
    params = dict(resolution=args.resolution, min_width=args.min_width,
                  max_width=args.max_width, levels=args.levels, divisor=args.divisor)
    if getattr(args, "model", None):
        params.update(input_shape=args.input_shape, weights=args.weights)
        if args.input_shape and not args.resolution:
            params["resolution"] = args.input_shape[-1]
    return params


def _width_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("width choices (Table D.1 rule; defaults 0.2, 1.5, 14, 8)")
    g.add_argument("--min-width", type=POS_FLOAT, default=None, help="smallest multiplier")
    g.add_argument("--max-width", type=POS_FLOAT, default=None, help="largest multiplier")
    g.add_argument("--levels", type=POS_INT, default=None, help="multipliers from min to max")
    g.add_argument("--divisor", type=POS_INT, default=None, help="widths rounded to multiples")


# the options of the library's settings objects that the commands expose; their types,
# defaults, ranges and help come from the dataclass fields (aows.settings)
PROTOCOL_OPTIONS = ["warmup", "rounds", "runs", "reduce", "chunk", "anchor"]
TRAIN_OPTIONS = ["epochs", "method", "budget", "sampled", "sampling", "batch_size",
                 "lr", "schedule", "warmup_epochs", "seed", "device", "amp", "channels_last",
                 "scratch", "importance", "progress"]
FINETUNE_OPTIONS = ["epochs", "batch_size", "lr", "warmup_epochs", "label_smoothing", "mixup",
                    "weight_decay", "seed", "device", "progress"]


def _target_args(p: argparse.ArgumentParser) -> None:
    from aows.latency.target import Target
    from aows.settings import add_options
    add_options(p.add_argument_group("target (what is timed)"), Target)


def _protocol_args(p: argparse.ArgumentParser) -> None:
    from aows.latency.protocol import Protocol
    from aows.settings import add_options
    add_options(p.add_argument_group("timing protocol"), Protocol, PROTOCOL_OPTIONS)


def _preset_args(p, many: bool = True) -> None:
    """--preset NAME: a configuration of the paper (``aows.presets``), by name; ``p`` a
    parser or a group of it."""
    from aows.presets import preset_names
    p.add_argument(
        "--preset", action="append" if many else "store", default=None,
        choices=preset_names(), metavar="NAME",
        help="a MobileNet-v1 configuration of the paper (the AOWS supplementary, Table D.2: "
        f"found by greedy, OWS, AOWS for TensorRT, and the original): "
        f"{', '.join(preset_names())}"
        + ("; repeatable" if many else "") + " (`aows latency presets` lists their widths)")


def _configs(space, texts, presets) -> list[tuple[str | None, tuple[int, ...]]]:
    """(label, configuration): the given widths (no label), then the presets by name."""
    from aows.presets import preset_config
    from aows.space import parse_config
    out = [(None, space.validate(parse_config(t))) for t in texts]
    return out + [(name, preset_config(name, space)) for name in presets or []]


def _labelled(label: str | None, config) -> str:
    widths = ",".join(map(str, config))
    return f"{label} [{widths}]" if label else widths


def _space(args):
    from aows.catalogue import get_space
    return get_space(_space_name(args), classes=args.classes, **_space_params(args))


# -------------------------------------------------------------------- space
def cmd_space_show(args) -> None:
    from aows.space import describe_variables
    space = _space(args)
    rows = describe_variables(space)
    held = space.held_fixed() if hasattr(space, "held_fixed") else []
    if hasattr(space, "modules_of"):  # a model's space: the user's modules per variable
        for v, r in enumerate(rows):
            r["modules"] = space.modules_of(v)
    if args.json:
        _print_json({"variables": rows, "held": held} if hasattr(space, "held_fixed")
                    else rows)
        return
    print(f"space '{space.name}' {space.params}: {space.n_searchable} searchable width "
          f"variables, {space.n_layers} layers, {space.n_configurations():.3g} "
          f"configurations, {len(space.unknowns()[0])} latency unknowns")
    for r in rows:
        kind = "fixed" if r["fixed"] else f"{len(r['choices'])} choices"
        touched = ", ".join(f"{m['layer']}({m['role']})" for m in r["layers"])
        ch = r["choices"]
        shown = ch if len(ch) <= 8 else [*ch[:3], "...", *ch[-3:]]
        print(f"  {r['name']:<22} {kind:<11} {','.join(map(str, shown)):<32} {touched}")
    if held:
        print(f"held fixed ({len(held)} widths, never searched):")
        for h in held:
            print(f"  {h['name']} = {h['width']}: {'; '.join(h['reasons'])}")


def _target(args):
    from aows.latency.backends import Target
    from aows.settings import from_args
    return Target(**from_args(Target, args))


def _protocol(args):
    from aows.latency.protocol import Protocol
    from aows.settings import from_args
    return Protocol(**from_args(Protocol, args, PROTOCOL_OPTIONS))


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


# ------------------------------------------------------------------ latency
def cmd_latency_generate(args) -> None:
    from aows.latency.measure import collect
    space, target = _space(args), _target(args)
    from aows.latency.defaults import DEFAULT_SAMPLER
    sampler = ("biased" if args.biased else "uniform" if args.uniform else "cover" if args.cover
               else DEFAULT_SAMPLER)
    timed = collect(space, target, _protocol(args), args.output, args.count, sampler,
                    seed=args.seed, progress=not args.quiet)
    print(f"{args.output}: {args.count} networks ({timed} timed now, "
          f"{args.count - timed} already there)")


def cmd_latency_retest(args) -> None:
    """Re-time networks of an existing file with the same target and protocol."""
    from aows.catalogue import space_from_description
    from aows.latency.measure import collect, target_of
    from aows.latency.store import read_samples
    from aows.latency.validate import test_retest
    first = read_samples(args.samples)
    if first.header is None:
        raise AowsError(f"{args.samples} has no aows header: retest needs the target it was "
                        "timed on")
    space = space_from_description(first.header["space"])
    target, proto = target_of(first)
    count = min(args.count or len(first), len(first))
    # checked for load against the first timing's fastest anchor, as the first timing was
    collect(space, target, proto, args.output, count, "given", configs=first.configs,
            progress=not args.quiet,
            anchor_min_ms=min((a for a in first.anchors if a is not None),
                              default=float("inf")))
    second = read_samples(args.output, space)
    raw = test_retest(first.by_config(), second.by_config())
    print(f"noise floor (test-retest over {raw['n']} networks): raw NRMSE {_pct(raw['nrmse'])}"
          f", RMSE {raw['rmse_ms']:.4f} ms, max {_pct(raw['max_abs_pct_err'])}")
    ref = first.anchor_reference()
    if ref is not None and second.has_anchors:
        nz = test_retest(first.by_config(ref), second.by_config(ref))
        print(f"  drift-normalised (anchor): NRMSE {_pct(nz['nrmse'])}")


def cmd_latency_fit(args) -> None:
    from aows.latency.fit import fit, fit_flops
    from aows.latency.store import read_many
    from aows.latency.validate import range_ends
    space = _space(args)
    samples = read_many(args.samples, space)
    if samples.header is None:
        print("note: no aows header in the sample file(s) (reference layout): the widths fit "
              f"space '{space.name}' {space.params}, but its resolution and the target "
              "cannot be checked", file=sys.stderr)
    if args.method == "flops":
        model = fit_flops(space, samples, normalise=not args.raw)
    else:
        K = args.K if args.K == "auto" else float(args.K)
        smooth = args.smooth if args.smooth == "auto" else float(args.smooth)
        model = fit(space, samples, K=K, smooth=smooth, normalise=not args.raw,
                    ridge=args.ridge)
    model.save(args.output)
    f = model.meta["fit"]
    extra = (f", K={f['K']:g}, smooth={f['smooth']:g}, solved in {f['fit_seconds']:.3f} s"
             if args.method == "blackbox" else "")
    units = (f"; drift-normalised to the anchor's {model.anchor_ref_ms:.3f} ms"
             if model.anchor_ref_ms else "; raw latencies")
    print(f"{args.output}: {args.method} model from {len(samples)} networks{extra}{units}")
    what = {"widest": "the widest network" + (" (your model)" if hasattr(space, "plan")
                                              else ""), "narrowest": "the narrowest"}
    for end, r in range_ends(model, samples).items():
        print(f"{what[end]}: timed {r['timed_ms']:.3f} ms, predicted {r['predicted_ms']:.3f} "
              f"ms ({100 * r['relative_error']:+.1f} %)")
    unseen = f.get("unseen_unknowns", 0)
    if unseen:
        print(f"warning: {unseen} of {f['unknowns']} latency unknowns appear in none of the "
              f"{len(samples)} timed networks; their tables are the prior's guess. Time more "
              "networks with `aows latency generate --cover` (it covers every unknown first)"
              " or raise --ridge", file=sys.stderr)


def cmd_latency_validate(args) -> None:
    from aows.latency.model import LatencyModel
    from aows.latency.store import read_samples
    from aows.latency.validate import check_model, error_metrics, scatter_plot
    model = LatencyModel.load(args.latency)
    samples = read_samples(args.samples, model.space)
    retest = read_samples(args.retest, model.space) if args.retest else None
    met, pred, y = check_model(model, samples, retest, raw=args.raw)
    noise = met.pop("noise_floor", None)
    ref = model.anchor_ref_ms if met["drift_normalised"] else None
    baselines = {}
    for path in args.baseline or []:
        other = LatencyModel.load(path, model.space)
        p = other.predict_many(samples.configs)
        baselines[f"{other.kind} ({Path(path).name})"] = (p, y)
        met.setdefault("baselines", {})[path] = error_metrics(p, y)
    if args.plot:
        scatter_plot(pred, y, args.plot,
                     title=f"{model.kind} model on {Path(args.samples).name}",
                     noise_nrmse=noise["nrmse"] if noise else None, extra=baselines)
        met["plot"] = args.plot
    if args.json:
        _print_json(met)
        return
    units = "drift-normalised to the model's reference state" if ref else "raw timings"
    print(f"{met['n']} networks, mean {met['mean_latency_ms']:.3f} ms/image ({units})")
    print(f"  RMSE {met['rmse_ms']:.4f} ms   NRMSE {_pct(met['nrmse'])}   MAPE {_pct(met['mape'])}"
          f"   max {_pct(met['max_abs_pct_err'])}   bias {_pct(met['bias_pct'])}")
    print(f"  within 5 %: {_pct(met['within_5pct'])}   within 10 %: {_pct(met['within_10pct'])}")
    if ref is not None:
        print(f"  against raw timings: NRMSE {_pct(met['raw']['nrmse'])}")
    if noise:
        print(f"  noise floor (test-retest, {noise['n']} networks): NRMSE {_pct(noise['nrmse'])}")
    for path, b in met.get("baselines", {}).items():
        print(f"  baseline {path}: NRMSE {_pct(b['nrmse'])}, bias {_pct(b['bias_pct'])}")
    if args.plot:
        print(f"  plot: {args.plot}")


def cmd_latency_benchmark(args) -> None:
    from aows.latency.measure import time_configs
    from aows.latency.model import LatencyModel
    if not args.config and not args.preset:
        raise AowsError('give configurations ("8,16,...") or --preset NAME to time')
    if args.preset and not args.space and not args.model:
        from aows.presets import get_preset  # the presets' own space, not a guess
        args.space = get_preset(args.preset[0]).space
    space = _space(args)
    labels, configs = zip(*_configs(space, args.config, args.preset))
    ms, anchors = time_configs(space, configs, _target(args), _protocol(args),
                               with_anchor=True)
    model = LatencyModel.load(args.latency, space) if args.latency else None
    ref = model.anchor_ref_ms if model else None
    rows = []
    for label, cfg, m, a in zip(labels, configs, ms, anchors):
        row = {"config": list(cfg), "measured_latency_ms": float(m), "anchor_ms": a,
               "mflops": space.flops(cfg) / 1e6}
        if label:
            row["preset"] = label
        if model:
            row["predicted_latency_ms"] = model.predict(cfg)
            if ref is not None and a is not None:
                row["measured_normalised_ms"] = float(m) * ref / a
        rows.append(row)
    if args.json:
        _print_json(rows)
        return
    for row in rows:
        line = (f"{_labelled(row.get('preset'), row['config'])}: measured "
                f"{row['measured_latency_ms']:.3f} ms/image, {row['mflops']:.1f} MFLOPs")
        if "measured_normalised_ms" in row:
            line += (f", drift-normalised {row['measured_normalised_ms']:.3f} ms (machine "
                     f"{100 * (row['anchor_ms'] / ref - 1):+.1f} % vs the model's reference)")
        if model:
            cmp = row.get("measured_normalised_ms", row["measured_latency_ms"])
            line += (f"; predicted {row['predicted_latency_ms']:.3f} ms "
                     f"({100 * (row['predicted_latency_ms'] / cmp - 1):+.1f} %)")
        print(line)


def cmd_latency_predict(args) -> None:
    from aows.latency.model import LatencyModel
    model = LatencyModel.load(args.latency)
    texts = list(args.config)
    if args.file:
        try:
            lines = Path(args.file).read_text().splitlines()
        except OSError as err:
            raise AowsError(f"--file {args.file}: cannot read it ({err.strerror})") from None
        texts += [t for t in (line.split("#")[0].strip() for line in lines) if t]
    if not texts and not args.preset:
        raise AowsError("give configurations (\"8,16,...\"), --file with one per line or "
                        "--preset NAME")
    labels, configs = zip(*_configs(model.space, texts, args.preset))
    pred = model.predict_many(configs)
    rows = [{"config": list(c), "predicted_latency_ms": float(p)} for c, p in zip(configs, pred)]
    for r, label in zip(rows, labels):
        if label:
            r["preset"] = label
    if args.json:
        _print_json(rows)
        return
    for r in rows:
        print(f"{_labelled(r.get('preset'), r['config'])}: {r['predicted_latency_ms']:.4f} "
              "ms/image")


def cmd_latency_presets(args) -> None:
    from aows.presets import PRESETS
    rows = [p.describe() for p in PRESETS.values()]
    if args.json:
        _print_json(rows)
        return
    for r in rows:
        print(f"{r['name']:<13} {r['space']}  {','.join(map(str, r['widths']))}")
        print(f"{'':<13} {r['method']}; {r['source']}")


def cmd_latency_refine(args) -> None:
    from aows.latency.model import LatencyModel
    from aows.latency.store import read_many, read_samples
    from aows.latency.validate import test_retest
    from aows.refine import refine
    model = LatencyModel.load(args.latency)
    space = model.space
    samples = read_many(args.samples, space)
    unaries = None
    if args.unaries:
        from aows.search import load_unaries
        unaries = load_unaries(args.unaries, space)
    heldout, floor = None, model.meta.get("noise_floor")
    if args.heldout:
        heldout = read_samples(args.heldout, space)
    if args.retest:
        if heldout is None:
            raise AowsError("--retest needs --heldout (the same networks timed before)")
        ref = model.anchor_ref_ms if heldout.has_anchors else None
        floor = test_retest(heldout.by_config(ref),
                            read_samples(args.retest, space).by_config(ref))["nrmse"]
    f = model.meta.get("fit", {})
    with _Signals() as sig:
        rep = refine(space, samples, args.out, unaries=unaries, budgets=args.budgets,
                     n_budgets=args.n_budgets, rounds=args.rounds,
                     tolerance=None if args.tolerance is None else args.tolerance / 100,
                     noise_floor=floor, K=f.get("K"), smooth=f.get("smooth"),
                     ridge=args.ridge if args.ridge is not None else f.get("ridge"),
                     heldout=heldout, select=not args.keep_priors, progress=not args.quiet,
                     should_stop=sig.flag)
    if rep["stopped"]:
        sig.check("run the same command again to continue")
    last = rep["rounds"][-1]
    state = ("every pick within the tolerance" if rep["converged"] else
             f"NOT every pick within the tolerance after {len(rep['rounds'])} rounds (the "
             "refined model has all their timings; --rounds for more)")
    out = Path(args.out)
    print(f"{out / 'latency.json'}: {state}; round {last['round']}: picks' NRMSE "
          f"{_pct(last['picks']['nrmse'])}, worst {_pct(last['picks']['max_abs_pct_err'])}, "
          f"tolerance {_pct(last['tolerance'])}. Rounds: {out / 'refine.json'}, "
          f"{out / 'refine.png'}")


def cmd_latency_lut(args) -> None:
    from aows.latency.lut import build_lookup_table
    model = build_lookup_table(_space(args), _target(args), _protocol(args),
                               progress=not args.quiet)
    model.save(args.output)
    print(f"{args.output}: per-layer lookup table of {len(model.space.unknowns()[0])} layers")


# ------------------------------------------------------------------- search
def cmd_search(args) -> None:
    from aows.latency.model import LatencyModel
    from aows.search import Problem, load_unaries, pareto, plot_pareto, search
    model = LatencyModel.load(args.latency)
    problem = Problem(model, load_unaries(args.unaries, model.space))
    if args.pareto:
        res = pareto(problem, args.budgets)
        if args.plot:
            plot_pareto(problem, res, args.plot)
            res["plot"] = args.plot
        if args.json:
            _print_json(res)
            return
        print(f"exact front: {len(res['front'])} configurations from "
              f"{res['front'][0]['predicted_latency_ms']:.3f} to "
              f"{res['front'][-1]['predicted_latency_ms']:.3f} ms/image")
        for row in res["sweep"][:: max(1, len(res["sweep"]) // 10)]:
            print(f"  budget {row['budget_ms']:8.3f} ms: {row['predicted_latency_ms']:8.3f} ms, "
                  f"score {row['score']:+.4f}  {','.join(map(str, row['config']))}")
        if args.plot:
            print(f"plot: {args.plot}")
        return
    if args.budget is None:
        raise AowsError("give --budget MS (or --pareto for the whole front)")
    res = search(problem, args.budget, args.solver)
    if args.json:
        _print_json(res)
        return
    print(f"{res['solver']}: {','.join(map(str, res['config']))}")
    print(f"  predicted latency {res['predicted_latency_ms']:.4f} ms/image "
          f"({100 * res['budget_used']:.1f} % of the {args.budget:g} ms budget), "
          f"score {res['score']:+.5f}")


def cmd_train(args) -> None:
    from aows.catalogue import get_space
    from aows.latency.model import LatencyModel
    from aows.settings import from_args
    from aows.train.data import data_id, get_data
    from aows.train.loop import TrainConfig, train_supernet
    from aows.train.runtime import check_run_folder, init_distributed
    rank, world = init_distributed(args.device)
    if rank == 0:
        check_run_folder(args.out, args.resume, "checkpoint.pt",
                         ("unaries.json", "metrics.jsonl"), "training")
    try:
        res = args.resolution or 224
        data = get_data(args.data, res, args.batch_size, args.seed, rank, world, args.workers)
        space = get_space(_space_name(args), classes=data.classes,
                          **{**_space_params(args), "resolution": res})
        latency = LatencyModel.load(args.latency, space) if args.latency else None
        cfg = TrainConfig(**from_args(TrainConfig, args, TRAIN_OPTIONS),
                          data=data_id(args.data))
        with _Signals() as sig:
            train_supernet(space, data.train, cfg, args.out, latency, resume=args.resume,
                           should_stop=sig.flag, val_batches=None if args.no_val else data.val,
                           steps_per_epoch=data.steps_per_epoch)
        sig.check("run the same command with --resume to continue")
    finally:
        if world > 1:
            import torch.distributed as dist
            dist.destroy_process_group()
    if rank == 0:
        print(f"{args.out}/unaries.json: per-layer scores for `aows search`; "
              f"{args.out}/metrics.jsonl: the log")


def _run(cfg, out: str, until: str | None = None) -> None:
    from aows.pipeline import run_pipeline, summary
    with _Signals() as sig:
        report = run_pipeline(cfg, out, until=until, should_stop=sig.flag)
    sig.check("run the same command again to continue")
    if report is not None:
        print(summary(report, out))


def cmd_run(args) -> None:
    from aows.config import load_config
    _run(load_config(args.config), args.out, args.until)


def cmd_config(args) -> None:
    from aows.config import load_config
    from aows.settings import describe_fields
    cfg = load_config(args.config)
    print(f"# every setting of `aows run`{' with ' + args.config if args.config else ''}"
          " (defaults, then the file); YAML")
    print(describe_fields(cfg))


def cmd_quickstart(args) -> None:
    import dataclasses

    from aows.config import quickstart_config
    cfg = quickstart_config()
    out = args.out
    if args.model:
        from aows.models import is_model_spec
        model = args.model if is_model_spec(args.model) else f"torchvision:{args.model}"
        cfg = dataclasses.replace(cfg, model=model)
        out = out or f"quickstart_{args.model.rsplit(':', 1)[-1]}"
        print(f"aows quickstart on your model {model}: its width graph, then")
    out = out or "quickstart"
    print("aows quickstart: latency model of this CPU, OWS and AOWS supernets on the "
          "digits, search, fine-tuning and timing of the final networks; 5 to 10 minutes "
          f"here -> {out}/")
    _run(cfg, out)


# ------------------------------------------------------------- final network
def _config_arg(text: str) -> list[int]:
    """Widths "8,16,..." or a JSON file with a "config" list (aows search --json)."""
    p = Path(text)
    if p.suffix == ".json" or p.exists():
        try:
            obj = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise AowsError(f"--config {text}: cannot read it as JSON ({err})") from None
        if not isinstance(obj, dict) or "config" not in obj:
            raise AowsError(f'--config {text}: expected a JSON object with a "config" list '
                            "(the output of `aows search --json`)")
        return [int(c) for c in obj["config"]]
    from aows.space import parse_config
    return parse_config(text)


def _export_config(args, space) -> tuple[list[int], dict]:
    """The configuration --config or --preset names, and what to record of it."""
    if args.preset:
        from aows.presets import preset_config
        return preset_config(args.preset, space), {"preset": args.preset}
    return space.validate(_config_arg(args.config)), {}


def cmd_export(args) -> None:
    from aows.final import export_config, export_from_model, export_onnx, save_final
    from aows.train.data import data_id, get_data
    if bool(args.run) == bool(args.model):
        raise AowsError("give --run RUN_DIR (a trained supernet) or --model MODEL (prune "
                        "your model now), one of them")
    if args.importance is not None and not args.model:
        raise AowsError("--importance orders a model's channels before slicing it: it goes "
                        "with --model (a supernet's run folder keeps the order it was trained "
                        "with)")
    if args.model:
        importance = args.importance or DEFAULT_IMPORTANCE
        if importance == "taylor" and not args.data:
            raise AowsError("--importance taylor reads a few batches of data: give --data "
                            "(or --importance bn, l1 or none)")
        data = (get_data(args.data, args.input_shape[-1] if args.input_shape else
                         args.resolution or 224, args.batch_size) if args.data else None)
        classes = args.classes or (data.classes if data is not None else None)
        space = _space_from(args, classes)
        config, meta = _export_config(args, space)
        if data is None:
            print("no --data: BatchNorm statistics are the model's own (of its full "
                  "widths), not re-estimated for this configuration (give --data)",
                  file=sys.stderr)
        plain, order = export_from_model(
            space, config, importance, None if data is None else (lambda: data.train(0)),
            args.calib_batches)
        meta.update(source="model", importance=importance,
                    recalibrated=data is not None)
        _check_out(args)
        save_final(args.out, plain, space, config, **meta)
        from aows.io import atomic_write_text
        atomic_write_text(Path(args.out, "channel_order.json"), json.dumps(order))
    else:
        from aows.final import load_supernet_state
        from aows.search import load_unaries_space
        space = load_unaries_space(Path(args.run) / "unaries.json")
        config, meta = _export_config(args, space)
        net, trained = load_supernet_state(args.run, space)
        batches = None
        if args.data and trained.get("data") and trained["data"] != data_id(args.data):
            print(f"warning: --data {args.data} is not the data the supernet was trained on "
                  f"({trained['data']}): BatchNorm statistics are re-estimated on it; give "
                  f"--data {trained['data']} for those of the training data", file=sys.stderr)
        if args.data:
            batches = get_data(args.data, space.layers[0].in_res, args.batch_size).train(0)
        else:
            print("no --data: BatchNorm statistics are the supernet's shared ones, not "
                  "recalibrated for this configuration (give --data to recalibrate)",
                  file=sys.stderr)
        plain = export_config(net, config, batches, args.calib_batches)
        _check_out(args)
        save_final(args.out, plain, space, config, supernet=str(args.run),
                   recalibrated=batches is not None, **meta)
    print(f"{args.out}/config.json + weights.pt: {','.join(map(str, config))}")
    if args.onnx:
        diff = export_onnx(plain, space, Path(args.out) / "model.onnx")
        print(f"{args.out}/model.onnx" + ("" if diff is None else
                                          f": ONNX Runtime matches PyTorch (max difference "
                                          f"{diff:.1e} of the output's scale)"))


def _check_out(args) -> None:
    """An existing final-network folder is replaced only with --force."""
    if (Path(args.out) / "config.json").exists() and not args.force:
        raise AowsError(f"--out {args.out} already holds a final network; give another "
                        "folder, or --force to replace it")


def _space_from(args, classes):
    from aows.catalogue import get_space
    return get_space(_space_name(args), classes=classes, **_space_params(args))


def cmd_evaluate(args) -> None:
    from aows.final import load_final
    from aows.train.data import get_data
    from aows.train.finetune import evaluate
    if bool(args.final) == bool(args.model):
        raise AowsError("give a final-network folder (`aows export`) or --model MODEL "
                        "(your model as it is), one of them")
    if args.final:
        net, space, _ = load_final(args.final)
        res = space.layers[0].in_res
        data = get_data(args.data, res, args.batch_size)
        what = args.final
    else:
        res = args.input_shape[-1] if args.input_shape else args.resolution or 224
        data = get_data(args.data, res, args.batch_size)
        from aows.models import load_model
        net = load_model(_space_name(args), args.classes or data.classes, args.weights)
        what = args.model
    ev = evaluate(net, data.val(0))
    if args.json:
        _print_json(ev)
        return
    print(f"{what}: top-1 {100 * ev['top1']:.2f} %, top-5 {100 * ev['top5']:.2f} % on "
          f"{ev['images']} validation images")


def cmd_finetune(args) -> None:
    from aows.final import load_final, save_final
    from aows.nn import build_network
    from aows.settings import from_args
    from aows.train.data import get_data
    from aows.train.finetune import FinetuneConfig, evaluate, finetune
    from aows.train.runtime import init_distributed
    rank, world = init_distributed(args.device)
    net, space, config = load_final(args.final)
    if args.scratch:
        import torch
        torch.manual_seed(args.seed)
        net = build_network(space, config)
    data = get_data(args.data, space.layers[0].in_res, args.batch_size, args.seed, rank, world)
    out = Path(args.out or Path(args.final) / "finetuned")
    cfg = FinetuneConfig(**from_args(FinetuneConfig, args, FINETUNE_OPTIONS))
    with _Signals() as sig:
        res = finetune(net, data.train, data.val, cfg, out, data.steps_per_epoch,
                       resume=args.resume, should_stop=sig.flag)
    if res["stopped"]:
        sig.check("run the same command with --resume to continue")
    from aows.train.runtime import resolve_device
    ev = evaluate(net, data.val(0), resolve_device(args.device))
    if rank == 0:
        save_final(out, net, space, config, finetuned_from=str(args.final),
                   top1=ev["top1"], top5=ev["top5"])
        print(f"top-1 {100 * ev['top1']:.2f} %, top-5 {100 * ev['top5']:.2f} % on "
              f"{ev['images']} validation images; {out}/config.json + weights.pt")


def cmd_measure(args) -> None:
    from aows.final import describe_measurement, load_final, measure_networks
    from aows.latency.model import LatencyModel
    if not args.final and not args.preset:
        raise AowsError("give final-network folders (`aows export`) or --preset NAME")
    nets, configs, space = {}, {}, None
    for folder in args.final:
        name = Path(folder).name
        nets[name], space, configs[name] = load_final(folder)
    model = LatencyModel.load(args.latency, space)
    if args.preset:
        from aows.nn import build_network
        from aows.presets import preset_config
        for name in args.preset:
            config = preset_config(name, model.space)
            # random weights: the latency of a network does not depend on its weights
            label = name if name not in nets else f"{name} (preset)"
            nets[label], configs[label] = build_network(model.space, config), config
    reference = None
    if hasattr(model.space, "plan") and not args.no_original:
        # a model's space: the user's own model (the widest configuration) is timed
        # beside the found networks, and each is compared with it
        reference = "original" if "original" not in nets else "original (your model)"
        nets[reference] = model.space.build(model.space.widest())
        configs[reference] = model.space.widest()
    res = measure_networks(nets, model, configs, args.repeats, reference=reference)
    if args.json:
        _print_json(res)
        return
    print(describe_measurement(res))


# ------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="aows", description="Optimal channel widths of a CNN under a latency budget "
        "(AOWS, CVPR 2020).")
    sub = ap.add_subparsers(dest="command", required=True)
    from aows.config import MeasureSection
    from aows.latency.defaults import DEFAULT_K, DEFAULT_RIDGE, DEFAULT_SMOOTH
    from aows.settings import add_options
    from aows.train.config import FinetuneConfig, TrainConfig

    sp = sub.add_parser("space", help="inspect a search space")
    ssub = sp.add_subparsers(dest="space_command", required=True)
    p = ssub.add_parser("show", help="width variables in order, their choices and layers")
    _space_args(p, positional=True)
    p.add_argument("--json", action="store_true",
                   help='a list of {"name", "choices", "fixed", "base_width", "layers"}')
    p.set_defaults(func=cmd_space_show)

    lat = sub.add_parser("latency", help="black-box latency model of a target")
    lsub = lat.add_subparsers(dest="latency_command", required=True)

    p = lsub.add_parser("generate", help="time networks of the space (resumable JSONL)")
    _space_args(p)
    _target_args(p)
    _protocol_args(p)
    p.add_argument("--count", type=POS_INT, required=True, help="networks the file must hold")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--biased", action="store_true",
                      help="biased sampling: least-seen layer widths first (the AOWS "
                      "supplementary, section A). "
                      "A short run of it is a narrow, shifting mix: fits on 4 consecutive "
                      "slices of 500 were -1.7 to +5.0 %% off on uniform networks "
                      "(benchmarks/latency_bias.py); prefer --cover")
    mode.add_argument("--cover", action="store_true",
                      help="biased until every layer width pair is timed once, then uniform "
                      "(lowest held-out error per timed network measured here; the default)")
    mode.add_argument("--uniform", action="store_true",
                      help="uniform sampling (held-out sets: networks drawn as a user's are)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_latency_generate)

    p = lsub.add_parser("retest", help="re-time a file's networks: the noise floor")
    p.add_argument("samples")
    p.add_argument("--count", type=POS_INT, default=None, help="first N networks (default all)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_latency_retest)

    p = lsub.add_parser("fit", help="fit the per-layer latency tables")
    p.add_argument("samples", nargs="+")
    _space_args(p)
    p.add_argument("-K", default=DEFAULT_K, type=_nonneg(float, auto=True),
                   help=f"monotonicity prior weight, or 'auto' (CV); default {DEFAULT_K:g}")
    p.add_argument("--smooth", default=DEFAULT_SMOOTH, type=_nonneg(float, auto=True),
                   help=f"smoothness prior weight, or 'auto' (CV); default {DEFAULT_SMOOTH:g}"
                   " (chosen in benchmarks/latency_model.py)")
    p.add_argument("--method", default="blackbox", choices=["blackbox", "flops"])
    p.add_argument("--ridge", type=NONNEG_FLOAT, default=DEFAULT_RIDGE,
                   help=f"pull toward the FLOPs-shaped tables (default {DEFAULT_RIDGE:g}; "
                   "try 1e-2 when far fewer networks than unknowns were timed)")
    p.add_argument("--raw", action="store_true",
                   help="fit raw timings (default: drift-normalised by the chunk anchors)")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_latency_fit)

    p = lsub.add_parser("validate", help="error of a model on timed networks")
    p.add_argument("samples")
    p.add_argument("--latency", required=True, help="latency model JSON")
    p.add_argument("--retest", default=None,
                   help="the same networks timed again: report the noise floor")
    p.add_argument("--baseline", action="append", help="another model file to compare")
    p.add_argument("--plot", default=None, help="predicted-vs-measured scatter PNG")
    p.add_argument("--raw", action="store_true",
                   help="compare with raw timings (default: drift-normalised, as the model)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_latency_validate)

    p = lsub.add_parser("benchmark", help="time given configurations")
    _space_args(p)
    _target_args(p)
    _protocol_args(p)
    p.add_argument("config", nargs="*", help='widths, e.g. "8,16,48,..."')
    _preset_args(p)
    p.add_argument("--latency", default=None,
                   help="latency model JSON: also print its prediction")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_latency_benchmark)

    p = lsub.add_parser("predict", help="predicted latency of configurations (no timing)")
    p.add_argument("config", nargs="*", help='widths, e.g. "8,16,48,..."')
    p.add_argument("--latency", required=True, help="latency model JSON")
    p.add_argument("--file", default=None, help="one configuration per line (comma-separated)")
    _preset_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_latency_predict)

    p = lsub.add_parser("presets", help="the paper's configurations (--preset NAME) and "
                        "their widths")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_latency_presets)

    p = lsub.add_parser("refine", help="time the search's picks, add them, refit: until "
                        "every pick is within the noise floor of its prediction")
    p.add_argument("samples", nargs="+", help="the sample file(s) the model was fitted on")
    p.add_argument("--latency", required=True, help="the model fitted on them (space, K, "
                   "smooth and noise floor are taken from it)")
    p.add_argument("-o", "--out", required=True,
                   help="folder: refine.jsonl, latency.json, refine.json, refine.png "
                   "(resumes if it holds a refine.jsonl)")
    p.add_argument("--unaries", default=None, help="a supernet's unaries.json (`aows train`):"
                   " the picks the search will make; default: widest balanced network")
    p.add_argument("--budgets", type=POS_FLOAT, nargs="+", default=None,
                   help="ms/image; default --n-budgets over the model's range")
    p.add_argument("--n-budgets", type=POS_INT, default=None, help="default 10")
    p.add_argument("--rounds", type=POS_INT, default=None, help="timing rounds at most "
                   "(default 3)")
    p.add_argument("--tolerance", type=POS_FLOAT, default=None,
                   help="accepted |error| per pick in %% (default: the noise floor)")
    p.add_argument("--heldout", default=None, help="timed networks to score each round on")
    p.add_argument("--retest", default=None,
                   help="the --heldout networks re-timed: their test-retest noise floor")
    p.add_argument("--ridge", type=NONNEG_FLOAT, default=None,
                   help="the fit's ridge (default: the model's)")
    p.add_argument("--keep-priors", action="store_true",
                   help="keep the model's smoothness and ridge (default: chosen each round "
                   "on the picks timed so far)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_latency_refine)

    p = lsub.add_parser("lut", help="baseline: time every layer alone (lookup table)")
    _space_args(p)
    _target_args(p)
    _protocol_args(p)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_latency_lut)

    p = sub.add_parser("search", help="best widths under a latency budget")
    p.add_argument("--latency", required=True, help="latency model JSON")
    p.add_argument("--unaries", required=True, help="unaries JSON (per-layer scores)")
    p.add_argument("--budget", type=POS_FLOAT, default=None, help="latency budget (ms/image)")
    p.add_argument("--solver", default="exact",
                   choices=["exact", "lagrangian", "greedy", "uniform"])
    p.add_argument("--pareto", action="store_true", help="the whole score/latency front")
    p.add_argument("--budgets", type=POS_INT, default=100, help="budgets in the --pareto sweep")
    p.add_argument("--plot", default=None, help="PNG of the Pareto front (with --pareto)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("train", help="train the slimmable supernet (OWS or AOWS)")
    p.add_argument("--space", default=None, help=SPACE_HELP + " (default mobilenet_v1)")
    p.add_argument("--resolution", type=POS_INT, default=None, help="input resolution (px)")
    _model_args(p)
    _width_args(p)
    p.add_argument("--data", required=True, help="ImageFolder root (train/, val/), digits or fake")
    p.add_argument("--latency", default=None, help="latency model JSON (needed by aows)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR's checkpoint")
    p.add_argument("--no-val", action="store_true", help="skip the per-epoch validation")
    p.add_argument("--workers", type=POS_INT, default=4, help="data loader processes (folders)")
    add_options(p.add_argument_group("training"), TrainConfig, TRAIN_OPTIONS,
                required=["epochs"])
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="a chosen configuration as a plain network (+ ONNX): "
                       "from a trained supernet (--run) or straight from your model "
                       "(--model, prune now)")
    p.add_argument("--run", default=None, help="`aows train` run folder (the supernet)")
    p.add_argument("--resolution", type=POS_INT, default=None,
                   help="--model: input resolution (px; default 224)")
    p.add_argument("--classes", type=POS_INT, default=None,
                   help="--model: output classes (default: the --data's, else the model's)")
    _model_args(p)
    _width_args(p)
    p.add_argument("--importance", default=None, choices=list(IMPORTANCE_CRITERIA),
                   help="--model: order each width's channels by this criterion before "
                   f"slicing (default {DEFAULT_IMPORTANCE}; taylor needs --data; none: the "
                   "module's order)")
    p.add_argument("--force", action="store_true", help="replace a final network in --out")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", help='widths "8,16,..." or the JSON of `aows search --json`')
    _preset_args(which, many=False)
    p.add_argument("--data", default=None,
                   help="data for BatchNorm recalibration (folder, digits or fake)")
    add_options(p, TrainConfig, ["batch_size", "calib_batches"],
                helps={"batch_size": "images per calibration batch"})
    p.add_argument("--onnx", action="store_true", help="also write model.onnx, checked "
                   "against PyTorch in ONNX Runtime")
    p.add_argument("--out", required=True, help="final-network folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="top-1 / top-5 of a final network, or of your model "
                       "as it is, on the validation split")
    p.add_argument("final", nargs="?", default=None, help="final-network folder")
    p.add_argument("--data", required=True, help="ImageFolder root, digits or fake")
    p.add_argument("--resolution", type=POS_INT, default=None,
                   help="--model: input resolution (px; default 224)")
    p.add_argument("--classes", type=POS_INT, default=None,
                   help="--model: output classes (default: the data's)")
    _model_args(p)
    p.add_argument("--batch-size", type=POS_INT, default=64, help="images per batch")
    p.add_argument("--json", action="store_true",
                   help='{"top1", "top5", "images"}, accuracies as fractions')
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("finetune", help="train a final network; report top-1 / top-5")
    p.add_argument("final", help="final-network folder (`aows export`)")
    p.add_argument("--data", required=True, help="ImageFolder root, digits or fake")
    p.add_argument("--scratch", action="store_true", help="from random weights")
    p.add_argument("--out", default=None, help="default FINAL/finetuned")
    p.add_argument("--resume", action="store_true")
    add_options(p.add_argument_group("fine-tuning"), FinetuneConfig, FINETUNE_OPTIONS,
                required=["epochs"])
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("measure", help="time final networks; measured vs predicted")
    p.add_argument("final", nargs="*", help="final-network folders")
    p.add_argument("--latency", required=True, help="the latency model they were chosen with")
    _preset_args(p)
    add_options(p, MeasureSection, ["repeats"])
    p.add_argument("--no-original", action="store_true",
                   help="a model's networks: do not time the original model beside them "
                   "(default: timed, and each network's speed-up over it reported)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("run", help="the whole pipeline from a YAML configuration")
    p.add_argument("config", help="YAML file (see configs/)")
    p.add_argument("--out", default="aows_run", help="run folder (resumes if it exists)")
    p.add_argument("--until", default=None, help="stop after this stage (e.g. latency)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help="every setting of `aows run`: default or the file's "
                       "value, and what it does")
    p.add_argument("config", nargs="?", default=None, help="YAML file (default: none, the "
                   "defaults)")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("quickstart", help="the whole pipeline on an embedded default, "
                       "offline, on this CPU")
    p.add_argument("--out", default=None, help="run folder (default quickstart[_MODEL])")
    p.add_argument("--model", default=None,
                   help="the same on a model: a torchvision name (resnet18) or " + MODEL_HELP)
    p.set_defaults(func=cmd_quickstart)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from aows.log import console
    try:
        with console():
            args.func(args)
    except Interrupted as err:
        print(f"aows: {err}", file=sys.stderr)
        return err.exit_code
    except AowsError as err:
        print(f"aows: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aows: interrupted; completed work is saved, rerun the same command to resume",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
