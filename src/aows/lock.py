"""One writer per output: an OS file lock held while a command writes a run folder or a
sample file, so that a second process on the same output stops with one clear error
naming the first one's PID instead of mixing its records or checkpoints into it.

Rules:

- The lock is ``fcntl.flock`` on a lock file: ``FOLDER/.lock`` for a folder,
  ``.NAME.lock`` beside a file. The holder's PID is written into it. The OS releases it
  when the holder dies, however it dies (kill -9 included), so a lock file left behind
  by a dead process never blocks: the next writer takes the lock and proceeds.
- It never waits: a held lock is an ``OutputLocked`` error at once.
- Re-entrant within a process: a function that holds a lock may call one that takes
  the same lock (``aows run`` holds its folder and trains in it); a per-process registry
  counts the holds, and the last release unlocks.
- Left as found: ``hold_lock`` is a context manager; leaving it (normally, on an
  exception or KeyboardInterrupt) releases the hold and removes the lock file when it
  was the last one.
- Where ``fcntl`` is missing (Windows) or the file system refuses locks, there is no
  lock and no error: the output is written as before.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path

from aows.errors import AowsError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here, writing goes on unlocked
    fcntl = None

__all__ = ["Hold", "OutputLocked", "hold_lock", "lock_path"]

log = logging.getLogger(__name__)

# lock file -> [fd or None (no lock on this file system), holds]; one entry per lock
# this process holds, so that nested holds of one output never block each other
_held: dict[str, list] = {}
_registry = threading.RLock()


class OutputLocked(AowsError):
    """Another live process is writing the same output."""


def lock_path(path: str | os.PathLike, folder: bool) -> Path:
    """The lock file of an output: ``path/.lock`` for a folder, ``.NAME.lock`` beside a
    file."""
    path = Path(path)
    return path / ".lock" if folder else path.parent / f".{path.name}.lock"


def hold_lock(path: str | os.PathLike, what: str, *, folder: bool = False) -> Hold:
    """Hold the write lock of ``path`` (a run folder with ``folder=True``, else a file)
    for a ``with`` block; ``what`` names the output in the error, e.g. "sample file".

    A folder is made if missing (a file's folder too). Entering raises ``OutputLocked``
    naming the holder's PID when another live process holds it, and ``AowsError`` when
    the lock file cannot be made (no permission, a file where the folder should be)."""
    return Hold(path, what, folder=folder)


class Hold:
    """One hold of an output's lock (``hold_lock``): a context manager."""

    def __init__(self, path: str | os.PathLike, what: str, *, folder: bool = False):
        self.path, self.what, self.folder = Path(path), what, folder
        self.key: str | None = None

    def __enter__(self) -> Hold:
        lockfile = self._prepare()
        key = os.path.realpath(lockfile)
        with _registry:
            entry = _held.get(key)
            if entry is not None:
                entry[1] += 1
            else:
                _held[key] = [_acquire(lockfile, self.path, self.what), 1]
        self.key = key
        return self

    def __exit__(self, *exc) -> bool:
        if self.key is None:
            return False
        with _registry:
            entry = _held[self.key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self.key]
                _release(entry[0], self.key)
        self.key = None
        return False

    def _prepare(self) -> Path:
        path = self.path
        if self.folder and path.exists() and not path.is_dir():
            raise AowsError(f"{self.what} {path} is a file; give a folder")
        if not self.folder and path.is_dir():
            raise AowsError(f"{self.what} {path} is a folder; give a file name")
        lockfile = lock_path(path, self.folder)
        try:
            lockfile.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AowsError(f"cannot write in {lockfile.parent} ({err.strerror}); choose "
                            f"a writable place for the {self.what}") from None
        return lockfile


def _acquire(lockfile: Path, path: Path, what: str) -> int | None:
    """An fd of ``lockfile`` holding its exclusive flock, the PID written in it; None
    where locks are not available."""
    if fcntl is None:
        return None
    while True:
        try:
            fd = os.open(lockfile, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                         0o666)
        except OSError as err:
            raise AowsError(f"cannot write in {lockfile.parent} ({err.strerror}); choose "
                            f"a writable place for the {what}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                pid = _holder(fd)
                os.close(fd)
                who = f"PID {pid}" if pid else "PID unknown"
                raise OutputLocked(
                    f"{what} {path} is being written by another process ({who}); wait "
                    "for it to finish or stop it, or write elsewhere (nothing was "
                    "changed)") from None
            os.close(fd)  # ENOLCK, EOPNOTSUPP: a file system without locks
            log.debug(f"no lock on {lockfile} ({err.strerror}): writing unlocked")
            return None
        # the file may have been removed by a holder releasing it between our open and
        # our flock: then this lock guards nothing, take the file now at that path
        try:
            st, mine = os.stat(lockfile), os.fstat(fd)
        except FileNotFoundError:
            os.close(fd)
            continue
        if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the lock holds without the PID; an error would only name it unknown
        return fd


def _holder(fd: int) -> int | None:
    """The PID in a held lock file (the holder writes it just after locking)."""
    for _ in range(20):
        try:
            text = os.pread(fd, 64, 0).decode(errors="replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None


def _release(fd: int | None, lockfile: str) -> None:
    if fd is None:
        return
    try:
        mine, st = os.fstat(fd), os.stat(lockfile)
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            os.unlink(lockfile)  # still locked: no one can take it in between
    except OSError:
        pass  # gone already, or a read-only folder: the file stays, the lock does not
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)  # also for any forked child sharing the fd
    finally:
        os.close(fd)
