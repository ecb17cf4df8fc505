"""The runner aows starts on a remote target (``--remote CMD``): it times ONNX networks
with the target's own runtime and answers with the raw timings.

It needs only Python 3, numpy and the runtime (onnxruntime or openvino) on the target:
aows sends this file's source through the command's standard input and the runner
reads it with ``exec`` (nothing is installed). It reads no pickles (messages are JSON
lines, network bytes follow a line that gives their length), and writes only under a
temporary folder of its own (a network's weights while its session is made, TensorRT's
engine cache) that it removes when it ends.

Latency does not depend on the weights' values, so aows sends each network's graph
without its weight tensors (a chunk of wide networks is hundreds of megabytes of them,
minutes over a slow link); the runner makes them here, of the same distribution as
torch's default initialisation (uniform, bound 1 / sqrt(fan-in)), in a file the graph
names as its external data, and removes the file once the session is made.

The protocol, one JSON line per message, each answer ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``:

- ``{"op": "init", "backend", "threads", "dtype", "batch_size"}``: loads the runtime;
  answers the target as it is (host, runtime and version, providers, CPU).
- ``{"op": "load", "id", "shape", "nbytes", "weights"}`` then ``nbytes`` of ONNX:
  prepares it. ``weights`` (optional): ``[offset, count, fan_in]`` per float32 tensor the
  graph keeps in its external data file ``weights.bin``, which the runner makes.
- ``{"op": "time", "ids", "warmup", "rounds", "runs", "orders", "free"}``: every
  network ``warmup`` times, then per round every network (in that round's order) ``runs``
  consecutive times; answers ``"seconds"``: per network, rounds x runs seconds. ``free``:
  ids to drop first.
- ``{"op": "held"}``: how many networks it holds; ``{"op": "bye"}``: ends (as does the
  end of its input, at once, even in the middle of a timing).
"""

import json
import os
import platform
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time

PROTOCOL = 1


def cpu_name():
    """The CPU's model name (aows's local backends record it the same way)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_name():
    """The first NVIDIA GPU's name as ``nvidia-smi`` reports it (the target has no torch),
    or "unknown GPU" where it cannot say."""
    import subprocess
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown GPU"
    names = [x.strip() for x in done.stdout.splitlines() if x.strip()]
    return names[0] if done.returncode == 0 and names else "unknown GPU"


WEIGHTS_FILE = "weights.bin"  # the external data file the graphs aows sends name


def materialise(data, weights, folder):
    """The ONNX file of ``data`` in ``folder`` with its external weights file made: each
    tensor uniform in +-1/sqrt(fan_in) (a fixed random block, tiled: fast, and the values
    do not matter to latency, only their being ordinary floats)."""
    import numpy as np
    os.makedirs(folder)
    block = np.random.default_rng(0).uniform(-1.0, 1.0, 1 << 16).astype(np.float32)
    with open(os.path.join(folder, WEIGHTS_FILE), "wb") as f:
        for offset, count, fan_in in weights:
            f.seek(offset)
            f.write((np.resize(block, count) / np.float32(max(fan_in, 1) ** 0.5)).tobytes())
    path = os.path.join(folder, "model.onnx")
    with open(path, "wb") as f:
        f.write(data)
    return path


class OnnxRuntime:
    providers = {"onnxruntime": ["CPUExecutionProvider"],
                 "onnxruntime-cuda": ["CUDAExecutionProvider"],
                 "onnxruntime-trt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"]}

    def __init__(self, cfg, tmp):
        import onnxruntime as ort
        self.ort, self.cfg = ort, cfg
        want = self.providers[cfg["backend"]]
        missing = [p for p in want if p not in ort.get_available_providers()]
        if missing:
            raise RuntimeError(f"ONNX Runtime on the target lacks providers {missing} "
                               f"(it has {ort.get_available_providers()})")
        self.list = list(want)
        if cfg["backend"] == "onnxruntime-trt":
            self.list[0] = ("TensorrtExecutionProvider",
                            {"trt_fp16_enable": cfg["dtype"] == "fp16",
                             "trt_engine_cache_enable": True, "trt_engine_cache_path": tmp})

    def prepare(self, data, x):
        so = self.ort.SessionOptions()
        so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.cfg.get("threads"):
            so.intra_op_num_threads = int(self.cfg["threads"])
        so.inter_op_num_threads = 1
        sess = self.ort.InferenceSession(data, so, providers=self.list)
        binding = sess.io_binding()
        binding.bind_cpu_input(sess.get_inputs()[0].name, x)
        for out in sess.get_outputs():  # every output (a detector's, a pyramid's)
            binding.bind_output(out.name)

        def run():
            t0 = time.perf_counter()
            sess.run_with_iobinding(binding)
            return time.perf_counter() - t0
        return run

    def info(self):
        info = {"runtime": "onnxruntime", "onnxruntime": self.ort.__version__,
                "providers": [p if isinstance(p, str) else p[0] for p in self.list],
                "threads": self.cfg.get("threads")}
        if self.cfg["backend"] != "onnxruntime":  # a GPU provider: name the GPU
            info["device"] = gpu_name()
        return info


class OpenVINO:
    precisions = {"fp32": "f32", "fp16": "f16"}

    def __init__(self, cfg, tmp):
        import openvino as ov
        self.ov, self.cfg, self.core = ov, cfg, ov.Core()
        self.config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                       "INFERENCE_PRECISION_HINT": self.precisions[cfg["dtype"]]}
        if cfg.get("threads"):
            self.config["INFERENCE_NUM_THREADS"] = int(cfg["threads"])

    def prepare(self, data, x):
        compiled = self.core.compile_model(self.core.read_model(model=data), "CPU",
                                           self.config)
        self.applied = self._applied(compiled)
        want = self.precisions[self.cfg["dtype"]]
        if self.applied["precision"] != want:  # a hint the CPU cannot honour is dropped
            raise RuntimeError(f"openvino compiled the network in "
                               f"{self.applied['precision']}, not the {want} asked for by "
                               f"--dtype {self.cfg['dtype']}")
        request = compiled.create_infer_request()
        request.set_input_tensor(self.ov.Tensor(x))

        def run():
            t0 = time.perf_counter()
            request.infer()
            return time.perf_counter() - t0
        return run

    @staticmethod
    def _applied(compiled):
        get = compiled.get_property
        return {"threads": int(get("INFERENCE_NUM_THREADS")),
                "precision": get("INFERENCE_PRECISION_HINT").get_type_name(),
                "num_streams": int(get("NUM_STREAMS")),
                "performance_hint": str(get("PERFORMANCE_HINT"))}

    def info(self):
        # the settings OpenVINO applies, read back from a one-convolution model compiled
        # with this configuration (as the local backend records them)
        import numpy as np
        ov = self.ov
        x = ov.opset8.parameter([1, 3, 8, 8], np.float32)
        w = ov.opset8.constant(np.zeros((4, 3, 3, 3), np.float32))
        conv = ov.opset8.convolution(x, w, [1, 1], [0, 0], [0, 0], [1, 1])
        applied = self._applied(self.core.compile_model(ov.Model([conv], [x]), "CPU",
                                                        self.config))
        return {"runtime": "openvino", "openvino": ov.__version__,
                "device": str(self.core.get_property("CPU", "FULL_DEVICE_NAME")),
                **applied}


RUNTIMES = {"onnxruntime": OnnxRuntime, "onnxruntime-cuda": OnnxRuntime,
            "onnxruntime-trt": OnnxRuntime, "openvino": OpenVINO}
INSTALL = {"onnxruntime": "onnxruntime", "onnxruntime-cuda": "onnxruntime-gpu",
           "onnxruntime-trt": "onnxruntime-gpu (with TensorRT)", "openvino": "openvino"}


def read_messages(inp, messages, tmp):
    """Read requests into ``messages`` until the input ends, then end the process at once,
    even in the middle of a timing: the input ends when aows stops or is gone."""
    try:
        while True:
            line = inp.readline()
            if not line:
                break
            msg = json.loads(line)
            n = int(msg.get("nbytes") or 0)
            messages.put((msg, inp.read(n) if n else b""))
    except Exception:  # a torn request: aows is gone
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    os._exit(0)


def serve(inp, out):
    def send(obj):
        out.write((json.dumps(obj) + "\n").encode())
        out.flush()

    tmp = tempfile.mkdtemp(prefix="aows-runner-")
    messages = queue.Queue()
    threading.Thread(target=read_messages, args=(inp, messages, tmp), daemon=True).start()
    runtime, runners = None, {}
    try:
        while True:
            msg, data = messages.get()
            op = msg.get("op")
            try:
                if op == "bye":
                    send({"ok": True})
                    return
                if op == "held":  # how many networks it holds (networks are freed)
                    send({"ok": True, "held": len(runners)})
                    continue
                if op == "init":
                    try:
                        import numpy  # noqa: F401
                    except ImportError:
                        send({"ok": False, "missing": "numpy", "error": "numpy is not "
                              "installed on the target: pip install numpy there"})
                        continue
                    backend = msg["backend"]
                    if backend not in RUNTIMES:
                        send({"ok": False, "error": f"the remote runner times ONNX with "
                              f"{sorted(RUNTIMES)}, not '{backend}'"})
                        continue
                    try:
                        runtime = RUNTIMES[backend](msg, tmp)
                    except ImportError:
                        send({"ok": False, "missing": INSTALL[backend], "error":
                              f"{INSTALL[backend]} is not installed for {sys.executable} "
                              f"on the target: pip install {INSTALL[backend].split()[0]} "
                              "there (or name another Python with --remote-python)"})
                        continue
                    send({"ok": True, "protocol": PROTOCOL, "host": socket.gethostname(),
                          "python": platform.python_version(),
                          "machine": platform.machine(), "cpu": cpu_name(),
                          "cpu_count": os.cpu_count(), **runtime.info()})
                elif op == "load":
                    import numpy as np
                    x = np.random.default_rng(0).standard_normal(msg["shape"]).astype(
                        np.float32)
                    if msg.get("weights") is None:  # the graph holds its weights
                        runners[msg["id"]] = runtime.prepare(data, x)
                    else:
                        folder = os.path.join(tmp, f"net{msg['id']}")
                        try:
                            runners[msg["id"]] = runtime.prepare(
                                materialise(data, msg["weights"], folder), x)
                        finally:
                            shutil.rmtree(folder, ignore_errors=True)
                    send({"ok": True})
                elif op == "time":
                    for k in msg.get("free", []):
                        runners.pop(k, None)
                    ids = msg["ids"]
                    warmup, rounds, runs = msg["warmup"], msg["rounds"], msg["runs"]
                    seconds = [[0.0] * (rounds * runs) for _ in ids]
                    for k in ids:
                        for _ in range(warmup):
                            runners[k]()
                    for r, order in enumerate(msg["orders"]):
                        for i in order:
                            run = runners[ids[i]]
                            for j in range(runs):
                                seconds[i][r * runs + j] = run()
                    send({"ok": True, "seconds": seconds})
                else:
                    send({"ok": False, "error": f"unknown op {op!r}"})
            except Exception as err:  # reported to aows, which names the target
                send({"ok": False, "error": f"{type(err).__name__}: {err}"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    # the protocol keeps standard output to itself: whatever a runtime prints there
    # (native libraries write to file descriptor 1) goes to standard error instead
    protocol_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, protocol_out)
