"""Time networks of a search space on a target: collect samples, re-time, benchmark."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from aows.errors import AowsError
from aows.latency.backends import Target, get_backend
from aows.latency.defaults import DEFAULT_SAMPLER
from aows.latency.protocol import AnchoredTimer, Protocol
from aows.latency.remote import connected
from aows.latency.sampling import BiasedSampler, cover_then_uniform, uniform_configs
from aows.latency.store import SampleWriter
from aows.lock import hold_lock
from aows.nn import build_network
from aows.space import SearchSpace


def input_shape(space: SearchSpace, batch: int) -> tuple[int, ...]:
    return space.input_shape(batch)


class Timer:
    """Times configurations of a space on a target with the anchored protocol."""

    def __init__(self, space: SearchSpace, target: Target, protocol: Protocol,
                 anchor_min_ms: float = float("inf"), device: int = 0):
        self.space, self.target, self.protocol = space, target, protocol
        self.backend = get_backend(target, device)  # device: of a remote fleet
        self.shape = input_shape(space, target.batch_size)
        anchor = self.prepare(space.median_config()) if protocol.anchor else None
        self.timer = AnchoredTimer(protocol, anchor,
                                   anchor_min_ms * target.batch_size / 1e3)

    def prepare(self, config):
        return self.backend.prepare(build_network(self.space, config), self.shape)

    def time(self, configs: Sequence[Sequence[int]], rng: np.random.Generator
             ) -> tuple[np.ndarray, float | None]:
        """ms per image of every configuration (one interleaved chunk) and of the anchor."""
        return self.measure([self.prepare(c) for c in configs], rng)

    def measure(self, runners, rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
        """ms per image of prepared runners (one interleaved chunk) and of the anchor."""
        secs, anchor = self.run(runners, rng)
        scale = 1e3 / self.target.batch_size
        return secs * scale, (None if anchor is None else anchor * scale)

    def run(self, runners, rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
        """Seconds per call of every runner and of the anchor (one interleaved chunk),
        inside the backend's session (process settings restored afterwards)."""
        with self.backend.session():
            return self.timer(runners, rng)


def time_configs(space: SearchSpace, configs: Sequence[Sequence[int]], target: Target,
                 protocol: Protocol, seed: int = 0, with_anchor: bool = False,
                 anchor_min_ms: float = float("inf"), fill: bool = False,
                 timer: Timer | None = None):
    """ms per image of configurations, in chunks of ``protocol.chunk``; with
    ``with_anchor`` also the anchor's ms of each configuration's chunk (None if off).

    To time networks as a sample file's were (refinement, a final check), give
    ``anchor_min_ms``, the file's fastest anchor: a chunk whose anchor comes out more
    than the protocol's tolerance above it was disturbed and is timed again. Without it
    the first chunk sets the bar, and a chunk timed under load is kept as it came
    (measured in ``aows latency refine``: the anchors of such chunks ranged from 0.86 to
    1.31 times the samples' median, and the picks' two timings differed by 34 % NRMSE).
    ``fill`` fills a short last chunk up to ``protocol.chunk`` with uniformly drawn
    networks of the space (timed, discarded), so caches and interleaving are as in
    the file's chunks. ``timer``: a ``Timer`` of an earlier call to carry on with (its
    anchor network and bar, ``anchor_min_ms`` then unused).
    """
    with connected(target):  # a remote target's runners, stopped after
        return _time_configs(space, configs, target, protocol, seed, with_anchor,
                             anchor_min_ms, fill, timer)


def _time_configs(space, configs, target, protocol, seed, with_anchor, anchor_min_ms, fill,
                  timer):
    timer = timer or Timer(space, target, protocol, anchor_min_ms)
    out, anchors = [], []
    for k in range(0, len(configs), protocol.chunk):
        chunk = list(configs[k:k + protocol.chunk])
        rng = np.random.default_rng([seed, k])
        n_fill = protocol.chunk - len(chunk) if fill else 0
        ms, anchor = timer.time(chunk + space.uniform_sample(rng, n_fill), rng)
        out.append(ms[:len(chunk)])
        anchors += [anchor] * len(chunk)
    ms = np.concatenate(out) if out else np.zeros(0)
    return (ms, anchors) if with_anchor else ms


def target_record(target: Target, backend) -> dict:
    """What a sample file, model or measurement records of its target: the backend's own
    account (``info()``), whose thread count is the one in effect (torch's default when
    ``--threads`` was not given) where the backend can tell, else the one asked for;
    ``threads_default`` says whether it was left to the backend."""
    info = backend.info()
    return {**info, "threads": info.get("threads") or target.threads,
            "threads_default": target.threads is None}


def header(space: SearchSpace, target: Target, protocol: Protocol, backend) -> dict:
    return {"aows": "samples", "version": 1, "space": space.describe(),
            "target": target_record(target, backend),
            "protocol": protocol.asdict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def target_of(samples, remote=None) -> tuple[Target, Protocol]:
    """The target and protocol a sample file was timed with (from its header, the
    inverse of ``header``); ``remote``: how to reach it again, for a file timed through
    ``--remote`` (which records the target as it is, never the command)."""
    h = samples.header
    if h is None or "target" not in h or not h.get("protocol"):
        raise AowsError(f"{samples.path} has no aows header with its target and protocol "
                        "(reference layout?): new networks are timed the same way, so this "
                        "needs a file written by `aows latency generate`")
    return (target_from_record(h["target"], remote, str(samples.path)),
            Protocol.from_record(h["protocol"]))


def target_from_record(record: dict, remote=None, where: str = "the file") -> Target:
    """The target a file records, reached through ``remote`` when it was a remote one;
    a remote target without ``remote``, or a local one with it, is one clear error."""
    if record.get("remote") and remote is None:
        raise AowsError(f"{where} was timed on another machine ({record.get('host')}, "
                        f"{record.get('backend')}): give --remote CMD to time there again")
    if remote is not None and not record.get("remote"):
        raise AowsError(f"{where} was timed on this machine, not through --remote: leave "
                        "--remote out, or time a new file on the target")
    return dataclasses.replace(Target.from_record(record), remote=remote)


def collect(space: SearchSpace, target: Target, protocol: Protocol, path, count: int,
            sampler: str = DEFAULT_SAMPLER, configs: Sequence[Sequence[int]] | None = None,
            seed: int = 0, progress: bool = True,
            should_stop: Callable[[], bool] | None = None,
            anchor_min_ms: float = float("inf")) -> int:
    """Time networks until ``path`` holds ``count`` records (resumes an existing file).

    Args:
        space: the search space the networks are drawn from.
        target: where to time (recorded in the file's header; an existing file of
            another target, protocol or space is refused).
        protocol: how to time.
        path: the JSONL sample file.
        count: records the file must hold at the end.
        sampler: "biased" (the AOWS supplementary, section A), "cover" (biased until
            every unknown is covered, then uniform), both after the widest and the
            narrowest networks, "uniform", or "given" (time ``configs`` in order,
            e.g. to re-time another file's networks for a test-retest noise floor).
        configs: the networks of sampler "given".
        seed: seed of the sampler and of the round orders.
        progress: show a progress bar (stderr).
        should_stop: polled between chunks; a raised flag ends the call early, with
            every chunk timed so far in the file.
        anchor_min_ms: the fastest anchor of another file timed on the same target (a
            retest of it), so that its first chunks are checked for load too; the
            file's own anchors count as well.

    Returns:
        The number of networks timed by this call.

    The file is locked for the call (``aows.lock``): another process writing it is an
    error naming its PID, and this call changes nothing then.
    """
    with hold_lock(path, "sample file"), connected(target):  # one writer per file
        return _collect(space, target, protocol, path, count, sampler, configs, seed,
                        progress, should_stop, anchor_min_ms)


def _collect(space, target, protocol, path, count, sampler, configs, seed, progress,
             should_stop, anchor_min_ms) -> int:
    probe = get_backend(target)
    fleet = len(target.remote.commands) if target.remote is not None else 1
    head = header(space, target, protocol, probe)
    if fleet > 1:  # every device as its runner reports it; records name theirs by index
        head["target"]["fleet"] = [target_record(target, get_backend(target, k))
                                   for k in range(fleet)]
    writer = SampleWriter(path, head)
    done = len(writer.existing)
    timers = []
    for k in range(fleet):  # per device: its own anchor and bar (devices differ a little)
        mine = writer.existing.anchors_of(k)
        timers.append(Timer(space, target, protocol, min([*mine, anchor_min_ms]), k))
    if sampler in ("biased", "cover"):
        state = BiasedSampler(space, writer.existing.configs)
    elif sampler == "given":
        if configs is None:
            raise ValueError("sampler 'given' needs configs")
        configs = [space.validate(c) for c in configs]
        count = min(count, len(configs))
    elif sampler != "uniform":
        raise ValueError(f"unknown sampler '{sampler}' (biased | cover | uniform | given)")
    # a training set starts with the widest and the narrowest networks: the widest is
    # the user's own model in a model's space, so what the latency model predicts for it
    # rests on a timing of it, and the two ends of the range are never extrapolated
    extremes = ([space.widest(), space.narrowest()]
                if sampler in ("biased", "cover") else [])
    todo = count - done
    if todo <= 0:
        return 0
    bar = tqdm(total=count, initial=done, unit="net", desc=f"timing {sampler}",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    timed = 0
    while done < count and not (should_stop is not None and should_stop()):
        # the next chunk of every device (a fleet times them at once), drawn in order
        chunks, at = [], done
        for _ in range(fleet):
            n = min(protocol.chunk, count - at)
            if n <= 0:
                break
            head = extremes[at:n + at]  # those not yet written
            for c in head:
                state.update(c)
            if sampler == "biased":
                chunk = head + [state.next() for _ in range(n - len(head))]
            elif sampler == "cover":
                chunk = head + cover_then_uniform(state, n - len(head), seed,
                                                  offset=at + len(head))
            elif sampler == "uniform":
                chunk = uniform_configs(space, n, seed, offset=at)
            else:
                chunk = list(configs[at:at + n])
            chunks.append((at, chunk))
            at += n
        results = _time_chunks(timers, chunks, protocol)
        for k, ((_, chunk), (ms, anchor)) in enumerate(zip(chunks, results)):
            extra = {"anchor_ms": anchor}
            if fleet > 1:
                extra["device"] = k
            writer.append(chunk, ms, sampler, extra)  # in order: a rerun resumes here
            done += len(chunk)
            timed += len(chunk)
            bar.update(len(chunk))
        bar.set_postfix(ms=f"{np.median(results[-1][0]):.2f}",
                        anchor=f"{results[-1][1] or 0:.2f}",
                        retimed=sum(t.timer.retimed for t in timers))
    bar.close()
    return timed


def _time_chunks(timers: list[Timer], chunks, protocol: Protocol) -> list:
    """Time chunk k on device k, all at once (one thread each: the devices do the work,
    this process waits on their answers); (ms per image, anchor ms) of each chunk."""
    if len(chunks) == 1:
        start, chunk = chunks[0]
        return [timers[0].time(chunk, np.random.default_rng([protocol.seed, start]))]
    # built and exported here, one after the other (torch's ONNX export is not
    # thread-safe), and sent ahead to their devices, which build their sessions
    # meanwhile; then every device times its chunk at once, never while this process
    # exports (on a stand-in fleet sharing this machine's cores that disturbed the
    # timings: 200 networks took 1.25x one device's time instead of 0.64-0.76x,
    # benchmarks/remote.py); only the waiting on the devices runs in threads
    runners = [[timers[k].prepare(c) for c in chunk] for k, (_, chunk) in enumerate(chunks)]
    with ThreadPoolExecutor(len(chunks)) as pool:
        futures = [pool.submit(timers[k].measure, runners[k],
                               np.random.default_rng([protocol.seed, start]))
                   for k, (start, _) in enumerate(chunks)]
        return [f.result() for f in futures]


def collect_interleaved(space: SearchSpace, target: Target, protocol: Protocol, plan,
                        blocks: int, progress: bool = True, between=None,
                        should_stop: Callable[[], bool] | None = None) -> None:
    """Collect several sample files in alternating blocks, so that all of them are timed
    over the same period: a shared machine drifts by a few % over minutes, and timing a
    training set in one period and its held-out set in another would charge that drift
    to the model. ``plan``: list of (path, count, sampler, extra kwargs of ``collect``).
    ``between(b)`` is called after block b (1-based). Resumable like ``collect``; every
    file of the plan is locked for the whole call.
    """
    with contextlib.ExitStack() as stack:
        for path, *_ in plan:
            stack.enter_context(hold_lock(path, "sample file"))
        _interleave(space, target, protocol, plan, blocks, progress, between, should_stop)


def _interleave(space, target, protocol, plan, blocks, progress, between, should_stop):
    for b in range(1, blocks + 1):
        for path, count, sampler, kwargs in plan:
            if should_stop is not None and should_stop():
                return
            collect(space, target, protocol, path, count * b // blocks, sampler,
                    progress=progress, should_stop=should_stop, **kwargs)
        if between is not None:
            between(b)


def heldout_plan(space: SearchSpace, out, n_held: int, seed: int = 12345):
    """Plan entries for a uniform held-out set and its retest, the retest of each network
    about half the collection after its first timing (so the noise floor includes the
    machine's drift, as the model's error does)."""
    held = space.uniform_sample(np.random.default_rng(seed), n_held)
    half = n_held // 2
    return [(out / "heldout.jsonl", n_held, "given", {"configs": held}),
            (out / "heldout_retest.jsonl", n_held, "given",
             {"configs": held[half:] + held[:half]})]
