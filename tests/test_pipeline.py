"""`aows run`: the whole pipeline on a tiny configuration; skipping and resuming."""

import json

import pytest
import torch
import yaml

from aows.cli import main
from aows.errors import AowsError
from aows.latency.fit import flops_vector
from aows.latency.model import LatencyModel
from aows.pipeline import load_config, run_pipeline
from aows.spaces import mobilenet_v1

TINY = {
    "device": "cpu",
    "space": {"name": "mobilenet_v1", "resolution": 32, "levels": 3, "max_width": 0.5},
    "data": {"name": "fake", "batch_size": 16},
    "latency": {"networks": 16, "heldout": 4, "blocks": 1, "refine_budgets": 2,
                "protocol": {"chunk": 8, "rounds": 2, "runs": 1, "warmup": 1}},
    "train": {"epochs": 1, "calib_batches": 2},
    "finetune": {"epochs": 1},
    "measure": {"repeats": 2, "protocol": {"rounds": 2, "runs": 1, "warmup": 1}},
}
STAGES = ["latency", "train_ows", "train_aows", "refine", "search", "final_uniform", "final_greedy",
          "final_ows", "final_aows", "measure"]


@pytest.mark.slow
def test_run_completes_then_skips_every_stage(tmp_path, capsys):
    cfg, out = tmp_path / "tiny.yaml", tmp_path / "run"
    cfg.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == {"uniform", "greedy", "ows", "aows"}
    for m in report["methods"].values():
        assert m["predicted_latency_ms"] <= report["budget_ms"] * (1 + 1e-9)
        assert m["measured_latency_ms"] > 0 and 0 <= m["top1"] <= 1
        assert len(m["config"]) == 14
    ref = report["latency_refine"]
    assert 1 <= ref["rounds"] <= 3 and len(ref["picks_nrmse"]) == ref["rounds"]
    assert ref["converged"] == (ref["picks_worst"][-1] <= ref["tolerance"])
    assert "Refined on the search's picks" in (out / "report.md").read_text()
    for png in ("latency_fit.png", "latency_refine.png", "pareto.png", "widths.png"):
        assert (out / png).stat().st_size > 5000
    assert "| AOWS |" in (out / "report.md").read_text()
    assert (out / "final" / "aows" / "model.onnx").exists()
    weights = out / "final" / "ows" / "weights.pt"
    stamp = weights.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    log = capsys.readouterr().err  # progress on stderr; the report table on stdout
    assert all(f"[{s}] done before, skipped" in log for s in STAGES), log
    assert weights.stat().st_mtime_ns == stamp
    # the same folder with another configuration is refused
    cfg.write_text(yaml.safe_dump({**TINY, "seed": 1}))
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    assert "another configuration" in capsys.readouterr().err


@pytest.mark.slow
def test_stage_killed_midway_resumes_to_the_uninterrupted_result(tmp_path):
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    f = flops_vector(space)
    LatencyModel.from_unknowns(space, 0.05 + f / f.max(), "synthetic",
                               {"target": {"backend": "torch-cpu", "threads": 1}}).save(
        tmp_path / "lat.json")
    # the supernets' resume is the point: no baselines, and up to the search (the final
    # networks are made from the supernets' weights and the search's configurations)
    cfg = {**TINY, "latency": {"model": str(tmp_path / "lat.json")}, "onnx": False,
           "search": {"baselines": []}}
    assert run_pipeline(cfg, tmp_path / "a", until="search") is None
    calls = {"n": 0}

    def stop_in_aows_training():  # train_ows takes 1 epoch x 12 steps
        calls["n"] += 1
        return calls["n"] == 18

    assert run_pipeline(cfg, tmp_path / "b", should_stop=stop_in_aows_training) is None
    assert (tmp_path / "b" / "stages" / "train_ows.json").exists()
    assert not (tmp_path / "b" / "stages" / "train_aows.json").exists()
    run_pipeline(cfg, tmp_path / "b", until="search")
    for m in ("ows", "aows"):
        a, b = (tmp_path / r / f"supernet_{m}" for r in "ab")
        ua = json.loads((a / "unaries.json").read_text())
        ub = json.loads((b / "unaries.json").read_text())
        assert ua["unaries"] == ub["unaries"], m
        wa, wb = (torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (a, b))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), m
    sa, sb = (json.loads((tmp_path / r / "stages" / "search.json").read_text())["methods"]
              for r in "ab")
    assert {m: r["config"] for m, r in sa.items()} == {m: r["config"] for m, r in sb.items()}


def test_budget_is_derived_again_on_the_refined_model(tmp_path):
    """A refined model that predicts everything 40 % slower puts the first model's half-way
    budget below its narrowest network (what a loaded CI machine did): a derived budget is
    derived again; a budget in ms stays, and one out of reach is a clear error, before
    training when the first model already says so."""
    from aows.pipeline import Pipeline
    space = mobilenet_v1(resolution=32, levels=3, max_width=0.5, classes=4)
    f = flops_vector(space)
    first = LatencyModel.from_unknowns(space, 0.05 + f / f.max(), "synthetic", {})
    refined = LatencyModel.from_unknowns(space, 1.4 * (0.05 + f / f.max()), "synthetic", {})
    lo, hi = first.predict(space.narrowest()), first.predict(space.widest())
    assert lo + 0.1 * (hi - lo) < refined.predict(space.narrowest())  # the CI failure

    def pipeline(search):  # a run folder per configuration
        key = "_".join(f"{k}{v:g}" for k, v in search.items())
        return Pipeline(load_config({**TINY, "search": search}), tmp_path / key)

    p = pipeline({"budget_fraction": 0.1})
    b = p.budget(first)
    again = p.search_budget(first, refined, b)
    assert again == pytest.approx(1.4 * b)  # the same fraction of the refined range
    p = pipeline({"budget_ms": 1.2 * lo})
    assert p.search_budget(first, first, p.budget(first)) == 1.2 * lo
    with pytest.raises(AowsError, match="refined latency model predicts"):
        p.search_budget(first, refined, p.budget(first))
    with pytest.raises(AowsError, match="narrowest network of the space"):
        pipeline({"budget_ms": 0.9 * lo}).budget(first)


def test_bad_configuration_is_one_clear_error(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: {epochz: 3}\n")
    with pytest.raises(AowsError, match="unknown setting 'train.epochz'"):
        load_config(p)
    p.write_text("- a list\n")
    with pytest.raises(AowsError, match="expected a mapping"):
        load_config(p)
    with pytest.raises(AowsError, match="does not exist"):
        load_config(tmp_path / "none.yaml")


def test_shipped_configurations_load():
    from pathlib import Path

    from aows.pipeline import quickstart_config
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert len(files) >= 3
    for f in files:
        cfg = load_config(f)
        assert cfg.space.resolution == 224 and cfg.train.epochs == 20, f
    assert quickstart_config().data.name == "digits"
