"""Timing backends: run one network once and return the elapsed seconds.

A backend is the target: device + runtime + batch size + precision. Each backend turns
a torch module into a zero-argument runner; the protocol (``protocol.py``) decides
how often and in which order runners are called.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from aows.errors import AowsError
from aows.latency.remote import Device, RemoteError, RemoteNetwork, devices
from aows.latency.remote_runner import cpu_name as _cpu_name  # stdlib only, as is the runner
from aows.latency.target import Target
from aows.onnx_export import onnx_bytes
from aows.registry import Registry
from aows.threads import torch_threads

Runner = Callable[[], float]


class BackendUnavailable(AowsError, RuntimeError):
    """The backend cannot run here (no GPU, runtime not installed)."""


class Backend:
    name = "base"

    def __init__(self, target: Target):
        self.target = target

    def prepare(self, model: nn.Module, input_shape: tuple[int, ...]) -> Runner:
        raise NotImplementedError

    def session(self):
        """Context in which runners are called: a backend that needs process-wide settings
        (torch-cpu's thread count) sets them on entry and restores them on exit, so that
        timing leaves the process as it found it."""
        return contextlib.nullcontext()

    def info(self) -> dict:
        return {
            "backend": self.name,
            "batch_size": self.target.batch_size,
            "dtype": self.target.dtype,
            "channels_last": self.target.channels_last,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
        }


BACKENDS: Registry = Registry("backend")


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Add a timing backend (a class decorator: registered under ``cls.name``)."""
    return BACKENDS.register(cls.name, cls)


def get_backend(target: Target, device: int = 0) -> Backend:
    """The backend ``target.backend`` names, for ``target``; on a remote target
    (``target.remote``), that backend on the target's device ``device``."""
    cls = BACKENDS.get(target.backend)
    if target.remote is not None:
        return RemoteBackend(target, devices(target)[device])
    return cls(target)


class RemoteBackend:
    """The backend of a remote device (``aows.latency.remote``): networks go to the
    target as ONNX; ``info`` is the target as its runner reports it."""

    def __init__(self, target, device: Device):
        if target.backend not in ("onnxruntime", "onnxruntime-cuda", "onnxruntime-trt",
                                  "openvino"):
            raise RemoteError(f"--remote times ONNX with the target's runtime: --backend "
                              "onnxruntime, onnxruntime-cuda, onnxruntime-trt or openvino, "
                              f"not {target.backend} (torch is not needed on the target)")
        self.target, self.device, self.name = target, device, target.backend
        device.connect()

    def session(self):
        return contextlib.nullcontext()

    def prepare(self, model, input_shape) -> RemoteNetwork:
        return RemoteNetwork(self.device, onnx_bytes(model, input_shape), input_shape)

    def info(self) -> dict:
        return {"backend": self.name, "batch_size": self.target.batch_size,
                "dtype": self.target.dtype, "channels_last": self.target.channels_last,
                "remote": True, **self.device.info}


@register_backend
class TorchCPU(Backend):
    """PyTorch eager on the CPU; the thread count is set and recorded."""

    name = "torch-cpu"

    def __init__(self, target: Target):
        super().__init__(target)
        if target.dtype != "fp32":
            raise AowsError("torch-cpu times fp32 only; use --dtype fp32")

    @contextlib.contextmanager
    def session(self):
        """torch's thread count is process-wide: set for the timing, restored after (left
        set, it slowed the supernet training that followed a latency stage to one core)."""
        with torch_threads(self.target.threads):
            yield

    def prepare(self, model, input_shape):
        model = model.eval()
        x = torch.randn(input_shape)
        if self.target.channels_last and x.dim() == 4:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)

        def run() -> float:
            with torch.inference_mode():
                t0 = time.perf_counter()
                model(x)
                return time.perf_counter() - t0
        return run

    def info(self):
        threads = self.target.threads or torch.get_num_threads()
        return {**super().info(), "threads": threads, "device": _cpu_name()}


@register_backend
class TorchCUDA(Backend):
    """PyTorch eager on a CUDA GPU, timed with CUDA events (fp32 or fp16)."""

    name = "torch-cuda"

    def __init__(self, target: Target):
        super().__init__(target)
        if not torch.cuda.is_available():
            raise BackendUnavailable("torch-cuda needs a CUDA GPU and a CUDA build of torch; "
                                     "none is available here (use --backend torch-cpu)")
        self.device = torch.device("cuda")

    def prepare(self, model, input_shape):
        dtype = torch.float16 if self.target.dtype == "fp16" else torch.float32
        model = model.eval().to(self.device, dtype)
        x = torch.randn(input_shape, device=self.device, dtype=dtype)
        if self.target.channels_last and x.dim() == 4:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def run() -> float:
            with torch.inference_mode():
                start.record()
                model(x)
                end.record()
                end.synchronize()
                return start.elapsed_time(end) / 1e3
        return run

    def info(self):
        return {**super().info(), "device": torch.cuda.get_device_name(0),
                "cuda": torch.version.cuda}


@register_backend
class OnnxRuntime(Backend):
    """ONNX Runtime with the best provider present: TensorRT, CUDA, or CPU.

    ``Target.backend`` "onnxruntime" picks CPU; "onnxruntime-cuda" and
    "onnxruntime-trt" ask for those providers and fail clearly where they are missing.
    """

    name = "onnxruntime"
    providers = ["CPUExecutionProvider"]

    def __init__(self, target: Target):
        super().__init__(target)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed: pip install "
                                     "'aows[onnx]' (or onnxruntime-gpu for GPUs)") from None
        self.ort = ort
        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailable(f"{self.name} needs ONNX Runtime providers {missing}; "
                                     f"available here: {ort.get_available_providers()}")

    def _session_options(self):
        so = self.ort.SessionOptions()
        so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.target.threads is not None:
            so.intra_op_num_threads = self.target.threads
        so.inter_op_num_threads = 1
        return so

    def _provider_list(self):
        return list(self.providers)

    def prepare(self, model, input_shape):
        data = onnx_bytes(model, input_shape)
        sess = self.ort.InferenceSession(data, self._session_options(),
                                         providers=self._provider_list())
        x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
        binding = sess.io_binding()
        binding.bind_cpu_input("input", x)
        for out in sess.get_outputs():  # every output (a detector's, a pyramid's), on its device
            binding.bind_output(out.name)

        def run() -> float:
            t0 = time.perf_counter()
            sess.run_with_iobinding(binding)
            return time.perf_counter() - t0
        return run

    def info(self):
        return {**super().info(), "onnxruntime": self.ort.__version__,
                "providers": self._provider_list(),
                "threads": self.target.threads, "device": _cpu_name()}


@register_backend
class OnnxRuntimeCUDA(OnnxRuntime):
    name = "onnxruntime-cuda"
    providers = ["CUDAExecutionProvider"]

    def info(self):
        return {**super().info(), "device": _gpu_name()}


@register_backend
class OnnxRuntimeTensorRT(OnnxRuntime):
    name = "onnxruntime-trt"
    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider"]

    def _provider_list(self):
        trt = ("TensorrtExecutionProvider",
               {"trt_fp16_enable": self.target.dtype == "fp16", "trt_engine_cache_enable": True})
        return [trt, "CUDAExecutionProvider"]

    def info(self):
        return {**super().info(), "device": _gpu_name()}


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def kept_altstack():
    """The calling thread's alternate signal stack as it was before the block.

    OpenVINO's CPU plugin (2024-2025) installs an alternate signal stack on the thread
    that first compiles a model, and puts back the one it saw when its core goes away:
    two cores released in another order than made leave the thread on a freed stack, and
    the next signal with a handler (Ctrl-C, a data loader's SIGCHLD) then kills the
    process with SIGSEGV (seen in aows's tests). Put back after every compile, the stack
    OpenVINO saw is always the caller's own, whatever order its cores go in. Where the C
    library has no ``sigaltstack`` (not Linux or macOS), nothing is done."""
    libc = _libc()
    if libc is None:
        yield
        return
    saved = _StackT()
    ok = libc.sigaltstack(None, ctypes.byref(saved)) == 0
    try:
        yield
    finally:
        if ok:
            libc.sigaltstack(ctypes.byref(saved), None)


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.sigaltstack  # noqa: B018 (present?)
        return libc
    except (OSError, AttributeError):
        return None


def _gpu_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cuda"


@register_backend
class OpenVINO(Backend):
    """Intel OpenVINO on the CPU, from the same ONNX export as ``onnxruntime``.

    One compiled model and infer request per network; the runner times one synchronous
    ``infer()``. ``--threads`` sets ``INFERENCE_NUM_THREADS``; ``--dtype fp32`` forces f32
    arithmetic, ``fp16`` asks for f16 and fails where the CPU cannot run it. The settings
    OpenVINO actually applied are read back from a compiled model and recorded by ``info``.
    The runner carries its infer request as ``run.request`` (to check outputs).
    """

    name = "openvino"
    device = "CPU"
    precisions = {"fp32": "f32", "fp16": "f16"}

    def __init__(self, target: Target):
        super().__init__(target)
        try:
            import openvino as ov
        except ImportError:
            raise BackendUnavailable("openvino is not installed: pip install "
                                     "'aows[openvino]'") from None
        try:  # torch's ONNX exporter, which the networks go through, needs it
            import onnx  # noqa: F401
        except ImportError:
            raise BackendUnavailable("openvino reads the networks as ONNX, and onnx is not "
                                     "installed: pip install 'aows[openvino]'") from None
        self.ov = ov
        with kept_altstack():  # loading the CPU plugin installs OpenVINO's signal stack
            self.core = ov.Core()
            caps = self.core.get_property(self.device, "OPTIMIZATION_CAPABILITIES")
            if target.dtype == "fp16" and "FP16" not in caps:
                raise AowsError(f"openvino cannot run f16 on this CPU ({self._device_name()}"
                                f": capabilities {caps}); use --dtype fp32")
            # Read the applied settings back from a one-convolution model compiled with
            # the same configuration: the sample file's header is written before any
            # network of the space is compiled, and a hint the CPU cannot honour is
            # dropped silently.
            self.applied = self._applied(self._compile(self._probe_model()))

    def _config(self) -> dict:
        config = {
            # One synchronous request at a time is what is timed: the LATENCY hint makes
            # OpenVINO spend every thread on that one request (THROUGHPUT splits the cores
            # into streams that only pay off with several requests in flight), and one
            # stream, set rather than left to the hint, keeps the configuration the same
            # on machines with several sockets or core types. Thread pinning stays at
            # OpenVINO's default (recorded): at 1 thread, MobileNet-v1 median at 128 px,
            # pinned and unpinned timed alike on this 2-core machine (median 4.76 / 4.74
            # ms idle, 5.80 / 5.76 ms beside another job), and no thread came out pinned.
            # These settings belong to the compiled model, not the process: no session().
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            # On CPUs with bf16 (AMX, AVX512-BF16) or f16 units OpenVINO otherwise runs an
            # f32 model in the lower precision by default: fp32 must mean f32 arithmetic.
            "INFERENCE_PRECISION_HINT": self.precisions[self.target.dtype],
        }
        if self.target.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.target.threads
        return config

    def _compile(self, model):
        with kept_altstack():  # OpenVINO's CPU plugin installs its own: see kept_altstack
            compiled = self.core.compile_model(model, self.device, self._config())
        applied, want = self._applied(compiled)["precision"], self.precisions[self.target.dtype]
        if applied != want:  # e.g. OpenVINO 2024.0 lists FP16 here, then compiles f32
            raise AowsError(f"openvino compiled the network in {applied}, not the {want} "
                            f"asked for by --dtype {self.target.dtype}"
                            + ("; use --dtype fp32" if want != "f32" else ""))
        return compiled

    def _applied(self, compiled) -> dict:
        get = compiled.get_property
        precision = get("INFERENCE_PRECISION_HINT")  # an ov.Type: "f32", "f16", "bf16"
        return {"threads": int(get("INFERENCE_NUM_THREADS")),
                "precision": precision.get_type_name(),
                "num_streams": int(get("NUM_STREAMS")),
                "performance_hint": str(get("PERFORMANCE_HINT")),
                "cpu_pinning": bool(get("ENABLE_CPU_PINNING"))}

    def _probe_model(self):
        # Through the ONNX path the networks take (opset modules moved between versions).
        return self.core.read_model(model=onnx_bytes(nn.Conv2d(3, 4, 3), (1, 3, 8, 8)))

    def _device_name(self) -> str:
        with kept_altstack():
            return str(self.core.get_property(self.device, "FULL_DEVICE_NAME"))

    def prepare(self, model, input_shape):
        # read_model takes the ONNX bytes directly (no temporary file).
        with kept_altstack():  # OpenVINO installs its signal stack again when it misses it
            compiled = self._compile(self.core.read_model(model=onnx_bytes(model,
                                                                           input_shape)))
            request = compiled.create_infer_request()
            x = np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)
            request.set_input_tensor(self.ov.Tensor(x))

        def run() -> float:
            with kept_altstack():  # put back after the timed call, outside it
                t0 = time.perf_counter()
                request.infer()
                return time.perf_counter() - t0
        run.request = request
        return run

    def info(self):
        return {**super().info(), "openvino": self.ov.__version__,
                "device": self._device_name(), **self.applied}
