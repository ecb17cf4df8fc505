"""The target: what a latency is measured on (kept free of torch, so that the command
line's options can be built from it without importing a runtime)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from aows.errors import AowsError
from aows.settings import POSITIVE, setting


@dataclass
class Target:
    """What a latency is measured on; recorded with every sample file and model."""

    backend: str = setting("torch-cpu", "torch-cpu | torch-cuda | onnxruntime | "
                           "onnxruntime-cuda | onnxruntime-trt | openvino")
    batch_size: int = setting(1, "images per timed call (latencies are per image)",
                              check=POSITIVE)
    threads: int | None = setting(None, "CPU threads (torch-cpu, onnxruntime, openvino); "
                                  "default: the runtime's own; recorded with the samples",
                                  check=POSITIVE)
    dtype: str = setting("fp32", "precision", choices=["fp32", "fp16"])
    channels_last: bool = setting(False, "channels_last memory format")
    # where: None for this machine, else ``aows.latency.remote.Remote`` (never recorded:
    # its command may carry credentials; the runner reports the target as it is)
    remote: object = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(cls, record: dict) -> Target:
        """The target a file records (``measure.target_record``: these fields and
        provenance, which is left out; a field missing from an older file: its default)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})

    def __post_init__(self):
        if self.batch_size < 1:
            raise AowsError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.dtype not in ("fp32", "fp16"):
            raise AowsError(f"--dtype must be fp32 or fp16, got '{self.dtype}'")
        if self.threads is not None and self.threads < 1:
            raise AowsError(f"--threads must be >= 1, got {self.threads}")
