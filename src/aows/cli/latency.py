"""`aows latency ...`: time networks on the target, fit, validate, predict and refine
the black-box latency model."""

from __future__ import annotations

import sys
from pathlib import Path

from aows.cli.args import (
    NONNEG_FLOAT,
    POS_FLOAT,
    POS_INT,
    _configs,
    _labelled,
    _nonneg,
    _pct,
    _preset_args,
    _print_json,
    _protocol,
    _protocol_args,
    _remote,
    _remote_args,
    _resolution,
    _Signals,
    _space,
    _space_args,
    _space_name,
    _space_params,
    _target,
    _target_args,
    _trust_args,
)
from aows.errors import AowsError
from aows.latency.defaults import DEFAULT_K, DEFAULT_RIDGE, DEFAULT_SMOOTH, FIT_NETWORKS


def cmd_latency_generate(args) -> None:
    from aows.latency.measure import collect
    space, target = _space(args), _target(args)
    from aows.latency.defaults import DEFAULT_SAMPLER
    sampler = ("biased" if args.biased else "uniform" if args.uniform else "cover" if args.cover
               else DEFAULT_SAMPLER)
    timed = collect(space, target, _protocol(args), args.output, args.count, sampler,
                    seed=args.seed, progress=not args.quiet)
    from aows.latency.store import read_samples
    held = len(read_samples(args.output))  # what the file holds, not what was asked
    if held > args.count:
        print(f"{args.output}: {held} networks, already more than --count {args.count}: "
              "none timed (a sample file is only added to; give another -o for a smaller "
              "one)")
    else:
        print(f"{args.output}: {held} networks ({timed} timed now, {held - timed} already "
              "there)")


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
    space = space_from_description(first.header["space"], trust=args.trust_model_code,
                                   where=f"sample file {args.samples}")
    target, proto = target_of(first, _remote(args))
    count = min(args.count or len(first), len(first))
    # checked for load against the first timing's fastest anchor, as the first timing was
    collect(space, target, proto, args.output, count, "given", configs=first.configs,
            progress=not args.quiet,
            anchor_min_ms=min(first.anchors_of(0), default=float("inf")))
    second = read_samples(args.output, space)
    raw = test_retest(first.by_config(), second.by_config())
    print(f"noise floor (test-retest over {raw['n']} networks): raw NRMSE {_pct(raw['nrmse'])}"
          f", RMSE {raw['rmse_ms']:.4f} ms, max {_pct(raw['max_abs_pct_err'])}")
    ref = first.anchor_reference()
    if ref is not None and second.has_anchors:
        nz = test_retest(first.by_config(ref), second.by_config(ref))
        print(f"  drift-normalised (anchor): NRMSE {_pct(nz['nrmse'])}")


def _samples_space(args):
    """The space of the samples `latency fit` reads: their header's (data only: the fit
    builds no network), which every space option given must agree with; the options
    where the files have no header (reference layout)."""
    from aows.latency.store import read_samples
    from aows.space import SearchSpace
    path = args.samples[0]
    desc = (read_samples(path).header or {}).get("space")
    if desc is None:
        return _space(args)
    space = SearchSpace.from_description(desc)
    name = _space_name(args) if args.model or args.space else None
    if name and name.endswith((".yaml", ".yml")):  # a space file: built (data) and compared
        from aows.catalogue import get_space
        own = {k: v for k, v in space.params.items() if k in _FILE_PARAMS}
        given = {**_space_params(args), "classes": args.classes}
        get_space(name, **{**own, **{k: v for k, v in given.items() if v is not None}}
                  ).check_same(space, f"sample file {path}")
        name = None
    elif args.model:
        kind, _, fn = args.model.partition(":")
        if kind.endswith(".py") and Path(kind).is_file():  # recorded as an absolute path
            name = f"{Path(kind).resolve()}:{fn}"
    _resolution(args)  # --resolution and --input-shape agree
    given = {"name": name, "resolution": args.resolution, "input_shape": args.input_shape,
             "classes": args.classes, "min_width": args.min_width,
             "max_width": args.max_width, "levels": args.levels, "divisor": args.divisor}
    bad = space.mismatches(given)
    if bad:
        flag = {"name": "--model" if args.model else "--space"}
        raise AowsError(
            f"sample file {path} was timed in space '{space.name}' {space.params}, as its "
            "header records, but " + ", ".join(
                f"{flag.get(k, '--' + k.replace('_', '-'))} {_shown(v)} (header: "
                f"{_shown(h)})" for k, v, h in bad)
            + " given: leave the space options out (fit reads the space from the header) "
            "or fit samples timed with them")
    return space


_FILE_PARAMS = ("resolution", "classes", "in_channels", "min_width", "max_width", "levels",
                "divisor")


def _shown(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def cmd_latency_fit(args) -> None:
    from aows.latency.fit import fit, fit_flops
    from aows.latency.store import read_many
    from aows.latency.validate import fit_problems, range_ends
    space = _samples_space(args)
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
    what = {"widest": "the widest network" + (" (your model)" if "model" in space.params
                                              else ""), "narrowest": "the narrowest"}
    for end, r in range_ends(model, samples).items():
        print(f"{what[end]}: timed {r['timed_ms']:.3f} ms, predicted {r['predicted_ms']:.3f} "
              f"ms ({100 * r['relative_error']:+.1f} %)")
    offsets = samples.device_offsets()
    if offsets:  # a fleet: how far each device is from the others (the anchors say)
        fleet = (samples.header or {}).get("target", {}).get("fleet") or []
        names = {d: fleet[d].get("host", "?") if d < len(fleet) else "?" for d in offsets}
        print(f"fleet of {len(offsets)} devices, each one's anchor against all: " + ", ".join(
            f"device {d + 1} ({names[d]}) {100 * o:+.1f} %" for d, o in offsets.items())
            + f"; spread {100 * (max(offsets.values()) - min(offsets.values())):.1f} % "
            "(removed by the drift normalisation; a device far from the others is not like "
            "them)")
    problems = fit_problems(model, samples)
    unseen = f.get("unseen_unknowns", 0)
    if unseen:
        problems.insert(0, f"{unseen} of its {f['unknowns']} latency unknowns appear in "
                        f"none of the {len(samples)} timed networks (their tables are the "
                        "prior's guess)")
    if problems:
        n, total = len(samples), space.n_configurations()
        more = min(max(2 * n, FIT_NETWORKS), total)
        todo = (f"time more networks: rerun `aows latency generate` with its options and "
                f"--count {more:.0f} -o {args.samples[-1]} (it adds to the file, unseen "
                "unknowns first), then this fit again" if more > n else
                "every configuration is timed: try -K auto --smooth auto")
        print(f"warning: {'; '.join(problems)}. Do not trust it yet: {todo}"
              + (" (or --ridge 0.01 with far fewer networks than unknowns)"
                 if unseen and more > n else ""), file=sys.stderr)


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
    ends = [(end, getattr(model.space, end)()) for end in ("narrowest", "widest")
            if getattr(args, end)]
    if not texts and not args.preset and not ends:
        raise AowsError("give configurations (\"8,16,...\"), --file with one per line, "
                        "--preset NAME, --widest or --narrowest")
    labels, configs = zip(*_configs(model.space, texts, args.preset), *ends)
    pred = model.predict_many(configs)
    rows = [{"config": list(c), "predicted_latency_ms": float(p)} for c, p in zip(configs, pred)]
    for r, label in zip(rows, labels):
        if label:  # a preset's name, or "widest"/"narrowest" (key "end")
            r["end" if label in dict(ends) else "preset"] = label
    if args.json:
        _print_json(rows)
        return
    for r in rows:
        print(f"{_labelled(r.get('preset') or r.get('end'), r['config'])}: "
              f"{r['predicted_latency_ms']:.4f} ms/image")


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
    model = LatencyModel.load(args.latency, trust_model_code=args.trust_model_code)
    space = model.space
    samples = read_many(args.samples, space)
    unaries = None
    if args.unaries:
        from aows.solve import load_unaries
        unaries = {f: load_unaries(f, space) for f in args.unaries}
        if len(unaries) == 1:
            unaries = unaries[args.unaries[0]]
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
                     should_stop=sig.flag, remote=_remote(args))
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
    from aows.lock import hold_lock
    with hold_lock(args.output, "latency model"):  # one process timing into it
        model = build_lookup_table(_space(args), _target(args), _protocol(args),
                                   progress=not args.quiet)
        model.save(args.output)
    print(f"{args.output}: per-layer lookup table of {len(model.space.unknowns()[0])} layers")


def add_parser(sub) -> None:
    """Add this group's commands to the ``aows`` subparsers."""
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
    _trust_args(p)
    _remote_args(p.add_argument_group("a file timed on another machine"))
    p.set_defaults(func=cmd_latency_retest)

    p = lsub.add_parser("fit", help="fit the per-layer latency tables",
                        description="Fit the per-layer latency tables to timed networks. "
                        "The space is the one the samples' header records; space options "
                        "(--space/--model/--resolution/--classes/...) are needed only for "
                        "files without a header, and must otherwise agree with it.")
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
    p.add_argument("--widest", action="store_true",
                   help="also the widest configuration (every width its largest choice)")
    p.add_argument("--narrowest", action="store_true",
                   help="also the narrowest configuration (every width its smallest choice)")
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
    p.add_argument("--unaries", nargs="+", default=None,
                   help="supernets' unaries.json (`aows train`), one or more: the picks the "
                   "search will make under each; default: widest balanced network")
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
    _trust_args(p)
    _remote_args(p.add_argument_group("samples timed on another machine"))
    p.set_defaults(func=cmd_latency_refine)

    p = lsub.add_parser("lut", help="baseline: time every layer alone (lookup table)")
    _space_args(p)
    _target_args(p)
    _protocol_args(p)
    p.add_argument("-o", "--output", required=True)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_latency_lut)
