"""Timing on another machine (``--remote CMD``): one device, or a fleet of identical ones.

``CMD`` is a command prefix that runs a program on the target (``ssh user@jetson``,
``docker exec -i box``, ``kubectl exec -i pod --``). aows starts its runner there
(``aows.latency.remote_runner``: Python 3, numpy and the runtime are all the target
needs; its source goes through the command's standard input) and sends it each chunk's
networks as ONNX; the runner times them with the target's runtime and answers with the
raw timings, which aows reduces as it does local ones. The protocol is the local one
(``aows.latency.protocol``): warm-up, interleaved rounds in orders drawn here, the
anchor network in every chunk, retiming of disturbed chunks, the chunk fill.

A chunk is the unit of work: a dropped connection or a runner that dies is restarted
and the chunk timed again (``retries`` times); a chunk that takes longer than
``timeout`` seconds is a hung target, stopped and retried the same way; after the last
retry it is one clear error, and every chunk written before it is kept (a rerun
resumes). Credentials stay in the user's ``CMD``: aows records the target as the runner
reports it (host, runtime, CPU), never the command.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import os
import selectors
import shlex
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aows.errors import AowsError
from aows.latency.defaults import REMOTE_RETRIES, REMOTE_TIMEOUT
from aows.latency.remote_runner import WEIGHTS_FILE

__all__ = ["Remote", "RemoteError", "Device", "RemoteNetwork", "connected", "devices"]

log = logging.getLogger(__name__)

RUNNER = Path(__file__).with_name("remote_runner.py")
# the first path entry of `python -c` is the working directory on the target: a stray
# numpy.py there must not shadow the real one
BOOTSTRAP = "import sys;sys.path.pop(0);b=sys.stdin.buffer;exec(b.read(int(b.readline())))"


class RemoteError(AowsError):
    """The remote target cannot time (refused, unreachable after retries, wrong answer)."""


class _Lost(Exception):
    """The connection died or timed out: the chunk is retried on a fresh one."""


@dataclass(frozen=True)
class Remote:
    """Where and how to reach the target(s).

    Args:
        commands: one command prefix per device (several: a fleet of identical devices).
        python: the target's Python interpreter.
        timeout: seconds one chunk (or the start) may take before the target counts as
            hung.
        retries: times a chunk is retried on a fresh connection after a dropped or hung
            one.
        shell: the command runs its program through a remote shell (ssh does: the
            runner's command line is then quoted for it); None: ssh yes, others no.
    """

    commands: tuple[tuple[str, ...], ...]
    python: str = "python3"
    timeout: float = REMOTE_TIMEOUT
    retries: int = REMOTE_RETRIES
    shell: bool | None = None

    @classmethod
    def parse(cls, commands, **kw) -> Remote:
        """From the command lines a user gave (strings, split like a shell does)."""
        cmds = []
        for c in commands:
            argv = tuple(shlex.split(c)) if isinstance(c, str) else tuple(c)
            if not argv:
                raise RemoteError("--remote needs a command, e.g. --remote 'ssh user@host'")
            cmds.append(argv)
        return cls(tuple(cmds), **{k: v for k, v in kw.items() if v is not None})

    def argv(self, k: int) -> list[str]:
        """The command line that starts the runner on device ``k``."""
        cmd = list(self.commands[k])
        runner = [self.python, "-u", "-c", BOOTSTRAP]
        shell = self.shell if self.shell is not None else \
            os.path.basename(cmd[0]).startswith("ssh")
        return cmd + ([" ".join(shlex.quote(a) for a in runner)] if shell else runner)


class Device:
    """One target device: its runner process, the networks loaded on it, the protocol."""

    def __init__(self, remote: Remote, k: int, init: dict):
        self.remote, self.k, self.init = remote, k, init
        self.name = f"device {k + 1} ({' '.join(remote.commands[k])})"
        self.proc = None
        self.info: dict = {}
        self.loaded: set[int] = set()
        self.free: list[int] = []  # ids of dropped networks, freed on the target next
        self._free_lock = threading.Lock()
        self.pending = 0  # answers owed for networks sent ahead (``send_ahead``)
        self._buf = b""
        self._err = collections.deque(maxlen=20)
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ process
    def start(self) -> None:
        argv = self.remote.argv(self.k)
        try:  # its own session: a Ctrl-C of aows reaches aows, which stops it cleanly
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0,
                                         start_new_session=True)
        except OSError as err:
            raise RemoteError(f"--remote {' '.join(self.remote.commands[self.k])}: cannot "
                              f"run {argv[0]} ({err.strerror})") from None
        self._buf, self.loaded, self.pending = b"", set(), 0
        self._err = collections.deque(maxlen=20)
        os.set_blocking(self.proc.stdin.fileno(), False)  # writes wait with a deadline
        threading.Thread(target=self._drain, args=(self.proc, self._err),
                         daemon=True).start()
        source = RUNNER.read_bytes()
        self._write(f"{len(source)}\n".encode() + source)
        answer = self._ask({"op": "init", **self.init})
        if answer.get("protocol") != 1:
            raise RemoteError(f"{self.name}: the runner answered protocol "
                              f"{answer.get('protocol')!r}, not 1")
        self.info = {k: v for k, v in answer.items() if k != "ok"}

    def stop(self) -> None:
        """End the runner: its input closed (the runner exits at the end of its input,
        even while it times), then the command's whole process group killed if it has not
        ended within 1 s."""
        proc, self.proc, self.pending = self.proc, None, 0
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, 9)
            except OSError:
                proc.kill()
            proc.wait()
        proc.stdout.close()  # stderr: its drain thread closes it at its end

    @staticmethod
    def _drain(proc, lines) -> None:
        try:
            for line in iter(proc.stderr.readline, b""):
                lines.append(line.decode(errors="replace").rstrip())
        except (ValueError, OSError):
            pass
        finally:
            proc.stderr.close()

    def held(self) -> int:
        """How many networks the runner holds (those of the chunk in hand and the anchor;
        dropped ones are freed with the next chunk)."""
        with self.lock:
            return self._ask({"op": "held"})["held"]

    def queue_free(self, k: int) -> None:
        """A network dropped here: freed on the target with the next chunk."""
        with self._free_lock:
            self.free.append(k)

    def _stderr(self) -> str:
        time.sleep(0.05)  # the drain thread's last lines
        lines = [x for x in self._err if x.strip()]
        return f" (its stderr: {' | '.join(lines[-3:])[:400]})" if lines else ""

    # ------------------------------------------------------------------ messages
    def _write(self, data: bytes) -> None:
        """All of ``data``, within the timeout: a target that stops reading is a hung one."""
        deadline = time.monotonic() + self.remote.timeout
        view = memoryview(data)
        try:
            fd = self.proc.stdin.fileno()
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_WRITE)
                while view:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _Lost(f"{self.name}: the target took nothing in "
                                    f"{self.remote.timeout:g} s (--remote-timeout): it hangs "
                                    "or is too slow")
                    if sel.select(left):
                        try:
                            view = view[os.write(fd, view):]
                        except BlockingIOError:
                            continue
        except (BrokenPipeError, OSError, ValueError, AttributeError):
            raise _Lost(f"{self.name}: the connection closed{self._stderr()}") from None

    def _line(self) -> bytes:
        """The next answer line, within the timeout (counted from now: each answer, e.g.
        each network's session on a slow TensorRT target, has its own)."""
        deadline = time.monotonic() + self.remote.timeout
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                sel.close()
                raise _Lost(f"{self.name}: no answer within {self.remote.timeout:g} s "
                            "(--remote-timeout): the target hangs or is too slow")
            if not sel.select(left):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                code = self.proc.poll()
                raise _Lost(f"{self.name}: the runner ended"
                            + (f" with exit code {code}" if code is not None else "")
                            + self._stderr())
            self._buf += chunk
        sel.close()
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _ask(self, msg: dict, payload: bytes = b"") -> dict:
        if payload:
            msg = {**msg, "nbytes": len(payload)}
        self._write(json.dumps(msg).encode() + b"\n" + payload)
        while self.pending:  # the answers to networks sent ahead come first, in order
            self.pending -= 1
            self._answer(self._line())
        return self._answer(self._line())

    def send_ahead(self, handle) -> None:
        """Send a network to load while this process prepares the next one (its answer is
        read before the next request's): the target builds its session meanwhile. On a
        connection that is not up, nothing: the chunk loads it."""
        with self.lock:
            if self.proc is None or handle.id in self.loaded:
                return
            try:
                self._write(json.dumps({"op": "load", "id": handle.id,
                                        "shape": list(handle.shape),
                                        "nbytes": len(handle.onnx),
                                        "weights": handle.weights}).encode()
                            + b"\n" + handle.onnx)
            except _Lost as err:
                log.warning(f"{err}; the chunk starts it again on a fresh connection")
                self.stop()  # the next chunk starts it again, and retries
                return
            self.loaded.add(handle.id)
            self.pending += 1

    def _answer(self, line: bytes) -> dict:
        try:
            answer = json.loads(line)
            if not isinstance(answer, dict) or "ok" not in answer:
                raise ValueError
        except ValueError:
            raise RemoteError(f"{self.name} answered something that is not the aows runner's "
                              f"protocol: {line[:120].decode(errors='replace')!r}; the "
                              "command must run the program it is given on the target and "
                              "pass its input and output through unchanged (no banner on "
                              "standard output)") from None
        if not answer["ok"]:
            raise RemoteError(f"{self.name}: {answer.get('error', 'refused')}")
        return answer

    # ------------------------------------------------------------------ timing
    def connect(self) -> None:
        """Start the runner (retried like a chunk) unless it runs."""
        self._retried(lambda: None, "starting the runner")

    def time_chunk(self, handles, warmup: int, rounds: int, runs: int, orders) -> np.ndarray:
        """Seconds (networks x rounds*runs) of one chunk, retried on a fresh connection
        after a dropped or hung one."""
        def chunk():
            for h in handles:
                if h.id not in self.loaded:
                    self._ask({"op": "load", "id": h.id, "shape": list(h.shape),
                               "weights": h.weights}, h.onnx)
                    self.loaded.add(h.id)
            with self._free_lock:
                dropped, self.free = self.free, []
            free = [k for k in dropped if k in self.loaded]
            self.loaded -= set(free)
            answer = self._ask({"op": "time", "ids": [h.id for h in handles],
                                "warmup": warmup, "rounds": rounds, "runs": runs,
                                "orders": [list(map(int, o)) for o in orders],
                                "free": free})
            return np.asarray(answer["seconds"], dtype=np.float64)
        return self._retried(chunk, "timing the chunk")

    def _retried(self, work, what: str):
        with self.lock:
            for attempt in range(self.remote.retries + 1):
                try:
                    if self.proc is None:
                        self.start()
                    return work()
                except _Lost as err:
                    self.stop()
                    if attempt == self.remote.retries:
                        raise RemoteError(
                            f"{err}; gave up after {attempt + 1} attempt"
                            f"{'s' * (attempt > 0)} (--remote-retries {self.remote.retries})"
                            ". Every chunk timed before is kept: run the same command again "
                            "to resume") from None
                    log.warning(f"{err}; {what} again on a fresh connection "
                                f"({attempt + 1}/{self.remote.retries})")
                except BaseException:
                    self.stop()
                    raise


WEIGHT_MIN_BYTES = 4096  # float tensors of 2+ dims at least this large travel as shapes
ALIGN = 4096  # offsets in the weights file: page-aligned, as memory-mapped loaders want


def split_weights(data: bytes) -> tuple[bytes, list | None]:
    """The ONNX graph ``data`` without the values of its weight tensors (float32, two or
    more dims, ``WEIGHT_MIN_BYTES`` or more: convolutions' and linear layers'), which it
    names as external data in the runner's weights file instead, and per tensor
    ``[offset, count, fan_in]`` for the runner to make them (``remote_runner``). Vectors
    (BatchNorm statistics, biases) and small tensors keep their values. Without the onnx
    package: the graph as it is and None."""
    try:
        import onnx
    except ImportError:
        return data, None
    model = onnx.load_from_string(data)
    entries, offset = [], 0
    for t in model.graph.initializer:
        if (t.data_type != onnx.TensorProto.FLOAT or len(t.dims) < 2
                or len(t.raw_data) < WEIGHT_MIN_BYTES):
            continue
        count = len(t.raw_data) // 4
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        for key, value in (("location", WEIGHTS_FILE), ("offset", str(offset)),
                           ("length", str(4 * count))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        entries.append([offset, count, int(np.prod(t.dims[1:]))])
        offset += -(-4 * count // ALIGN) * ALIGN
    return model.SerializeToString(), entries


class RemoteNetwork:
    """A network prepared for a remote device: its ONNX graph (``split_weights``: the
    weights are made there), loaded there on first use (and again on a fresh
    connection), dropped there when this handle is."""

    _next = 0
    _ids = threading.Lock()

    def __init__(self, device: Device, onnx: bytes, shape):
        with RemoteNetwork._ids:
            RemoteNetwork._next += 1
            self.id = RemoteNetwork._next
        self.onnx, self.weights = split_weights(onnx)  # the graph; its weights made there
        self.device, self.shape = device, tuple(shape)
        weakref.finalize(self, device.queue_free, self.id)
        device.send_ahead(self)

    def time_chunk(self, handles, protocol, orders) -> np.ndarray:
        """The remote hook of ``aows.latency.protocol.time_runners``."""
        return self.device.time_chunk(handles, protocol.warmup, protocol.rounds,
                                      protocol.runs, orders)

    def __call__(self) -> float:
        raise AowsError("a remote network is timed in chunks on its target, not one call "
                        "at a time")


_DEVICES: dict[tuple, list] = {}  # key -> [devices, holds]
_DEVICES_LOCK = threading.Lock()


def _key(target) -> tuple:
    init = {"backend": target.backend, "threads": target.threads, "dtype": target.dtype,
            "batch_size": target.batch_size}
    return target.remote, tuple(sorted(init.items())), init


def devices(target) -> list[Device]:
    """The devices of ``target.remote``: their runners start on first use and stop when
    the outermost ``connected(target)`` ends (or at exit)."""
    remote, key, init = _key(target)
    with _DEVICES_LOCK:
        if (remote, key) not in _DEVICES:
            _DEVICES[remote, key] = [[Device(remote, k, init)
                                      for k in range(len(remote.commands))], 0]
        return _DEVICES[remote, key][0]


@contextlib.contextmanager
def connected(target):
    """Keep the runners of ``target.remote`` for the block (nested blocks share them);
    the outermost block stops them: a library call leaves no process behind."""
    if getattr(target, "remote", None) is None:
        yield None
        return
    remote, key, _ = _key(target)
    devs = devices(target)
    with _DEVICES_LOCK:
        _DEVICES[remote, key][1] += 1
    try:
        yield devs
    finally:
        with _DEVICES_LOCK:
            entry = _DEVICES[remote, key]
            entry[1] -= 1
            last = entry[1] == 0
            if last:
                del _DEVICES[remote, key]
        if last:
            for d in devs:
                d.stop()


def stop_all() -> None:
    """Stop every runner this process started (at exit)."""
    with _DEVICES_LOCK:
        entries = list(_DEVICES.values())
        _DEVICES.clear()
    for devs, _ in entries:
        for d in devs:
            d.stop()


atexit.register(stop_all)
