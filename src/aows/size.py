"""How big a space's latency fit and search are, before any of it is allocated.

The fit (``aows.latency.fit``) solves dense U x U systems, U the space's latency
unknowns (one per layer type and input/output width pair): the system G in float64,
the Newton system built from it in float64 and in float32, and G in float32, 24 bytes
per pair of unknowns (measured: 0.83 GiB more at 5988 unknowns, 0.80 GiB estimated),
and each Cholesky factorisation takes time in U^3 (a whole fit of 300 networks took
6.8 s at 5988 unknowns here, 0.13 s at 1612). The solvers hold a table of every
layer's input x output choices (8 bytes each, for the score and for the latency).

No scipy or torch here: a space file is checked when it is read.
"""

from __future__ import annotations

import os

from aows.errors import AowsError

FIT_BYTES_PER_PAIR = 24
# above this many unknowns a fit takes minutes and GiB (MobileNet-v1, 14 levels: 1612;
# ResNet-50: 3896; 30 levels of MobileNet-v1: 5988, 0.8 GiB, 7 s a fit)
FIT_WARN_UNKNOWNS = 10_000
SOLVER_WARN_BYTES = 1 << 30  # the solvers' tables
_FIT_SECONDS = (5988, 6.8)  # measured: unknowns, seconds of one fit of 300 networks
_GiB = float(1 << 30)


def _ends(layers, i: int) -> tuple[int, int]:
    """A layer's input and output width variables (a chain's layer i: i and i + 1)."""
    layer = layers[i]
    return (i if layer.src is None else layer.src, i + 1 if layer.dst is None else layer.dst)


def estimate_unknowns(layers, choices) -> int:
    """The latency unknowns of a space's layers and width choices without listing them
    (``SearchSpace.unknowns`` takes minutes on millions): exact where layers of one type
    read and write the same choices (every space aows builds), else an upper bound."""
    seen = set()
    for i, layer in enumerate(layers):
        s, d = _ends(layers, i)
        seen.add((layer.type_key, s == d, choices[s], choices[d]))
    return sum(len(cs) if tied else len(cs) * len(cd) for _, tied, cs, cd in seen)


def fit_bytes(unknowns: int) -> int:
    """Memory the fit allocates for ``unknowns`` latency unknowns."""
    return FIT_BYTES_PER_PAIR * unknowns * unknowns


def solver_bytes(layers, choices) -> int:
    """Memory of the solvers' tables: every layer's input x output choices, twice."""
    return sum(16 * len(choices[s]) * len(choices[d])
               for s, d in (_ends(layers, i) for i in range(len(layers))))


def memory_limit() -> int | None:
    """Bytes of memory this process can have: the machine's, or its cgroup's limit when
    lower; None where neither can be read."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pass
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(f) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def _largest(choices) -> int:
    return max(len(c) for c in choices)


def _bytes(n: float) -> str:
    for unit in ("GiB", "TiB", "PiB"):
        if n / _GiB < 1024 or unit == "PiB":
            return f"{n / _GiB:,.1f} {unit}"
        n /= 1024


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.0f} {unit}"
    return f"{seconds:.0f} s"


def check_fit_memory(space) -> None:
    """Refuse a fit whose systems do not fit in this machine's memory (before any of it
    is allocated)."""
    u = len(space.unknowns()[0])
    need, have = fit_bytes(u), memory_limit()
    if have is not None and need > have:
        raise AowsError(
            f"space '{space.name}' has {u} latency unknowns (up to "
            f"{_largest(space.choices)} choices per width variable): its latency fit needs "
            f"about {_bytes(need)} of memory, this machine has {_bytes(have)}; nothing was "
            "fitted. Use fewer choices per variable (--levels, or fewer choices in the "
            f"space file; below {FIT_WARN_UNKNOWNS} unknowns a fit takes seconds to a "
            "minute), or --method flops")


def size_warning(name: str, layers, choices) -> str | None:
    """A warning when a space (its name, layers and width choices) is larger than the fit
    and the solvers handle in reasonable time and memory, with the estimate; None
    otherwise."""
    u = estimate_unknowns(layers, choices)
    tables = solver_bytes(layers, choices)
    if u <= FIT_WARN_UNKNOWNS and tables <= SOLVER_WARN_BYTES:
        return None
    n0, s0 = _FIT_SECONDS
    search = f", the search {_bytes(tables)}" if tables >= SOLVER_WARN_BYTES / 10 else ""
    return (f"space '{name}' is very large: about {u} latency unknowns (up to "
            f"{_largest(choices)} choices per width variable); a latency fit needs about "
            f"{_bytes(fit_bytes(u))} of memory and {_duration(s0 * (u / n0) ** 3)} "
            f"(measured: {s0:g} s at {n0} unknowns, growing as the cube){search}; aows is "
            f"made for up to {FIT_WARN_UNKNOWNS} unknowns: give fewer choices per variable "
            "(--levels, or the space file's choices)")
