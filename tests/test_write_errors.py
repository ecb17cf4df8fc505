"""A write that fails mid-run (a full disk) is one line that says the folder is kept and
how to go on, and the folder is one that the rerun it names accepts."""

import errno
import json
import os
import sys

import pytest

from aows.cli import main

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the failing disk is told apart by /proc/self/fd")

TRAIN = ["train", "--space", "mobilenet_v1", "--resolution", "32", "--data", "fake",
         "--batch-size", "16", "--no-progress", "--no-val", "--levels", "2",
         "--max-width", "0.3"]


def full_disk_at(monkeypatch, name: str, after: int = 0):
    """``os.fsync`` fails with ENOSPC on the temp file of ``name`` (the io layer's
    atomic write), from its ``after``-th write on, as on a disk that just filled up."""
    real = os.fsync
    seen = []

    def fsync(fd):
        try:
            target = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            target = ""
        if target.startswith(f".{name}.") and target.endswith(".tmp"):
            seen.append(target)
            if len(seen) > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    monkeypatch.setattr(os, "fsync", fsync)


def one_line(capsys) -> str:
    """The error: one line (besides the progress lines of the epochs before it)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("epoch ")]
    assert len(lines) == 1 and lines[0].startswith("aows: error: "), err
    assert "Traceback" not in err
    return lines[0]


def epochs_logged(out) -> list[int]:
    return [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text()
            .splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("rerun", [[], ["--resume"]], ids=["plain", "resume"])
def test_a_full_disk_in_the_first_epoch_leaves_a_run_to_start_again(
        tmp_path, capsys, monkeypatch, rerun):
    out = tmp_path / "run"
    args = [*TRAIN, "--epochs", "1", "--out", str(out)]
    with monkeypatch.context() as m:
        full_disk_at(m, "checkpoint.pt")
        assert main(args) == 2
    msg = one_line(capsys)
    assert "checkpoint.pt (No space left on device)" in msg
    assert f"{out} is kept" in msg and "run the same command again to start over" in msg
    assert not (out / "checkpoint.pt").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert main([*args, *rerun]) == 0  # the rerun the message names is accepted
    assert (out / "checkpoint.pt").exists() and epochs_logged(out) == [1]


@pytest.mark.slow
def test_a_full_disk_later_keeps_the_last_checkpoint_to_resume_from(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    args = [*TRAIN, "--epochs", "2", "--out", str(out)]
    with monkeypatch.context() as m:
        full_disk_at(m, "checkpoint.pt", after=1)  # epoch 1's is written, epoch 2's not
        assert main(args) == 2
    msg = one_line(capsys)
    assert "No space left on device" in msg and "last checkpoint is intact" in msg
    assert "--resume" in msg
    assert epochs_logged(out) == [1, 2]  # epoch 2's record, not its checkpoint
    assert main(args) == 2  # a plain rerun would start over what is kept
    assert "already holds a training run" in one_line(capsys)
    assert main([*args, "--resume"]) == 0
    assert epochs_logged(out) == [1, 2]  # epoch 2 ran again, recorded once
    import torch
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["position"]["epoch"] == 2


@pytest.mark.slow
def test_a_full_disk_on_the_log_is_one_line_too(tmp_path, capsys, monkeypatch):
    """metrics.jsonl is appended, not replaced: its write error is as clear."""
    out = tmp_path / "run"
    args = [*TRAIN, "--epochs", "1", "--out", str(out)]
    real = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("metrics.jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", fsync)
        assert main(args) == 2
    msg = one_line(capsys)
    assert "metrics.jsonl (No space left on device)" in msg and "start over" in msg
    assert main(args) == 0 and epochs_logged(out) == [1]
