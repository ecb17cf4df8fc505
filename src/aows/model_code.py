"""The one rule for a folder's model code: a folder that holds networks of a model from a
file (a final network, a supernet's run folder) holds a copy of that file, ``model.py``,
with its SHA-256 in the folder's record, so that it is self-contained and moves between
machines; that copy runs only when the user trusts it (``--trust-model-code``), and a
path the folder names is never run. Built-in spaces and ``torchvision:``/``timm:`` models
run no code of a user's and need none of this."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from aows.catalogue import model_code_file
from aows.errors import AowsError
from aows.io import atomic_write_bytes

__all__ = ["MODEL_CODE", "copy_model_code", "trusted_copy"]

MODEL_CODE = "model.py"

log = logging.getLogger(__name__)


def copy_model_code(folder: str | Path, space) -> dict | None:
    """Copy the file of ``space``'s model (if it is one) into ``folder`` as ``model.py``;
    the record to keep with the folder's files ({"file", "sha256", "source"}), or None."""
    folder = Path(folder)
    source = model_code_file(space.params.get("model"))
    if source is None:
        return None
    try:
        data = Path(source).read_bytes()
    except OSError as err:
        raise AowsError(f"cannot copy your model code {source} into {folder} "
                        f"({err.strerror}); it must stay readable while aows writes the "
                        "folder") from None
    if not (folder / MODEL_CODE).exists() or (folder / MODEL_CODE).read_bytes() != data:
        atomic_write_bytes(folder / MODEL_CODE, data)
    return {"file": MODEL_CODE, "sha256": hashlib.sha256(data).hexdigest(), "source": source}


def trusted_copy(folder: str | Path, desc: dict, record, trust: bool,
                 what: str = "a network") -> bool | str:
    """How to rebuild the space ``desc`` (a folder's record of it) for
    ``aows.catalogue.space_from_description``'s ``trust``: False for a model that runs no
    user code; the folder's own copy (checked against its SHA-256) when the user trusts
    it; otherwise one error that says how to consent."""
    folder = Path(folder)
    params = desc.get("params") or {}
    if model_code_file(params.get("model")) is None:
        return False
    source = record.get("source") if isinstance(record, dict) else params["model"]
    if not trust:
        raise AowsError(f"{folder} holds {what} of your model code ({MODEL_CODE}, a copy of "
                        f"{source}); aows runs no code that a folder holds unless asked: add "
                        f"--trust-model-code to run {folder / MODEL_CODE} (from Python: "
                        "trust_model_code=True)")
    if not isinstance(record, dict):
        raise AowsError(f"{folder} holds no copy of its model code (written by an earlier "
                        "aows); make it again to make it self-contained")
    file = folder / MODEL_CODE
    if file.is_symlink():
        raise AowsError(f"{file} is a link; the folder must hold its own copy of the model "
                        "code: make it again")
    try:
        data = file.read_bytes()
    except OSError as err:
        raise AowsError(f"{file} cannot be read ({err.strerror}): the folder must hold the "
                        "copy of the model code it was made with") from None
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise AowsError(f"{file} is not the model code the folder was made with (its SHA-256 "
                        "differs from the folder's record); make it again")
    log.warning(f"running model code {file} (trusted; a copy of {source})")
    return f"{file.resolve()}:{params['model'].split(':', 1)[1]}"
