"""One schema for settings: YAML sections and command options come from the same fields."""

import dataclasses

import pytest
import yaml

from aows.cli import FINETUNE_OPTIONS, TRAIN_OPTIONS, build_parser, main
from aows.config import RunConfig, load_config
from aows.errors import AowsError
from aows.latency.protocol import Protocol
from aows.latency.target import Target
from aows.settings import add_options, from_args, load
from aows.train.finetune import FinetuneConfig
from aows.train.loop import TrainConfig


def test_sections_take_the_library_objects_defaults():
    cfg = RunConfig()
    for name in ("epochs", "lr", "sampled", "schedule", "calib_batches"):
        assert getattr(cfg.train, name) == getattr(TrainConfig(), name), name
    for name in ("epochs", "lr", "warmup_epochs", "label_smoothing", "weight_decay"):
        assert getattr(cfg.finetune, name) == getattr(FinetuneConfig(), name), name
    assert cfg.latency.protocol == Protocol()
    assert cfg.data.batch_size == TrainConfig().batch_size
    # the one deliberate difference, documented where it is made: one timing thread
    assert cfg.latency.threads == 1 and Target().threads is None
    t = cfg.train_config("aows", 2.5)
    assert (t.method, t.budget, t.epochs, t.seed) == ("aows", 2.5, cfg.train.epochs, cfg.seed)
    assert cfg.target() == Target(threads=1)


def test_commands_take_their_defaults_from_the_same_fields():
    ap = build_parser()
    train = ap.parse_args(["train", "--data", "fake", "--epochs", "3", "--out", "r"])
    cfg = TrainConfig(**from_args(TrainConfig, train, TRAIN_OPTIONS))
    assert dataclasses.replace(cfg, epochs=TrainConfig().epochs) == TrainConfig()
    ft = ap.parse_args(["finetune", "f", "--data", "fake", "--epochs", "2"])
    assert dataclasses.replace(FinetuneConfig(**from_args(FinetuneConfig, ft, FINETUNE_OPTIONS)),
                               epochs=FinetuneConfig().epochs) == FinetuneConfig()
    gen = ap.parse_args(["latency", "generate", "--count", "3", "-o", "x"])
    assert Target(**from_args(Target, gen)) == Target()
    names = ["warmup", "rounds", "runs", "reduce", "chunk", "anchor"]
    assert Protocol(**from_args(Protocol, gen, names)) == Protocol()
    off = ap.parse_args(["latency", "generate", "--count", "3", "-o", "x", "--no-anchor",
                         "--rounds", "2"])
    assert Protocol(**from_args(Protocol, off, names)) == Protocol(anchor=False, rounds=2)


def test_yaml_problems_are_reported_at_once_with_the_fix(tmp_path):
    with pytest.raises(AowsError) as err:
        load(RunConfig, {"latency": {"protocol": {"reduce": "max", "chunk": 0},
                                     "threads": 1.5},
                         "train": {"methods": "ows", "schedule": "step"},
                         "search": {"budget_ms": -1}, "onnx": "yes"}, "my.yaml")
    msg = str(err.value)
    for part in ("my.yaml:", "'latency.protocol.reduce' must be one of min, p10",
                 "'latency.protocol.chunk' must be at least 1",
                 "'latency.threads' must be an integer", "'train.methods' must be a list",
                 "'train.schedule' must be one of cosine, constant",
                 "'search.budget_ms' must be > 0", "'onnx' must be true or false"):
        assert part in msg, part
    with pytest.raises(AowsError, match="train.methods must list ows and/or aows"):
        load_config({"train": {"methods": ["ows", "nas"]}})


def test_a_saved_configuration_loads_back_equal(tmp_path):
    cfg = load_config({"latency": {"K": "auto", "protocol": {"chunk": 40}},
                       "measure": {"protocol": {"rounds": 2}}, "space": {"resolution": 64}})
    assert cfg.latency.protocol.chunk == 40 and cfg.measure.protocol == Protocol(rounds=2)
    assert load_config(yaml.safe_load(yaml.safe_dump(cfg.as_dict()))) == cfg
    # overrides apply over a loaded configuration, section by section
    over = load_config({"train": {"epochs": 3}}, overrides={"train": {"lr": 0.5}})
    assert (over.train.epochs, over.train.lr) == (3, 0.5)


def test_aows_config_prints_yaml_that_loads_back(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("finetune: {weight_decay: 0.0001}\nlatency: {networks: 300}\n")
    assert main(["config", str(p)]) == 0
    text = capsys.readouterr().out
    assert "# training epochs" in text
    assert load_config(yaml.safe_load(text)) == load_config(p)


def test_add_options_ranges_are_the_fields(capsys):
    import argparse
    ap = argparse.ArgumentParser()
    add_options(ap, FinetuneConfig, ["epochs", "mixup"], required=["epochs"])
    with pytest.raises(SystemExit):
        ap.parse_args(["--epochs", "0"])
    assert "must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ap.parse_args(["--epochs", "2", "--mixup", "-1"])
    assert "must be >= 0" in capsys.readouterr().err
    assert ap.parse_args(["--epochs", "2"]).mixup == FinetuneConfig().mixup


def test_space_settings_are_typed_too(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("space: {resolution: abc, levles: 3}\n")
    assert main(["run", str(p), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "'space.resolution' must be an integer" in err
    assert "unknown setting 'space.levles'" in err
    assert not (tmp_path / "r").exists()  # refused before anything was written
    cfg = load_config({"space": {"resolution": 32, "levels": 3}})
    assert cfg.space.params() == {"resolution": 32, "levels": 3}


def test_prior_weights_take_a_number_or_auto_only():
    for bad, words in (("abc", "must be a number or 'auto'"), (-5, "must be at least 0"),
                       (None, "must be a number")):
        with pytest.raises(AowsError, match=words):
            load_config({"latency": {"K": bad}})
    cfg = load_config({"latency": {"K": "auto", "smooth": 10}})
    assert (cfg.latency.K, cfg.latency.smooth) == ("auto", 10.0)


def test_console_shows_progress_and_leaves_the_logger_as_it_was():
    import io
    import logging

    from aows.log import console, indented
    root = logging.getLogger("aows")
    before = (root.level, root.propagate, list(root.handlers))
    out, inner = io.StringIO(), console(io.StringIO())
    with console(out):
        inner.__enter__()  # nested uses share the outermost handler
        with indented():
            try:
                raise ZeroDivisionError("division by zero")
            except ZeroDivisionError:
                logging.getLogger("aows.test").exception("boom")
        inner.__exit__(None, None, None)
        logging.getLogger("aows.test").info("still shown")
    assert (root.level, root.propagate, list(root.handlers)) == before
    text = out.getvalue()
    assert "  error: boom" in text and "ZeroDivisionError" in text and "still shown" in text
