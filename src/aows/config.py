"""The settings of ``aows run`` (one YAML file, one section per stage), typed.

Each section is a dataclass; the ones that configure a library object expose that
object's own fields (``train`` is part of ``TrainConfig``, ``finetune`` of
``FinetuneConfig``, the target part of ``latency`` is ``Target``, ``latency.protocol``
and ``measure.protocol`` are ``Protocol``), so every default, type, range and help text
is written once, next to the code that uses it, and the commands' options come from
the same fields (``aows.settings``). ``aows config [FILE]`` prints them all.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import yaml

from aows.defaults import DATA_WORKERS, DEFAULT_RESOLUTION, DEMO_MODEL_FILE
from aows.errors import AowsError
from aows.latency.defaults import (
    DEFAULT_BUDGETS,
    DEFAULT_K,
    DEFAULT_ROUNDS,
    DEFAULT_SMOOTH,
    REMOTE_RETRIES,
    REMOTE_TIMEOUT,
)
from aows.latency.protocol import Protocol
from aows.latency.remote import Remote
from aows.latency.target import Target
from aows.settings import NONNEGATIVE, POSITIVE, as_dict, load, pick, project, setting
from aows.train.config import FinetuneConfig, TrainConfig, data_id

DataSection = project(
    "DataSection", TrainConfig, ["batch_size"],
    ("name", str, setting("digits", "ImageFolder root (train/, val/), digits or fake")),
    ("workers", int, setting(DATA_WORKERS, "image-folder loader processes, at most the CPU "
                             "cores (0: in the training process)", check=NONNEGATIVE)))

LatencySection = project(
    "LatencySection", Target, ["backend", "batch_size", "threads", "dtype", "channels_last"],
    ("model", str | None, setting(None, "an existing latency.json to reuse instead of "
                                    "timing")),
    ("networks", int, setting(2000, "networks timed to fit the model (biased until every "
                              "layer width pair is covered, then uniform)", check=POSITIVE)),
    ("heldout", int, setting(100, "uniformly drawn networks timed twice: validation and "
                             "noise floor", check=POSITIVE)),
    ("blocks", int, setting(3, "the sets are timed in this many alternating blocks",
                            check=POSITIVE)),
    ("protocol", Protocol, dataclasses.field(default_factory=Protocol)),
    ("K", float, setting(DEFAULT_K, "monotonicity prior weight, or auto (CV)",
                                 check=NONNEGATIVE, auto=True)),
    ("smooth", float, setting(DEFAULT_SMOOTH, "smoothness prior weight, or auto "
                                      "(CV)", check=NONNEGATIVE, auto=True)),
    ("refine", int, setting(DEFAULT_ROUNDS, "after training, rounds of timing the search's picks, "
                            "adding them and refitting (0: off)", check=NONNEGATIVE)),
    ("refine_budgets", int, setting(DEFAULT_BUDGETS, "budgets whose picks refinement times",
                                    check=POSITIVE)),
    ("remote", list[str], setting([], "time on other machines: one command prefix per "
                                  "device, e.g. ['ssh user@board'] (as `aows latency "
                                  "generate --remote`); backend onnxruntime* or openvino")),
    ("remote_python", str, setting("python3", "the remote targets' Python")),
    ("remote_timeout", float, setting(REMOTE_TIMEOUT, "seconds an answer of a remote "
                                      "target may take before it counts as hung",
                                      check=POSITIVE)),
    ("remote_retries", int, setting(REMOTE_RETRIES, "times a chunk is retried after a "
                                    "dropped or hung connection", check=NONNEGATIVE)),
    # one thread unless asked: a pipeline's latency model should not depend on what else
    # the machine runs, and torch's default (all cores) is what varies most with load
    defaults={"threads": 1},
    helps={"threads": "CPU threads of the timing (torch-cpu, onnxruntime, openvino); "
                      "null: the runtime's own; recorded with the samples"})

TrainSection = project(
    "TrainSection", TrainConfig, ["epochs", "sampled", "lr", "schedule", "warmup_epochs",
                                  "sampling", "unary_mode", "calib_batches", "importance",
                                  "objective"],
    ("methods", list[str], setting(["ows", "aows"], "the supernets to train: ows and/or "
                                   "aows")))

FinetuneSection = project(
    "FinetuneSection", FinetuneConfig, ["epochs", "lr", "warmup_epochs", "label_smoothing",
                                        "mixup", "weight_decay"],
    ("init", str, setting("inherited", "weights of the final networks: inherited from the "
                          "supernet, or scratch", choices=["inherited", "scratch"])))


@dataclasses.dataclass
class SpaceSection:
    """The search space (or, with ``model``, the width rule applied to your model); a
    setting left null keeps the space's own default."""

    name: str = setting("mobilenet_v1", "mobilenet_v1, resnet18, resnet50, mobilenet_v2, "
                        "or a space file FILE.yaml")
    resolution: int = setting(DEFAULT_RESOLUTION, "input resolution (px)", check=POSITIVE)
    min_width: float | None = setting(None, "smallest width multiplier (Table D.1: 0.2)",
                                      check=POSITIVE)
    max_width: float | None = setting(None, "largest width multiplier (Table D.1: 1.5; a "
                                      "model: at most 1.0)", check=POSITIVE)
    levels: int | None = setting(None, "width multipliers from min to max (Table D.1: 14)",
                                 check=POSITIVE)
    divisor: int | None = setting(None, "widths rounded to multiples of it (8)",
                                  check=POSITIVE)
    input_shape: list[int] | None = setting(None, "a model's input C, H, W (default 3, R, R "
                                            "with R the resolution)")
    weights: str | None = setting(None, "a model's tensors-only state_dict file")
    in_channels: int | None = setting(None, "input channels of a built-in space (3)",
                                      check=POSITIVE)

    def __post_init__(self):
        shape = self.input_shape
        if shape is not None and (len(shape) != 3 or any(
                isinstance(v, bool) or v < 1 for v in shape)):
            raise AowsError(f"input_shape must be [C, H, W], positive integers, got "
                            f"{shape}")

    def params(self) -> dict:
        """The parameters given (not null), for ``get_space``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name != "name" and getattr(self, f.name) is not None}


@dataclasses.dataclass
class SearchSection:
    budget_ms: float | None = setting(None, "latency budget in ms/image", check=POSITIVE)
    budget_multiplier: float | None = setting(
        None, "else: the predicted latency of the uniform network at this width multiplier "
        "(1.0 = MobileNet-v1 1.0x, the paper's comparison)", check=POSITIVE)
    budget_fraction: float = setting(0.5, "else: narrowest + fraction x (widest - "
                                     "narrowest), predicted", check=NONNEGATIVE)
    baselines: list[str] = setting(["uniform", "greedy"], "baselines searched next to OWS "
                                   "and AOWS: uniform and/or greedy")


@dataclasses.dataclass
class MeasureSection:
    repeats: int = setting(3, "timing rounds of the final networks", check=POSITIVE)
    protocol: Protocol | None = setting(None, "timing protocol; default: the latency "
                                        "model's")


@dataclasses.dataclass
class RunConfig:
    """Everything ``aows run`` does, section by section (see configs/ for examples)."""

    seed: int = setting(0, "seed of everything random", check=NONNEGATIVE)
    device: str = setting("auto", "training device: auto, cpu, cuda[:k]")
    space: SpaceSection = dataclasses.field(default_factory=SpaceSection)
    model: str | None = setting(None, "your model instead of space.name: torchvision:NAME, "
                                "timm:NAME, file.py:FUNCTION; space's other settings "
                                "(resolution, widths, input_shape, weights) apply to it")
    data: DataSection = dataclasses.field(default_factory=DataSection)
    latency: LatencySection = dataclasses.field(default_factory=LatencySection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    search: SearchSection = dataclasses.field(default_factory=SearchSection)
    finetune: FinetuneSection = dataclasses.field(default_factory=FinetuneSection)
    measure: MeasureSection = dataclasses.field(default_factory=MeasureSection)
    onnx: bool = setting(True, "also export the final networks to ONNX, checked in ONNX "
                         "Runtime")

    def __post_init__(self):
        trained = self.train.methods
        if not trained or any(m not in ("ows", "aows") for m in trained):
            raise AowsError(f"train.methods must list ows and/or aows, got {trained}")
        if any(b not in ("uniform", "greedy") for b in self.search.baselines):
            raise AowsError("search.baselines may hold 'uniform' and 'greedy' only, got "
                            f"{self.search.baselines}")
        if self.train.objective == "loss":
            raise AowsError("train.objective: `aows run` takes labels or distill; train "
                            "with your own loss by `aows train --loss FILE.py:FUNCTION`")
        if self.train.objective == "distill" and not self.model:
            raise AowsError("train.objective distill learns from your trained model: set "
                            "model (and space.weights), or use objective labels")

    def target(self) -> Target:
        """The latency section's target (another machine with ``latency.remote``)."""
        fields = {k: v for k, v in pick(Target, self.latency).items() if k != "remote"}
        return Target(**fields, remote=self.remote())

    def remote(self):
        """``latency.remote`` as ``aows.latency.remote.Remote``, or None."""
        if not self.latency.remote:
            return None
        return Remote.parse(self.latency.remote, python=self.latency.remote_python,
                            timeout=self.latency.remote_timeout,
                            retries=self.latency.remote_retries)

    def train_config(self, method: str, budget: float) -> TrainConfig:
        """The supernet training settings of ``method``."""
        return TrainConfig(**pick(TrainConfig, self.train), batch_size=self.data.batch_size,
                           method=method, budget=budget, seed=self.seed, device=self.device,
                           data=data_id(self.data.name))

    def finetune_config(self) -> FinetuneConfig:
        """The fine-tuning settings of the final networks."""
        return FinetuneConfig(**pick(FinetuneConfig, self.finetune),
                              batch_size=self.data.batch_size, seed=self.seed,
                              device=self.device)

    def as_dict(self) -> dict:
        return as_dict(self)


def load_config(path: str | Path | dict | None = None, overrides: dict | None = None
                ) -> RunConfig:
    """The defaults, then a YAML file (or a mapping), then ``overrides``.

    Raises:
        AowsError: every unknown key, wrongly typed value and value out of range, at once,
            naming the file.
    """
    user, where = {}, "config"
    if isinstance(path, dict):
        user = path
    elif path is not None:
        path, where = Path(path), str(path)
        try:
            user = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise AowsError(f"{path} does not exist") from None
        except IsADirectoryError:
            raise AowsError(f"{path} is a folder; give the YAML file") from None
        except yaml.YAMLError as err:
            raise AowsError(f"{path} is not valid YAML: {err}") from None
        if user is None:
            raise AowsError(f"{path} is empty; give at least the sections you change from "
                            "the defaults (see configs/), e.g. space: {resolution: 128}")
        if not isinstance(user, dict):
            raise AowsError(f"{path}: expected a mapping of sections (space, data, ...)")
    cfg = load(RunConfig, user, where)
    if overrides:
        cfg = load(RunConfig, overrides, "overrides", base=cfg)
    return cfg


def quickstart_config() -> RunConfig:
    """The embedded configuration of ``aows quickstart``."""
    text = resources.files("aows").joinpath("configs/quickstart.yaml").read_text()
    return load(RunConfig, yaml.safe_load(text), "quickstart.yaml")


def dense_quickstart_config(weights: str | Path) -> RunConfig:
    """``aows quickstart --dense``: the quickstart's settings on ``aows.demo``'s U-Net
    segmenter with concatenated skips (``cat_unet``), ``weights`` its trained weights
    (``aows.demo.trained_unet``), the supernets trained without labels
    (``train.objective`` distill)."""
    cfg = quickstart_config()
    res = cfg.space.resolution
    return dataclasses.replace(
        cfg, model=f"{DEMO_MODEL_FILE}:cat_unet",
        space=dataclasses.replace(cfg.space, input_shape=[3, res, res], weights=str(weights)),
        train=dataclasses.replace(cfg.train, objective="distill"))

