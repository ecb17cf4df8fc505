"""What the command groups share: argument types, the space/model/width/target/protocol
options, settings lists, stop signals and printing."""

from __future__ import annotations

import argparse
import json

from aows.defaults import DEFAULT_RESOLUTION
from aows.errors import AowsError, Interrupted


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
NONNEG_INT = _nonneg(int)


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


RESOLUTION_HELP = ("input resolution (px; default: the last size of --input-shape, else "
                   f"{DEFAULT_RESOLUTION})")


def _space_args(p: argparse.ArgumentParser, required: bool = True, positional: bool = False
                ) -> None:
    if positional:
        p.add_argument("space", nargs="?", default=None, help=SPACE_HELP)
    else:
        p.add_argument("--space", default=None, help=SPACE_HELP)
    p.set_defaults(space_required=required)
    p.add_argument("--resolution", type=POS_INT, default=None, help=RESOLUTION_HELP)
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
    params = dict(resolution=_resolution(args), min_width=args.min_width,
                  max_width=args.max_width, levels=args.levels, divisor=args.divisor)
    if getattr(args, "model", None):
        params.update(input_shape=args.input_shape, weights=args.weights)
    return params


def _resolution(args, default: int | None = None) -> int | None:
    """The one input resolution of a command: --resolution, or the last size of
    --input-shape (C,H,W), else ``default``; both given and different is an error."""
    res = getattr(args, "resolution", None)
    shape = getattr(args, "input_shape", None)
    if shape is not None:
        if res is not None and res != shape[-1]:
            raise AowsError(f"--resolution {res} and --input-shape "
                            f"{','.join(map(str, shape))} disagree: the resolution is the "
                            "input's last size; give one of them")
        return shape[-1]
    return res if res is not None else default


def _classes(args, data) -> int:
    """The classes of a command that has data: the data's; --classes, where given, must
    be the same number."""
    given = getattr(args, "classes", None)
    if given is not None and given != data.classes:
        raise AowsError(f"--classes {given} but --data {args.data} has {data.classes} "
                        f"classes: leave --classes out (the data's are used) or give data "
                        f"with {given} classes")
    return data.classes


def _width_args(p: argparse.ArgumentParser) -> None:
    from aows.defaults import MODEL_WIDTH_RULE, SPACE_WIDTH_RULE
    g = p.add_argument_group(
        f"width choices (Table D.1 rule; defaults {_rule(SPACE_WIDTH_RULE)} for a space, "
        f"{_rule(MODEL_WIDTH_RULE)} for --model: its own widths are the widest)")
    g.add_argument("--min-width", type=POS_FLOAT, default=None, help="smallest multiplier")
    g.add_argument("--max-width", type=POS_FLOAT, default=None, help="largest multiplier")
    g.add_argument("--levels", type=POS_INT, default=None, help="multipliers from min to max")
    g.add_argument("--divisor", type=POS_INT, default=None, help="widths rounded to multiples")


def _rule(rule: dict) -> str:
    return ", ".join(str(rule[k]) for k in ("min_width", "max_width", "levels", "divisor"))


# the options of the library's settings objects that the commands expose; their types,
# defaults, ranges and help come from the dataclass fields (aows.settings)
PROTOCOL_OPTIONS = ["warmup", "rounds", "runs", "reduce", "chunk", "anchor"]
TRAIN_OPTIONS = ["epochs", "method", "budget", "sampled", "sampling", "batch_size",
                 "lr", "schedule", "warmup_epochs", "seed", "device", "amp", "channels_last",
                 "scratch", "importance", "objective", "loss", "progress"]
FINETUNE_OPTIONS = ["epochs", "batch_size", "lr", "warmup_epochs", "label_smoothing", "mixup",
                    "weight_decay", "seed", "device", "progress"]


TARGET_OPTIONS = ["backend", "batch_size", "threads", "dtype", "channels_last"]


def _target_args(p: argparse.ArgumentParser) -> None:
    from aows.latency.target import Target
    from aows.settings import add_options
    g = p.add_argument_group("target (what is timed)")
    add_options(g, Target, TARGET_OPTIONS)
    _remote_args(g)


def _remote_args(g) -> None:
    """--remote CMD (repeatable: a fleet) and how to reach the target."""
    from aows.latency.defaults import REMOTE_RETRIES, REMOTE_TIMEOUT
    g.add_argument("--remote", action="append", default=None, metavar="CMD",
                   help="time on another machine: a command prefix that runs a program "
                   "there, passing its input through ('ssh user@board', 'docker exec -i box', "
                   "'kubectl exec -i pod --'); "
                   "the target needs Python 3, numpy and the runtime that times there "
                   "(onnxruntime*, openvino: --backend, or the samples' or latency model's "
                   "target); repeat for a fleet of identical devices")
    g.add_argument("--remote-python", default=None, metavar="PATH",
                   help="--remote: the target's Python (default python3)")
    g.add_argument("--remote-timeout", type=POS_FLOAT, default=None, metavar="S",
                   help="--remote: seconds an answer may take before the target counts as "
                   f"hung (default {REMOTE_TIMEOUT:g})")
    g.add_argument("--remote-retries", type=_nonneg(int), default=None, metavar="N",
                   help="--remote: times a chunk is retried after a dropped or hung "
                   f"connection (default {REMOTE_RETRIES})")


def _remote(args):
    """The ``Remote`` of --remote, or None (time on this machine)."""
    if not getattr(args, "remote", None):
        return None
    from aows.latency.remote import Remote
    return Remote.parse(args.remote, python=args.remote_python,
                        timeout=args.remote_timeout, retries=args.remote_retries)


def _threads_args(p) -> None:
    """--threads of a command that runs torch on the CPU: the target's setting, applied
    with ``aows.threads.torch_threads``."""
    from aows.latency.target import Target
    from aows.settings import add_options
    add_options(p, Target, ["threads"], helps={
        "threads": "CPU threads of torch for this command (default: torch's own)"})


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
    out = [(None, space.validate(parse_config(t))) for t in texts]
    return out + [(name, preset_config(name, space)) for name in presets or []]


def _labelled(label: str | None, config) -> str:
    widths = ",".join(map(str, config))
    return f"{label} [{widths}]" if label else widths


def _space(args):
    from aows.catalogue import get_space
    return get_space(_space_name(args), classes=args.classes, **_space_params(args))



def _target(args):
    from aows.latency.backends import Target
    from aows.settings import from_args
    return Target(**from_args(Target, args, TARGET_OPTIONS), remote=_remote(args))


def _protocol(args):
    from aows.latency.protocol import Protocol
    from aows.settings import from_args
    return Protocol(**from_args(Protocol, args, PROTOCOL_OPTIONS))


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _trust_args(p) -> None:
    """--trust-model-code: consent to run the model code that a folder or file names."""
    p.add_argument("--trust-model-code", action="store_true",
                   help="a network of a model from a file is rebuilt by running that code "
                   "(a final-network folder's own copy, model.py): run it (aows runs no code "
                   "that a folder or file names unless asked)")


OPENMP_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def openmp_for_training(load: float | None = None, env=None) -> dict:
    """The OpenMP wait policy of a command that trains, set in the environment before
    torch loads (its OpenMP runtime reads it then): on a shared machine, torch's threads
    otherwise spin waiting for a core that another process holds, and a step slows far
    more than the load. Measured with ``benchmarks/train_under_load.py`` (MobileNet-v1,
    32 px, batch 64, 2 cores, one other busy process; docs/benchmarks.md): torch's
    defaults 108 ms alone and 3-14x that beside; ``GOMP_SPINCOUNT=10000`` 1.05x alone
    and 2.4x beside; ``OMP_WAIT_POLICY=PASSIVE`` 1.4x alone and 1.2x its own time
    beside (the load's share); so: PASSIVE when the machine is busy when the command
    starts (1-minute load average of at least half a core), else the short spin.

    Nothing is changed when torch is already loaded (a library caller's process: too
    late, and not ours to change) or when the user set any of ``OPENMP_SETTINGS``.
    Returns what was set."""
    import os
    import sys
    env = os.environ if env is None else env
    if "torch" in sys.modules or any(k in env for k in OPENMP_SETTINGS):
        return {}
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not available on this platform
            load = 0.0
    chosen = {"OMP_WAIT_POLICY": "PASSIVE"} if load >= 0.5 else {"GOMP_SPINCOUNT": "10000"}
    env.update(chosen)
    return chosen


def parse_config(text: str) -> tuple[int, ...]:
    """Parse "8,16,48" or "8 16 48" into widths."""
    from aows.space import SpaceError
    parts = text.replace(",", " ").split()
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise SpaceError(f"could not read configuration '{text}': give comma-separated "
                         "integer widths, e.g. 8,16,48,...") from None
