"""Distributed runs: 2 processes with gloo, launched by torchrun (one launch: supernet
training against one process, then `aows run` in the same process group)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from aows.train.loop import train_supernet
from tests import ddp_worker as W
from tests.test_pipeline import TINY


@pytest.mark.slow
def test_two_processes_under_torchrun_train_as_one_and_run_the_pipeline(tmp_path):
    if not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    # `aows run`: training and fine-tuning distributed, the other stages on rank 0
    sp = W.space()
    W.latency(sp, {"target": {"backend": "torch-cpu", "threads": 1}}).save(tmp_path / "lat.json")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "latency": {"model": str(tmp_path / "lat.json")},
                                   "data": {"name": "fake", "batch_size": 8}, "onnx": False,
                                   "search": {"baselines": ["uniform"]}}))
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", str(Path(W.__file__)), str(out), str(cfg)],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "run" / "report.json").read_text())
    assert set(report["methods"]) == {"uniform", "ows", "aows"}
    ckpt = torch.load(out / "run" / "supernet_ows" / "checkpoint.pt", weights_only=True)
    assert ckpt["position"]["world"] == 2

    # the supernet training: the same on both ranks, and as one process on both batches
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    # identical statistics and weights on every rank
    for k in r0["stats"]:  # bit-identical (NaN marks choices never seen)
        np.testing.assert_array_equal(r0["stats"][k].numpy(), r1["stats"][k].numpy(), k)
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    assert (out / "unaries.json").exists() and (out / "checkpoint.pt").exists()

    # a single process on both ranks' images side by side does the same computation
    sp = W.space()
    net, stats = train_supernet(sp, W.batches(copies=2), W.config(1), tmp_path / "one",
                                W.latency(sp))
    assert stats.state_dict()["last_count"].sum() == r0["stats"]["last_count"].sum()
    for k, v in r0["stats"].items():
        np.testing.assert_allclose(stats.state_dict()[k].numpy(), v.numpy(), rtol=1e-4,
                                   atol=1e-6, err_msg=k)
    # the momentum buffers hold every step's (all-reduced) gradient
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)["optimizer"]
    ddp = torch.load(out / "checkpoint.pt", weights_only=True)["optimizer"]
    assert one["state"].keys() == ddp["state"].keys()
    for i in one["state"]:
        a, b = one["state"][i]["momentum_buffer"], ddp["state"][i]["momentum_buffer"]
        # relative error of the whole buffer: float noise (BatchNorm weight gradients are
        # sums with heavy cancellation) is < 1e-3; a missed average or pass is O(1)
        assert a.norm() > 0
        assert float((a - b).norm() / a.norm()) < 1e-2, i
