"""The timing protocol: interleaved rounds over a chunk of networks, robust reduction.

On a shared, noisy machine the same network timed twice back to back differs by up to
20 %. Interference comes in bursts lasting longer than one network's runs, so timing
every network of a chunk once per round, in a fresh random order each round, spreads a
burst over many networks and rounds; keeping the minimum (or a low percentile) of all
runs then discards the disturbed ones.

Load that lasts longer than a whole chunk (another job on the machine) slows every run
of the chunk alike, and no reduction removes it. So every chunk also times an *anchor*,
one fixed reference network: when the anchor comes out more than ``anchor_tolerance``
above its running minimum, the chunk was disturbed and is timed again (up to
``retries`` times, keeping the least disturbed attempt).

The running minimum can start from another file's anchors (a resumed collection, the
samples a refinement or a final measurement is checked against). A machine can be slower
as a whole in a later session: measured here, the same networks took 1.26 to 1.34 times
as long a day later, after drift normalisation, and the anchor 1.43 times the fastest
of the committed benchmark set's the day after that. Then no retry reaches that bar, and
every chunk would be timed ``retries + 1`` times for nothing. So when a chunk's every
attempt misses a bar that this session has never reached, the bar falls to this
session's fastest anchor (with a warning); the timings stay drift-normalised by their
own chunk's anchor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from aows.errors import AowsError
from aows.settings import NONNEGATIVE, POSITIVE, setting

log = logging.getLogger(__name__)

REDUCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "min": lambda t: t.min(axis=1),
    "p10": lambda t: np.percentile(t, 10, axis=1),
    "p25": lambda t: np.percentile(t, 25, axis=1),
    "median": lambda t: np.median(t, axis=1),
    "mean": lambda t: t.mean(axis=1),
}


@dataclass
class Protocol:
    """How each network is timed: warm-up calls, then `rounds` interleaved rounds of
    `runs` consecutive calls; all rounds x runs times reduced by `reduce`."""

    warmup: int = setting(3, "untimed calls of each network first", check=NONNEGATIVE)
    rounds: int = setting(6, "interleaved rounds per chunk", check=POSITIVE)
    runs: int = setting(5, "consecutive runs per round", check=POSITIVE)
    reduce: str = setting("min", "reduction of all rounds x runs times",
                          choices=list(REDUCTIONS))
    chunk: int = setting(50, "networks timed together", check=POSITIVE)
    seed: int = setting(0, "seed of the round orders")
    anchor: bool = setting(True, "time the anchor network with every chunk to detect "
                           "disturbed chunks")
    anchor_tolerance: float = setting(0.05, "a chunk whose anchor is this much above the "
                                      "fastest anchor is timed again", check=NONNEGATIVE)
    retries: int = setting(3, "times a disturbed chunk is timed again at most",
                           check=NONNEGATIVE)

    def __post_init__(self):
        if self.reduce not in REDUCTIONS:
            raise AowsError(f"unknown reduction '{self.reduce}'; choose from {sorted(REDUCTIONS)}")
        if min(self.rounds, self.runs, self.chunk) < 1 or self.warmup < 0:
            raise AowsError("rounds, runs and chunk must be >= 1, warmup >= 0")

    @classmethod
    def from_record(cls, record: dict) -> Protocol:
        """The protocol a file records (``asdict``; a field missing from an older file:
        its default)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in record.items() if k in names})

    def asdict(self) -> dict:
        return asdict(self)


def time_runners(runners: Sequence[Callable[[], float]], protocol: Protocol,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Seconds per call of every runner, reduced over rounds x runs (interleaved)."""
    rng = rng or np.random.default_rng(protocol.seed)
    n = len(runners)
    remote = getattr(runners[0], "time_chunk", None) if n else None
    if remote is not None:  # a remote target times the chunk itself, in these orders
        orders = [rng.permutation(n) for _ in range(protocol.rounds)]
        return REDUCTIONS[protocol.reduce](remote(runners, protocol, orders))
    times = np.empty((n, protocol.rounds * protocol.runs))
    for run in runners:
        for _ in range(protocol.warmup):
            run()
    for r in range(protocol.rounds):
        for i in rng.permutation(n):
            for j in range(protocol.runs):
                times[i, r * protocol.runs + j] = runners[i]()
    return REDUCTIONS[protocol.reduce](times)


class AnchoredTimer:
    """Times chunks of runners with an anchor runner to detect and re-time disturbed
    chunks. ``anchor_min`` (seconds) carries over between chunks (and resumed runs).

    ``lowered``: the bar (seconds) this timer fell back to when this session could not
    reach the given ``anchor_min`` (see the module docstring), else None."""

    def __init__(self, protocol: Protocol, anchor: Callable[[], float] | None = None,
                 anchor_min: float = float("inf")):
        self.protocol = protocol
        self.anchor = anchor if protocol.anchor else None
        self.anchor_min = anchor_min
        self.given_min = anchor_min
        self.session_min = float("inf")
        self.lowered: float | None = None
        self.retimed = 0

    def __call__(self, runners: Sequence[Callable[[], float]],
                 rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
        """Seconds per call of every runner, and the anchor's seconds (None if off)."""
        if self.anchor is None:
            return time_runners(runners, self.protocol, rng), None
        best = None
        tol = 1 + self.protocol.anchor_tolerance
        for attempt in range(self.protocol.retries + 1):
            secs = time_runners([self.anchor, *runners], self.protocol, rng)
            if best is None or secs[0] < best[0]:
                best = secs
            if secs[0] <= self.anchor_min * tol:
                break
            if attempt < self.protocol.retries:
                self.retimed += 1
        a = float(best[0])
        self.session_min = min(self.session_min, a)
        if (a > self.anchor_min * tol and self.protocol.retries > 0 and self.lowered is None
                and self.session_min > self.given_min * tol):
            # every attempt missed a bar that this session has never reached: the machine
            # is slower than when that bar was timed, not disturbed for a moment
            self.lowered = self.anchor_min = self.session_min
            log.warning(
                f"the anchor network timed {a / self.given_min:.2f}x the anchor it is "
                "checked against (the samples' fastest, or the latency model's reference) "
                f"in all {self.protocol.retries + 1} attempts: the machine is slower now "
                "than when those were timed. Later chunks "
                "are held to this session's fastest anchor instead of being timed again "
                "each. Timings stay drift-normalised by their chunk's anchor, which "
                "corrects a slowdown by one factor for every network, so only in part: "
                "time what is to be compared in one session where you can")
        self.anchor_min = min(self.anchor_min, a)
        return best[1:], a
