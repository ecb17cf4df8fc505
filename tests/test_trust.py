"""Folders and files that name model code run none of it unless the user says so
(``--trust-model-code``), and then only the folder's own copy; a path a file names is
never read. Driven as a user would: the CLI, exit codes, messages, and whether the code
ran (each model file appends its path to a marker file when it is imported)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from aows.catalogue import get_space
from aows.cli import main
from aows.models import _cached

MODEL = '''
import os
import torch
from torch import nn

with open(os.environ["AOWS_TEST_MARKER"], "a") as f:
    f.write(__file__ + "\\n")


class Small(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU())
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x):
        return self.fc(self.b(self.a(x)).mean((2, 3)))


def build(num_classes=10):
    return Small(num_classes)
'''


@pytest.fixture
def exported(tmp_path, monkeypatch, capsys):
    """A network of a model from a file, exported (prune now) into tmp/final."""
    marker = tmp_path / "ran.txt"
    monkeypatch.setenv("AOWS_TEST_MARKER", str(marker))
    src = tmp_path / "src" / "small.py"
    src.parent.mkdir()
    src.write_text(MODEL)
    space = get_space(f"{src}:build", resolution=16, classes=10)
    config = ",".join(map(str, space.multiplier_config(0.5)))
    final = tmp_path / "final"
    assert main(["export", "--model", f"{src}:build", "--resolution", "16", "--classes", "10",
                 "--config", config, "--importance", "none", "--out", str(final)]) == 0
    capsys.readouterr()
    marker.unlink()
    return tmp_path, src, final, marker


def ran(marker) -> list[str]:
    return marker.read_text().split() if marker.exists() else []


def test_a_folder_runs_no_code_unless_trusted_and_then_its_own_copy(exported, capsys):
    tmp, src, final, marker = exported
    cfg = json.loads((final / "config.json").read_text())
    assert cfg["model_code"]["source"] == str(src.resolve())
    assert (final / "model.py").read_text() == MODEL  # the folder is self-contained
    # a received folder whose config.json names another file: nothing of it runs
    evil = tmp / "evil.py"
    evil.write_text(MODEL)
    cfg["space"]["params"]["model"] = f"{evil}:build"
    (final / "config.json").write_text(json.dumps(cfg))
    assert main(["evaluate", str(final), "--data", "fake"]) == 2
    err = capsys.readouterr().err
    assert "--trust-model-code" in err and "model.py" in err and err.count("\n") == 1
    assert ran(marker) == []
    # trusted: the folder's copy runs, moved to another place, without the source
    moved = tmp / "elsewhere" / "net"
    shutil.move(final, moved)
    src.unlink()
    assert main(["evaluate", str(moved), "--data", "fake", "--json",
                 "--trust-model-code"]) == 0
    assert ran(marker) == [str((moved / "model.py").resolve())]
    assert "running model code" in capsys.readouterr().err


def test_a_changed_copy_is_refused(exported, capsys):
    tmp, src, final, marker = exported
    (final / "model.py").write_text(MODEL + "\n# changed\n")
    assert main(["evaluate", str(final), "--data", "fake", "--trust-model-code"]) == 2
    assert "SHA-256" in capsys.readouterr().err and ran(marker) == []


def test_files_that_name_model_code_serve_search_without_running_it(exported, capsys):
    """A latency model and unaries of a model from a file: predict and search need only
    the width graph; timing a network needs the code, and says how to consent."""
    from aows.latency.fit import flops_vector
    from aows.latency.model import LatencyModel
    tmp, src, final, marker = exported
    space = get_space(f"{src}:build", resolution=16, classes=10)
    f = flops_vector(space)
    LatencyModel.from_unknowns(space, 0.01 + f / f.max(), "synthetic", {}).save(
        tmp / "lat.json")
    unaries = [[0.1 * k for k in range(len(space.choices[v]))] for v in space.searchable]
    (tmp / "unaries.json").write_text(json.dumps({"space": space.describe(),
                                                  "unaries": unaries}))
    marker.unlink(missing_ok=True)
    _cached.cache_clear()  # the next import of the model file is seen in the marker
    assert main(["search", "--latency", str(tmp / "lat.json"), "--unaries",
                 str(tmp / "unaries.json"), "--budget", "100", "--json"]) == 0
    assert main(["latency", "predict", "--latency", str(tmp / "lat.json"),
                 ",".join(map(str, space.widest()))]) == 0
    assert ran(marker) == []
    model = LatencyModel.load(tmp / "lat.json")
    with pytest.raises(Exception, match="--trust-model-code"):
        model.space.build(space.widest())
    assert ran(marker) == []
    trusted = LatencyModel.load(tmp / "lat.json", trust_model_code=True)
    assert type(trusted.space.build(space.widest())).__name__ == "Small"
    assert ran(marker) == [str(src.resolve())]


def test_a_weights_path_a_file_names_is_never_read(tmp_path, capsys):
    """``params.weights`` of a final network names a file outside the folder: loading
    reads the folder's weights.pt only (a path to a missing file proves it)."""
    final = tmp_path / "final"
    assert main(["export", "--model", "torchvision:resnet18", "--resolution", "32",
                 "--classes", "10", "--config",
                 ",".join(map(str, get_space("torchvision:resnet18", resolution=32,
                                             classes=10).narrowest())),
                 "--importance", "none", "--out", str(final)]) == 0
    cfg = json.loads((final / "config.json").read_text())
    cfg["space"]["params"]["weights"] = str(tmp_path / "secret" / "nowhere.pt")
    (final / "config.json").write_text(json.dumps(cfg))
    from aows.final import load_final
    net, space, config = load_final(final)  # torchvision runs no user code: no flag
    assert type(net).__name__ == "ResNet" and "weights" not in space.params


@pytest.mark.parametrize("name", ["evil.pyc", "evil.so", "evil"])
def test_a_model_name_that_is_not_a_py_file_is_code_too(exported, capsys, name):
    """Bytecode, a native extension or a file of any other name is never loaded from a
    name a file records: it counts as code (refused without consent), and the loader
    takes only .py files."""
    from aows.latency.model import LatencyModel
    tmp, src, final, marker = exported
    space = get_space(f"{src}:build", resolution=16, classes=10)
    desc = space.describe()
    desc["params"]["model"] = f"{tmp / name}:build"
    (tmp / name).write_bytes(b"\x00not code")
    lat = LatencyModel.from_unknowns(space, np.full(len(space.unknowns()[0]), 0.1), "t", {})
    obj = lat.to_json()
    obj["space"] = desc
    (tmp / "lat.json").write_text(json.dumps(obj))
    assert main(["latency", "predict", "--latency", str(tmp / "lat.json"), "--widest"]) == 0
    assert ran(marker) == []
    with pytest.raises(Exception, match="--trust-model-code"):
        LatencyModel.load(tmp / "lat.json").space.build(space.widest())
    with pytest.raises(Exception, match="not a .py file"):
        LatencyModel.load(tmp / "lat.json", trust_model_code=True)


def test_a_run_folder_holds_its_own_copy_and_runs_only_that(exported, capsys):
    """A supernet's run folder is self-contained like a final network: `aows export --run`
    runs the folder's model.py, with consent, never the path its unaries record."""
    tmp, src, final, marker = exported
    run = tmp / "run"
    assert main(["train", "--model", f"{src}:build", "--input-shape", "3,16,16", "--data",
                 "fake", "--epochs", "1", "--batch-size", "8", "--out", str(run),
                 "--no-progress", "--no-val"]) == 0
    assert (run / "model.py").read_text() == MODEL
    rec = json.loads((run / "unaries.json").read_text())
    assert rec["model_code"]["source"] == str(src.resolve())
    evil = tmp / "evil.py"
    evil.write_text(MODEL)
    rec["space"]["params"]["model"] = f"{evil}:build"
    (run / "unaries.json").write_text(json.dumps(rec))
    marker.unlink(missing_ok=True)
    _cached.cache_clear()
    space = get_space(f"{src}:build", resolution=16, classes=4)  # fake data: 4 classes
    marker.unlink(missing_ok=True)
    _cached.cache_clear()
    export = ["export", "--run", str(run), "--config",
              ",".join(map(str, space.narrowest())), "--out", str(tmp / "f2")]
    capsys.readouterr()
    assert main(export) == 2 and "--trust-model-code" in capsys.readouterr().err
    assert ran(marker) == []
    assert main([*export, "--trust-model-code"]) == 0
    assert ran(marker) == [str((run / "model.py").resolve())]
