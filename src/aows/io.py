"""Every read and write of a user's file that must not tear or unpickle: atomic writes
(a temp file beside the target, fsynced, renamed over it) and tensors-only loading. OS
errors become one clear error naming the file and the fix (``WriteError`` for a write).
Writers of a run folder or a sample file hold its lock (``hold_lock``, from
``aows.lock``) while they write: one writer per output."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path

import torch

from aows.errors import AowsError
from aows.lock import OutputLocked, hold_lock

__all__ = ["OutputLocked", "WriteError", "append_text", "atomic_write_text",
           "atomic_write_bytes", "hold_lock", "load_tensors"]


class WriteError(AowsError):
    """A file could not be written (a full disk, no permission, ...): the old file, if
    any, is left as it was."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temp file + rename, so an interrupted write leaves no torn file."""
    atomic_write_bytes(path, text.encode())


def _umask() -> int:
    """The process's umask. Linux reports it in /proc/self/status; elsewhere it can only
    be read by setting and restoring it, and a file another thread creates in between
    would get umask 0, so the module reads it that way once, at import."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK_AT_IMPORT


def _read_umask_by_setting() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _read_umask_by_setting()


def atomic_write_bytes(path: str | os.PathLike, data: bytes | None = None, write=None) -> None:
    """Write ``data`` (or call ``write(file)``) to a temp file beside ``path``, fsync it and
    rename it over ``path``: an interrupted write leaves the old file, never a torn one,
    and no temp file (it is removed on any error, a full disk included). The file gets
    the permissions of any new file (0666 less the umask), not mkstemp's 0600, so others
    on shared storage can read models, reports and checkpoints."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where a folder should be, no permission, ...
        raise WriteError(f"cannot write {path}: its folder {path.parent} cannot be made "
                         f"({err.strerror}); choose another path") from None
    if path.is_dir():
        raise AowsError(f"{path} is a folder; give a file name to write")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise WriteError(f"cannot write in {path.parent} ({err.strerror}); choose a "
                         "writable folder") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            if write is not None:
                write(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise WriteError(f"could not write {path} ({err.strerror}); nothing was replaced: "
                             "free space or choose another folder") from None
        raise


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Refuse before any work a folder ``path`` that could not be written: its nearest
    existing folder (``path`` itself or the one it would be made in) is tried with a
    temp file. Nothing is made or left."""
    path = Path(path)
    here = next(p for p in (path, *path.parents) if p.exists())
    if not here.is_dir():
        raise WriteError(f"{what} {path}: {here} is a file, not a folder; choose another "
                         "path")
    try:
        with tempfile.TemporaryFile(dir=here):
            pass
    except OSError as err:
        raise WriteError(f"{what} {path}: cannot write in {here} ({err.strerror}); choose "
                         "a writable folder") from None


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to ``path`` (made if missing), flushed and fsynced; an OS error (a
    full disk) is a ``WriteError`` naming the file."""
    path = Path(path)
    try:
        with open(path, "a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise WriteError(f"could not append to {path} ({err.strerror}): free space or "
                         "choose another folder") from None


def load_tensors(path: Path, what: str):
    """``torch.load(weights_only=True)`` with its failures as one clear error: a file that
    cannot be read, a pickle of more than tensors and plain containers (refused, so
    nothing of it runs), and a truncated, corrupt or foreign file (torch's unpickler
    raises anything from ``KeyError`` to ``RuntimeError`` on bytes it cannot parse)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": not a torch file
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AowsError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise AowsError(f"{what} {path} is a folder; give the file") from None
    except OSError as err:
        raise AowsError(f"cannot read {what} {path} ({err.strerror or err}); make it readable "
                        "or give another file") from None
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise AowsError(_unreadable(path, what, err)) from None
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        held = f"it holds a {found.group(1)} object" if found else "it is a pickle of objects"
        raise AowsError(f"{path} is not a tensors-only {what} ({held}) and was not loaded: "
                        "unpickling it could run code; save tensors only, e.g. "
                        "torch.save(model.state_dict(), PATH)") from None
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - any parse failure of the bytes
        raise AowsError(_unreadable(path, what, err)) from None


def _unreadable(path: Path, what: str, err: Exception) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    why = f"{type(err).__name__}: {first}" if isinstance(err, LookupError) or not first \
        else first
    return (f"{path} is not a readable {what} ({why[:200]}): it may be truncated or not "
            "written by aows; nothing was loaded")
