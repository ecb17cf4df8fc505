"""Timing backends on real hardware; GPU paths skip where there is no GPU."""

import time

import numpy as np
import pytest
import torch

from aows.latency.backends import BACKENDS, BackendUnavailable, Target, get_backend
from aows.latency.measure import time_configs
from aows.latency.protocol import Protocol
from aows.spaces import mobilenet_v1

FAST = Protocol(warmup=1, rounds=2, runs=1, chunk=4)


def assert_per_image_ms_of_the_network(ms, space, configs, target):
    """``ms`` (what ``time_configs`` gave for ``configs``) agrees with a clock read around
    the backend's own calls on those networks, per image: within 3x, which timing noise on
    a shared machine (20-50 %) stays inside and a wrong unit (1000x), a per-batch figure
    (a batch of 4 or more) does not."""
    from aows.nn import build_network
    backend = get_backend(target)
    shape = space.input_shape(target.batch_size)
    with backend.session():
        for config, got in zip(configs, ms):
            run = backend.prepare(build_network(space, config), shape)
            run()
            calls = []
            for _ in range(15):
                t0 = time.perf_counter()
                run()
                if torch.cuda.is_available() and target.backend == "torch-cuda":
                    torch.cuda.synchronize()
                calls.append(time.perf_counter() - t0)
            clock = 1e3 * float(np.median(calls)) / target.batch_size
            assert 1 / 3 < got / clock < 3, (config, got, clock)


@pytest.fixture
def configs(tiny_space):
    return tiny_space.uniform_sample(np.random.default_rng(0), 3)


def test_backend_registry_names_the_contract():
    for name in ("torch-cpu", "torch-cuda", "onnxruntime", "onnxruntime-cuda",
                 "onnxruntime-trt", "openvino"):
        assert name in BACKENDS


def test_torch_cpu_records_threads(tiny_space, configs):
    ms = time_configs(tiny_space, configs, Target("torch-cpu", threads=1), FAST)
    assert ms.shape == (3,)
    assert_per_image_ms_of_the_network(ms, tiny_space, configs, Target("torch-cpu", threads=1))
    info = get_backend(Target("torch-cpu", threads=1)).info()
    assert info["threads"] == 1 and info["backend"] == "torch-cpu"


def test_batch_size_gives_ms_per_image(tiny_space, configs, monkeypatch):
    """A runner that takes 20 ms a call on a batch of 4 is 5 ms per image; the runner is
    given a batch of 4 (a backend whose calls take a known time: the arithmetic, not the
    clock, is under test)."""
    from aows.latency import backends
    shapes = []

    class Fixed(backends.TorchCPU):
        def prepare(self, model, input_shape):
            shapes.append(tuple(input_shape))
            return lambda: 0.020

    monkeypatch.setitem(backends.BACKENDS, "torch-cpu", Fixed)
    ms = time_configs(tiny_space, configs[:2], Target("torch-cpu", batch_size=4, threads=1),
                      FAST)
    np.testing.assert_allclose(ms, [5.0, 5.0])
    assert shapes and all(s[0] == 4 for s in shapes)


def test_onnxruntime_cpu(tiny_space, configs):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    target = Target("onnxruntime", batch_size=4, threads=1)
    ms = time_configs(tiny_space, configs, target, FAST)
    assert ms.shape == (3,)
    assert_per_image_ms_of_the_network(ms[:2], tiny_space, configs[:2], target)


def _calibrated(net, shape):
    """BatchNorm statistics of a random batch: a freshly built network shrinks its
    activations about 10x per layer (measured on the tiny space), so that its output is
    the classifier's bias whatever the input, and any runtime would match it."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch sets the statistics
    with torch.no_grad():
        net.train()(torch.randn(16, *shape[1:], generator=torch.Generator().manual_seed(0)))
    return net.eval()


def test_openvino_times_and_matches_torch(tiny_space, configs):
    pytest.importorskip("openvino", reason="openvino is not installed")
    from aows.nn import build_network
    ms = time_configs(tiny_space, configs, Target("openvino", threads=1), FAST)
    assert ms.shape == (3,)
    assert_per_image_ms_of_the_network(ms[:2], tiny_space, configs[:2],
                                       Target("openvino", threads=1))
    backend = get_backend(Target("openvino", batch_size=2, threads=1))
    info = backend.info()
    assert info["backend"] == "openvino" and info["threads"] == 1
    assert info["precision"] == "f32" and info["num_streams"] == 1 and info["openvino"]
    shape = tiny_space.input_shape(2)
    net = _calibrated(build_network(tiny_space, configs[0]), shape)
    run = backend.prepare(net, shape)
    assert run() > 0
    x = run.request.get_input_tensor().data.copy()  # the input the runner timed
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert np.abs(want[0] - want[1]).max() > 0.1 * np.abs(want).max()  # depends on input
    got = run.request.get_output_tensor().data
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_openvino_leaves_the_thread_its_signal_stack(tiny_space, configs):
    """OpenVINO's CPU plugin installs an alternate signal stack and puts back the one it
    saw when its core goes: cores released out of order used to leave the thread on a
    freed stack (the next handled signal was a SIGSEGV). The backend keeps the thread's
    own: before, during and after two backends released first-made first."""
    pytest.importorskip("openvino", reason="openvino is not installed")
    import ctypes
    import gc

    from aows.latency.backends import _libc, _StackT
    from aows.nn import build_network
    libc = _libc()
    if libc is None:
        pytest.skip("no sigaltstack in this C library")

    def current():
        st = _StackT()
        assert libc.sigaltstack(None, ctypes.byref(st)) == 0
        return st.ss_sp, st.ss_flags, st.ss_size

    before = current()
    shape = tiny_space.input_shape(1)
    a, b = (get_backend(Target("openvino", threads=1)) for _ in range(2))
    runs = [be.prepare(build_network(tiny_space, configs[0]), shape) for be in (a, b)]
    assert all(r() > 0 for r in runs) and current() == before
    del runs, a
    gc.collect()
    assert current() == before
    del b
    gc.collect()
    assert current() == before


def test_openvino_fp16_is_honoured_or_refused():
    pytest.importorskip("openvino", reason="openvino is not installed")
    from aows.errors import AowsError
    try:
        backend = get_backend(Target("openvino", dtype="fp16", threads=1))
    except AowsError as err:
        assert "f16" in str(err) and "--dtype fp32" in str(err)
        return
    assert backend.info()["precision"] == "f16"


@pytest.mark.slow
def test_cli_generate_on_openvino(tmp_path, fast_protocol_args):
    pytest.importorskip("openvino", reason="openvino is not installed")
    from aows.cli import main
    from aows.latency.store import read_samples
    out = tmp_path / "ov.jsonl"
    assert main(["latency", "generate", "--space", "mobilenet_v1", "--resolution", "32",
                 "--backend", "openvino", "--threads", "1", "--count", "3", "-q",
                 "-o", str(out), *fast_protocol_args]) == 0
    s = read_samples(out)
    t = s.header["target"]
    assert len(s) == 3 and bool(np.all(s.latency_ms > 0))
    assert t["backend"] == "openvino" and t["threads"] == 1 and t["precision"] == "f32"


@pytest.mark.parametrize("module", ["openvino", "onnx"])
def test_openvino_missing_is_a_clear_error(monkeypatch, module):
    import sys
    if module == "onnx":
        pytest.importorskip("openvino", reason="openvino is not installed")
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(BackendUnavailable, match=rf"{module} .*aows\[openvino\]"):
        get_backend(Target("openvino"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
@pytest.mark.parametrize("dtype,channels_last", [("fp32", False), ("fp16", True)])
def test_torch_cuda(dtype, channels_last):
    space = mobilenet_v1(resolution=64)
    cfgs = space.uniform_sample(np.random.default_rng(0), 2)
    target = Target("torch-cuda", 8, None, dtype, channels_last)
    ms = time_configs(space, cfgs, target, FAST)
    assert_per_image_ms_of_the_network(ms, space, cfgs, target)


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
    cfgs = space.uniform_sample(np.random.default_rng(0), 2)
    target = Target(name, 8, dtype="fp16" if name.endswith("trt") else "fp32")
    ms = time_configs(space, cfgs, target, FAST)
    assert_per_image_ms_of_the_network(ms, space, cfgs, target)


def test_bad_target_values():
    from aows.errors import AowsError
    with pytest.raises(AowsError, match="batch-size"):
        Target(batch_size=0)
    with pytest.raises(AowsError, match="fp32 only"):
        get_backend(Target("torch-cpu", dtype="fp16"))
    with pytest.raises(AowsError, match="unknown backend"):
        get_backend(Target("tpu"))


def test_time_configs_fills_the_chunk_and_retimes_disturbed_chunks(tiny_space, configs,
                                                                   monkeypatch):
    """``fill`` times a short chunk among other networks up to the protocol's chunk size,
    and an anchor slower than ``anchor_min_ms`` allows has the chunk timed again."""
    import aows.latency.protocol as protocol
    calls = []
    real = protocol.time_runners

    def spy(runners, proto, rng=None):
        calls.append(len(runners))
        return real(runners, proto, rng)

    monkeypatch.setattr(protocol, "time_runners", spy)
    target = Target("torch-cpu", threads=1)
    ms = time_configs(tiny_space, configs, target, FAST, fill=True)
    assert ms.shape == (3,) and np.all(ms > 0)
    assert calls == [1 + FAST.chunk]  # anchor + 3 networks + 1 filler, one attempt
    calls.clear()
    # no chunk can be as fast as 1 ns: every attempt is "disturbed", all retries are used
    ms, anchors = time_configs(tiny_space, configs, target, FAST, with_anchor=True,
                               anchor_min_ms=1e-6)
    assert calls == [1 + 3] * (FAST.retries + 1)
    assert ms.shape == (3,) and anchors[0] > 0
