"""`aows export`, `aows evaluate`, `aows finetune`, `aows measure`: the final network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aows.cli.args import (
    FINETUNE_OPTIONS,
    POS_INT,
    _classes,
    _model_args,
    _preset_args,
    _print_json,
    _remote,
    _remote_args,
    _resolution,
    _Signals,
    _space_name,
    _space_params,
    _threads_args,
    _trust_args,
    _width_args,
    parse_config,
)
from aows.config import MeasureSection
from aows.defaults import DEFAULT_IMPORTANCE, DEFAULT_RESOLUTION, IMPORTANCE_CRITERIA
from aows.errors import AowsError
from aows.settings import add_options
from aows.train.config import FinetuneConfig, TrainConfig


def _config_arg(text: str) -> list[int]:
    """Widths "8,16,..." or a JSON file with a "config" list (aows search --json)."""
    p = Path(text)
    if p.suffix == ".json" or p.exists():
        try:
            obj = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise AowsError(f"--config {text}: cannot read it as JSON ({err})") from None
        config = obj.get("config") if isinstance(obj, dict) else None
        if not isinstance(config, list) or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in config):
            raise AowsError(f'--config {text}: expected a JSON object with a "config" list '
                            "of widths (integers; the output of `aows search --json`), got "
                            f"{json.dumps(config if isinstance(obj, dict) else obj)[:80]}")
        return config
    return parse_config(text)


def _export_config(args, space) -> tuple[list[int], dict]:
    """The configuration --config or --preset names, and what to record of it."""
    if args.preset:
        from aows.presets import preset_config
        return preset_config(args.preset, space), {"preset": args.preset}
    return space.validate(_config_arg(args.config)), {}


def cmd_export(args) -> None:
    from aows.final import export_config, export_from_model, export_onnx, save_final
    from aows.train.config import data_id
    from aows.train.data import get_data
    if bool(args.run) == bool(args.model):
        raise AowsError("give --run RUN_DIR (a trained supernet) or --model MODEL (prune "
                        "your model now), one of them")
    _check_out(args)  # before any work: an existing final network is kept unless --force
    if args.importance is not None and not args.model:
        raise AowsError("--importance orders a model's channels before slicing it: it goes "
                        "with --model (a supernet's run folder keeps the order it was trained "
                        "with)")
    if args.model:
        importance = args.importance or DEFAULT_IMPORTANCE
        if importance == "taylor" and not args.data:
            raise AowsError("--importance taylor reads a few batches of data: give --data "
                            "(or --importance bn, l1 or none)")
        # the data only recalibrates BatchNorm (and ranks channels for taylor): labels are
        # needed by taylor alone, so any folder of images will do
        data = (get_data(args.data, _resolution(args, DEFAULT_RESOLUTION), args.batch_size,
                         labels=importance == "taylor") if args.data else None)
        classes = _classes(args, data) if data is not None and data.labelled \
            else args.classes
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
        save_final(args.out, plain, space, config, **meta)
        from aows.io import atomic_write_text
        atomic_write_text(Path(args.out, "channel_order.json"), json.dumps(order))
    else:
        from aows.final import load_supernet_state
        from aows.solve import load_unaries_space
        space = load_unaries_space(Path(args.run) / "unaries.json", args.trust_model_code)
        config, meta = _export_config(args, space)
        net, trained = load_supernet_state(args.run, space)
        batches = None
        if args.data and trained.get("data") and trained["data"] != data_id(args.data):
            print(f"warning: --data {args.data} is not the data the supernet was trained on "
                  f"({trained['data']}): BatchNorm statistics are re-estimated on it; give "
                  f"--data {trained['data']} for those of the training data", file=sys.stderr)
        if args.data:
            batches = get_data(args.data, space.layers[0].in_res, args.batch_size,
                               labels=False).train(0)  # BatchNorm statistics only
        else:
            print("no --data: BatchNorm statistics are the supernet's shared ones, not "
                  "recalibrated for this configuration (give --data to recalibrate)",
                  file=sys.stderr)
        plain = export_config(net, config, batches, args.calib_batches)
        save_final(args.out, plain, space, config, supernet=str(args.run),
                   recalibrated=batches is not None, **meta)
    print(f"{args.out}/config.json + weights.pt: {','.join(map(str, config))}")
    if args.onnx:
        diff = export_onnx(plain, space, Path(args.out) / "model.onnx")
        print(f"{args.out}/model.onnx" + ("" if diff is None else
                                          f": ONNX Runtime matches PyTorch (max difference "
                                          f"{diff:.1e} of the output's scale)"))


def _check_out(args) -> None:
    """An existing final-network folder is replaced only with --force; an unwritable one
    is refused before any work."""
    from aows.io import check_writable
    if (Path(args.out) / "config.json").exists() and not args.force:
        raise AowsError(f"--out {args.out} already holds a final network; give another "
                        "folder, or --force to replace it")
    check_writable(args.out, "--out")


def _space_from(args, classes):
    from aows.catalogue import get_space
    return get_space(_space_name(args), classes=classes, **_space_params(args))


def cmd_evaluate(args) -> None:
    from aows.final import load_final
    from aows.train.data import get_data
    from aows.train.finetune import evaluate
    if not args.final and not args.model:
        raise AowsError("give a final-network folder (`aows export`), --model MODEL (your "
                        "model as it is), or both (the folder compared with your model)")
    if args.final and args.model:
        return _compare(args, load_final)
    if args.final:
        net, space, _ = load_final(args.final, args.trust_model_code)
        res = space.layers[0].in_res
        data = get_data(args.data, res, args.batch_size)
        what = args.final
    else:
        data = get_data(args.data, _resolution(args, DEFAULT_RESOLUTION), args.batch_size)
        from aows.models import load_model
        net = load_model(_space_name(args), _classes(args, data), args.weights)
        what = args.model
    ev = evaluate(net, data.val(0))
    if args.json:
        _print_json(ev)
        return
    print(f"{what}: top-1 {100 * ev['top1']:.2f} %, top-5 {100 * ev['top5']:.2f} % on "
          f"{ev['images']} validation images")


def _compare(args, load_final) -> None:
    """`aows evaluate FINAL --model M --weights W`: the final network against the user's
    original model on the validation images (no labels needed)."""
    from aows.models import load_model
    from aows.train.data import get_data
    from aows.train.objective import compare_outputs
    net, space, _ = load_final(args.final, args.trust_model_code)
    data = get_data(args.data, space.layers[0].in_res, args.batch_size, labels=False)
    original = load_model(_space_name(args), args.classes, args.weights)
    ev = compare_outputs(net, original, data.val(0))
    if args.json:
        _print_json(ev)
        return
    parts = [f"distillation error {ev['distill']:.4f} against {args.model} (0: its outputs)"]
    if ev["agreement"] is not None:
        parts.append(f"top-1 agreement {100 * ev['agreement']:.2f} %")
    if ev["top1"] is not None:
        parts.append(f"top-1 {100 * ev['top1']:.2f} %")
    print(f"{args.final}: {', '.join(parts)} on {ev['images']} validation images")


def cmd_finetune(args) -> None:
    from aows.final import load_final, save_final
    from aows.nn import build_network
    from aows.settings import from_args
    from aows.train.data import get_data
    from aows.train.finetune import FinetuneConfig, evaluate, finetune
    from aows.train.runtime import init_distributed
    rank, world = init_distributed(args.device)
    net, space, config = load_final(args.final, args.trust_model_code)
    if args.scratch:
        import torch
        torch.manual_seed(args.seed)
        net = build_network(space, config)
    teacher = None
    if args.model:  # no labels: learn the original model's outputs
        from aows.models import load_model
        teacher = load_model(_space_name(args), space.params.get("classes"), args.weights)
    data = get_data(args.data, space.layers[0].in_res, args.batch_size, args.seed, rank, world,
                    labels=teacher is None)
    out = Path(args.out or Path(args.final) / "finetuned")
    cfg = FinetuneConfig(**from_args(FinetuneConfig, args, FINETUNE_OPTIONS))
    from aows.threads import torch_threads
    from aows.train.runtime import resolve_device, run_lock
    with run_lock(out), torch_threads(args.threads):
        with _Signals() as sig:  # the training saves and stops; what follows is short
            res = finetune(net, data.train, data.val, cfg, out, data.steps_per_epoch,
                           resume=args.resume, should_stop=sig.flag, teacher=teacher)
        if res["stopped"]:
            sig.check("run the same command with --resume to continue")
        if teacher is not None:
            from aows.train.objective import compare_outputs
            ev = compare_outputs(net, teacher, data.val(0), resolve_device(args.device))
            if rank == 0:
                save_final(out, net, space, config, finetuned_from=str(args.final),
                           distill=ev["distill"])
                print(f"distillation error {ev['distill']:.4f} against {args.model} on "
                      f"{ev['images']} validation images; {out}/config.json + weights.pt")
            return
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
        nets[name], space, configs[name] = load_final(folder, args.trust_model_code,
                                                      space)
    model = LatencyModel.load(args.latency, space, trust_model_code=args.trust_model_code)
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
    res = measure_networks(nets, model, configs, args.repeats, reference=reference,
                           remote=_remote(args))
    if args.json:
        _print_json(res)
        return
    print(describe_measurement(res))


def _model_source_args(p, classes_default: str) -> None:
    """--resolution, --classes and the model options of a command that reads a model."""
    p.add_argument("--resolution", type=POS_INT, default=None,
                   help="--model: input resolution (px; default 224)")
    p.add_argument("--classes", type=POS_INT, default=None,
                   help=f"--model: output classes (default: {classes_default})")
    _model_args(p)


def add_parser(sub) -> None:
    """Add this group's commands to the ``aows`` subparsers."""
    p = sub.add_parser("export", help="a chosen configuration as a plain network (+ ONNX): "
                       "from a trained supernet (--run) or straight from your model "
                       "(--model, prune now)")
    p.add_argument("--run", default=None, help="`aows train` run folder (the supernet)")
    _model_source_args(p, "the --data's, else the model's")
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
    _trust_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("evaluate", help="top-1 / top-5 of a final network, or of your model "
                       "as it is, on the validation split; given both, the final network's "
                       "distillation error against your model (no labels needed)")
    p.add_argument("final", nargs="?", default=None, help="final-network folder")
    p.add_argument("--data", required=True, help="ImageFolder root, digits or fake")
    _model_source_args(p, "the data's")
    p.add_argument("--batch-size", type=POS_INT, default=64, help="images per batch")
    p.add_argument("--json", action="store_true",
                   help='{"top1", "top5", "images"}, accuracies as fractions (compared '
                   'with --model: {"distill", "agreement", "top1", "images"})')
    _trust_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("finetune", help="train a final network; report top-1 / top-5 (with "
                       "--model: learn your model's outputs, no labels needed)")
    p.add_argument("final", help="final-network folder (`aows export`)")
    p.add_argument("--data", required=True, help="ImageFolder root, digits or fake (with "
                   "--model: any folder of images)")
    _model_args(p)
    p.add_argument("--scratch", action="store_true", help="from random weights")
    p.add_argument("--out", default=None, help="default FINAL/finetuned")
    p.add_argument("--resume", action="store_true")
    add_options(p.add_argument_group("fine-tuning"), FinetuneConfig, FINETUNE_OPTIONS,
                required=["epochs"])
    _threads_args(p)
    _trust_args(p)
    p.set_defaults(func=cmd_finetune, trains=True)

    p = sub.add_parser("measure", help="time final networks; measured vs predicted")
    p.add_argument("final", nargs="*", help="final-network folders")
    p.add_argument("--latency", required=True, help="the latency model they were chosen with")
    _preset_args(p)
    add_options(p, MeasureSection, ["repeats"])
    p.add_argument("--no-original", action="store_true",
                   help="a model's networks: do not time the original model beside them "
                   "(default: timed, and each network's speed-up over it reported)")
    _remote_args(p.add_argument_group("a latency model of another machine"))
    p.add_argument("--json", action="store_true")
    _trust_args(p)
    p.set_defaults(func=cmd_measure)
