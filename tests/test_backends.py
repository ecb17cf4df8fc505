"""Timing backends on real hardware; GPU paths skip where there is no GPU."""

import numpy as np
import pytest
import torch

from aows.latency.backends import BACKENDS, BackendUnavailable, Target, get_backend
from aows.latency.measure import time_configs
from aows.latency.protocol import Protocol
from aows.space import mobilenet_v1

FAST = Protocol(warmup=1, rounds=2, runs=1, chunk=4)


@pytest.fixture
def configs(tiny_space):
    return tiny_space.uniform_sample(np.random.default_rng(0), 3)


def test_backend_registry_names_the_contract():
    for name in ("torch-cpu", "torch-cuda", "onnxruntime", "onnxruntime-cuda",
                 "onnxruntime-trt"):
        assert name in BACKENDS


def test_torch_cpu_records_threads(tiny_space, configs):
    ms = time_configs(tiny_space, configs, Target("torch-cpu", threads=1), FAST)
    assert ms.shape == (3,) and np.all(ms > 0)
    info = get_backend(Target("torch-cpu", threads=1)).info()
    assert info["threads"] == 1 and info["backend"] == "torch-cpu"


def test_batch_size_gives_ms_per_image(tiny_space, configs):
    ms = time_configs(tiny_space, configs[:1], Target("torch-cpu", batch_size=4, threads=1),
                      FAST)
    assert ms[0] > 0


def test_onnxruntime_cpu(tiny_space, configs):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    ms = time_configs(tiny_space, configs, Target("onnxruntime", threads=1), FAST)
    assert ms.shape == (3,) and np.all(ms > 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
@pytest.mark.parametrize("dtype,channels_last", [("fp32", False), ("fp16", True)])
def test_torch_cuda(dtype, channels_last):
    space = mobilenet_v1(resolution=64)
    cfgs = space.uniform_sample(np.random.default_rng(0), 2)
    ms = time_configs(space, cfgs, Target("torch-cuda", 8, None, dtype, channels_last), FAST)
    assert np.all(ms > 0)


def test_torch_cuda_unavailable_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(BackendUnavailable, match="CUDA"):
        get_backend(Target("torch-cuda"))


@pytest.mark.parametrize("name", ["onnxruntime-cuda", "onnxruntime-trt"])
def test_onnxruntime_gpu_providers(name):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    needed = BACKENDS[name].providers[0]
    if needed not in ort.get_available_providers():
        with pytest.raises(BackendUnavailable, match=needed):
            get_backend(Target(name))
        pytest.skip(f"{needed} is not available here (needs onnxruntime-gpu and a GPU)")
    space = mobilenet_v1(resolution=64)
    ms = time_configs(space, space.uniform_sample(np.random.default_rng(0), 2),
                      Target(name, 8, dtype="fp16" if name.endswith("trt") else "fp32"), FAST)
    assert np.all(ms > 0)


def test_bad_target_values():
    from aows.errors import AowsError
    with pytest.raises(AowsError, match="batch-size"):
        Target(batch_size=0)
    with pytest.raises(AowsError, match="fp32 only"):
        get_backend(Target("torch-cpu", dtype="fp16"))
    with pytest.raises(AowsError, match="unknown backend"):
        get_backend(Target("tpu"))
