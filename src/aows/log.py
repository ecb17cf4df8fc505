"""Progress messages: the library logs, the command line shows.

Every module logs through ``logging.getLogger(__name__)`` (children of the ``aows``
logger) at INFO for progress and WARNING for what a user should act on; nothing in the
library prints. A program that imports aows sees them the way it configures
``logging`` (by default: warnings only, on stderr). The ``aows`` command installs
``console()`` for the duration of a command: INFO and above on stderr as bare lines
(stdout is kept for results, so ``--json`` output stays parseable), indented inside a
pipeline stage (``indented``), and progress only from rank 0 under torchrun.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
from collections.abc import Iterator

_INDENT: contextvars.ContextVar[str] = contextvars.ContextVar("aows_log_indent", default="")


@contextlib.contextmanager
def indented(prefix: str = "  ") -> Iterator[None]:
    """Messages logged inside are shown indented by ``prefix`` (nested: cumulative)."""
    token = _INDENT.set(_INDENT.get() + prefix)
    try:
        yield
    finally:
        _INDENT.reset(token)


class _Lines(logging.Formatter):
    """Bare lines for progress; "warning:" / "error:" before the others, and the
    traceback of a logged exception."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            msg = f"{'warning' if record.levelno < logging.ERROR else 'error'}: {msg}"
        if record.exc_info:
            msg = f"{msg}\n{self.formatException(record.exc_info)}"
        return "\n".join(_INDENT.get() + line if line else line for line in msg.split("\n"))


def _rank0(record: logging.LogRecord) -> bool:
    """Under torch.distributed, only rank 0 shows progress (warnings: every rank)."""
    if record.levelno >= logging.WARNING or "torch.distributed" not in sys.modules:
        return True
    dist = sys.modules["torch.distributed"]
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


_CONSOLE = {"lock": threading.Lock(), "depth": 0, "saved": None, "handler": None}


@contextlib.contextmanager
def console(stream=None, level: int = logging.INFO) -> Iterator[None]:
    """Show aows's messages on ``stream`` (default stderr) while inside. Nested or
    concurrent uses share the outermost one's handler; when the last one leaves, the
    ``aows`` logger's level, handlers and propagation are as they were before."""
    logger = logging.getLogger("aows")
    with _CONSOLE["lock"]:
        if _CONSOLE["depth"] == 0:
            handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
            handler.setFormatter(_Lines())
            handler.addFilter(_rank0)
            _CONSOLE.update(saved=(logger.level, logger.propagate), handler=handler)
            logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = False  # shown once, not again by a root handler
        _CONSOLE["depth"] += 1
    try:
        yield
    finally:
        with _CONSOLE["lock"]:
            _CONSOLE["depth"] -= 1
            if _CONSOLE["depth"] == 0:
                logger.removeHandler(_CONSOLE["handler"])
                logger.setLevel(_CONSOLE["saved"][0])
                logger.propagate = _CONSOLE["saved"][1]
                _CONSOLE.update(saved=None, handler=None)
