"""`aows train`: the slimmable supernet, OWS or AOWS."""

from __future__ import annotations

from aows.cli.args import (
    NONNEG_INT,
    POS_INT,
    RESOLUTION_HELP,
    SPACE_HELP,
    TRAIN_OPTIONS,
    _classes,
    _model_args,
    _resolution,
    _Signals,
    _space_name,
    _space_params,
    _threads_args,
    _width_args,
)
from aows.defaults import DATA_WORKERS, DEFAULT_RESOLUTION
from aows.errors import AowsError
from aows.settings import add_options
from aows.train.config import TrainConfig


def cmd_train(args) -> None:
    from aows.train.runtime import check_run_folder, init_distributed, run_lock
    rank, world = init_distributed(args.device)
    with run_lock(args.out):  # checked and written by one process at a time
        if rank == 0:
            check_run_folder(args.out, args.resume, "checkpoint.pt",
                             ("unaries.json", "metrics.jsonl"), "training")
        _train(args, rank, world)
    if rank == 0:
        print(f"{args.out}/unaries.json: per-layer scores for `aows search`; "
              f"{args.out}/metrics.jsonl: the log")


def _train(args, rank: int, world: int) -> None:
    from aows.catalogue import get_space
    from aows.settings import from_args
    from aows.threads import torch_threads
    from aows.train.config import data_id
    from aows.train.data import get_data
    from aows.train.loop import TrainConfig, train_supernet
    try:
        if args.loss and args.objective == "labels":
            args.objective = "loss"  # --loss names the objective
        labels = args.objective != "distill"  # your loss reads the labels too
        res = _resolution(args, DEFAULT_RESOLUTION)
        data = get_data(args.data, res, args.batch_size, args.seed, rank, world, args.workers,
                        labels=labels)
        # without labels the model keeps its outputs (a dense head has no classes)
        space = get_space(_space_name(args), classes=_classes(args, data) if labels
                          else args.classes, **{**_space_params(args), "resolution": res})
        latency = _latency_model(args, space) if args.latency else None
        cfg = TrainConfig(**from_args(TrainConfig, args, TRAIN_OPTIONS),
                          data=data_id(args.data))
        with _Signals() as sig, torch_threads(args.threads):
            train_supernet(space, data.train, cfg, args.out, latency, resume=args.resume,
                           should_stop=sig.flag, val_batches=None if args.no_val else data.val,
                           steps_per_epoch=data.steps_per_epoch)
        sig.check("run the same command with --resume to continue")
    finally:
        if world > 1:
            import torch.distributed as dist
            dist.destroy_process_group()


def _latency_model(args, space):
    """--latency, of this training's space; another space's is an error that says how to
    make one of this space."""
    from aows.latency.model import LatencyModel
    from aows.space import SpaceError
    try:
        return LatencyModel.load(args.latency, space)
    except SpaceError:
        pass
    import json
    from pathlib import Path

    from aows.latency.defaults import FIT_NETWORKS
    from aows.space import SearchSpace
    theirs = SearchSpace.from_description(json.loads(Path(args.latency).read_text())["space"])
    mine = {"classes": space.classes,
            **{k: space.params.get(k) for k in ("resolution", "input_shape", "min_width",
                                                 "max_width", "levels", "divisor")}}
    bad = theirs.mismatches(mine)
    source = {"classes": f" (those of --data {args.data})"}
    if theirs.name != space.name:
        diff = f"but this training's space is '{space.name}'"
    elif bad:
        there = ", ".join(f"{k} {_shown(h)}" for k, _, h in bad)
        here = ", ".join(f"{k} {_shown(v)}{source.get(k, '')}" for k, v, _ in bad)
        diff = f"with {there}, but this training has {here}"
    else:
        diff = "with other layers than this training's"
    name = (f"--model {space.params['model']}" if "model" in space.params
            else f"--space {args.space or space.name}")
    shape = (f"--input-shape {_shown(space.params['input_shape'])}"
             if space.params.get("input_shape") else f"--resolution {space.params['resolution']}")
    widths = "".join(f" --{k.replace('_', '-')} {getattr(args, k)}" for k in
                     ("min_width", "max_width", "levels", "divisor") if getattr(args, k))
    raise AowsError(
        f"--latency {args.latency} was fitted for '{theirs.name}' {diff}: time and fit a "
        f"latency model of this training's space: `aows latency generate {name} --classes "
        f"{space.classes} {shape}{widths} --count {FIT_NETWORKS} -o samples.jsonl`, `aows "
        "latency fit samples.jsonl -o latency.json`, then train with --latency latency.json"
    ) from None


def _shown(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def add_parser(sub) -> None:
    """Add this group's commands to the ``aows`` subparsers."""
    p = sub.add_parser("train", help="train the slimmable supernet (OWS or AOWS)")
    p.add_argument("--space", default=None, help=SPACE_HELP + " (default mobilenet_v1)")
    p.add_argument("--resolution", type=POS_INT, default=None, help=RESOLUTION_HELP)
    p.add_argument("--classes", type=POS_INT, default=None,
                   help="classes of the network's output: the data's (default); another "
                   "number is an error")
    _model_args(p)
    _width_args(p)
    p.add_argument("--data", required=True, help="ImageFolder root (train/, val/), digits or fake")
    p.add_argument("--latency", default=None, help="latency model JSON (needed by aows)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR's checkpoint")
    p.add_argument("--no-val", action="store_true", help="skip the per-epoch validation")
    p.add_argument("--workers", type=NONNEG_INT, default=DATA_WORKERS,
                   help="image-folder loader processes, at most the CPU cores (0: in this "
                   "process)")
    add_options(p.add_argument_group("training"), TrainConfig, TRAIN_OPTIONS,
                required=["epochs"])
    _threads_args(p)
    p.set_defaults(func=cmd_train, trains=True)
