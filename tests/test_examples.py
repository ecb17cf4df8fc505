"""The examples/ scripts, each run as a user would (``python examples/X.py ARGS``: the
file as ``__main__``) at a tiny size, in this process (a fresh one per script cost more
than some of the runs)."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture
def run(monkeypatch, capsys):
    def run(script: str, *args: str, cwd: Path) -> str:
        path = ROOT / "examples" / script
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", [str(path), *args])
        threads = torch.get_num_threads()
        capsys.readouterr()
        runpy.run_path(str(path), run_name="__main__")
        assert torch.get_num_threads() == threads  # an example leaves the process as it was
        return capsys.readouterr().out
    return run


def test_prune_now(tmp_path, run):
    out = run("prune_now.py", "--epochs", "1", "--resolution", "16", "--out",
               str(tmp_path / "p"), cwd=tmp_path)
    assert "| original |" in out and "| pruned 0.5x |" in out
    cfg = json.loads((tmp_path / "p" / "pruned" / "config.json").read_text())
    assert cfg["importance"] == "l1" and (tmp_path / "p" / "pruned" / "weights.pt").exists()


def test_own_module(tmp_path, run):
    out = run("own_module.py", "--epochs", "1", "--networks", "20", "--resolution", "16",
               "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert "searchable widths" in out and "Net in" in out
    from aows.final import load_final
    net, space, config = load_final(tmp_path / "o" / "final", trust_model_code=True)
    assert type(net).__name__ == "Net" and len(config) == space.n_searchable


def test_run_pipeline(tmp_path, run):
    """`aows run` with `model:` from Python: every stage on the user's module, its own
    class out, the original timed and evaluated beside the networks found."""
    from aows.catalogue import get_space
    from aows.final import load_final
    zoo = str(ROOT / "tests" / "zoo.py:res_cat")
    out = run("run_pipeline.py", "--tiny", "--model", zoo, "--out", str(tmp_path / "r"),
               cwd=tmp_path)
    assert "| original (your model) |" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert set(report["methods"]) == {"uniform", "greedy", "ows", "aows"}
    orig = report["original"]
    assert orig["config"] == [16, 24, 16, 16, 32]  # the module's own widths: its widest
    assert orig["params"] == sum(p.numel() for p in get_space(
        zoo, resolution=32, classes=4).load_module().parameters())
    for m in report["methods"].values():
        assert len(m["config"]) == 5 and m["params"] <= orig["params"]
        assert m["macs"] <= orig["macs"]
        assert m["speedup"] == pytest.approx(
            orig["measured_latency_ms"] / m["measured_latency_ms"])
    assert (tmp_path / "r" / "supernet_ows" / "channel_order.json").exists()
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| original (your model) |" in md and "speed-up" in md
    net, _, _ = load_final(tmp_path / "r" / "final" / "aows", trust_model_code=True)
    assert type(net).__name__ == "ResCat"
