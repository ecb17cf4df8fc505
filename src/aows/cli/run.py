"""`aows run`, `aows config`, `aows quickstart`: the whole method from a configuration."""

from __future__ import annotations

from aows.cli.args import (
    MODEL_HELP,
    _Signals,
)
from aows.errors import AowsError


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
    if args.dense and args.model:
        raise AowsError("--dense runs the quickstart on aows's own U-Net segmenter: leave "
                        "out --model (or --dense, to run it on your model)")
    if args.dense:
        from pathlib import Path

        from aows.config import dense_quickstart_config
        from aows.demo import trained_unet
        out = out or "quickstart_dense"
        print("aows quickstart --dense: your model is a U-Net (skips concatenated) trained "
              "to segment the digits (its outputs are maps, not classes); from there no "
              "label is read: latency model of this CPU, OWS and AOWS supernets by "
              "distillation from it, search, fine-tuning by distillation, timing; 5 to 10 "
              "minutes here -> "
              f"{out}/")
        Path(out).mkdir(parents=True, exist_ok=True)
        cfg = dense_quickstart_config(trained_unet(Path(out) / "your_model.pt"))
        return _run(cfg, out)
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


def add_parser(sub) -> None:
    """Add this group's commands to the ``aows`` subparsers."""
    p = sub.add_parser("run", help="the whole pipeline from a YAML configuration")
    p.add_argument("config", help="YAML file (see configs/)")
    p.add_argument("--out", default="aows_run", help="run folder (resumes if it exists)")
    p.add_argument("--until", default=None, help="stop after this stage (e.g. latency)")
    p.set_defaults(func=cmd_run, trains=True)

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
    p.add_argument("--dense", action="store_true",
                   help="the same without labels on a segmenter (a U-Net whose output is a "
                   "map): the supernets learn its outputs, the report gives the "
                   "distillation error")
    p.set_defaults(func=cmd_quickstart, trains=True)
