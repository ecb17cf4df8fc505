"""`aows train`: the slimmable supernet, OWS or AOWS."""

from __future__ import annotations

from aows.cli.args import (
    POS_INT,
    SPACE_HELP,
    TRAIN_OPTIONS,
    _model_args,
    _Signals,
    _space_name,
    _space_params,
    _width_args,
)
from aows.settings import add_options
from aows.train.config import TrainConfig


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


def add_parser(sub) -> None:
    """Add this group's commands to the ``aows`` subparsers."""
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
