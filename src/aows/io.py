"""Every read and write of a user's file that must not tear or unpickle: atomic writes
(a temp file beside the target, fsynced, renamed over it) and tensors-only loading. OS
errors become one clear error naming the file and the fix."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import torch

from aows.errors import AowsError

__all__ = ["atomic_write_text", "atomic_write_bytes", "load_tensors"]


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
        raise AowsError(f"cannot write {path}: its folder {path.parent} cannot be made "
                        f"({err.strerror}); choose another path") from None
    if path.is_dir():
        raise AowsError(f"{path} is a folder; give a file name to write")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise AowsError(f"cannot write in {path.parent} ({err.strerror}); choose a writable "
                        "folder") from None
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
            raise AowsError(f"could not write {path} ({err.strerror}); nothing was replaced: "
                            "free space or choose another folder") from None
        raise


def load_tensors(path: Path, what: str):
    """``torch.load(weights_only=True)`` with its failures (a truncated or corrupt file,
    a pickle of anything but tensors and plain containers) as one clear error."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise AowsError(f"{what} {path} does not exist") from None
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AowsError(f"{path} is not a readable {what} ({first[:200]}): it may be "
                        "truncated or not written by aows; nothing was loaded") from None
