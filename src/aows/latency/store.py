"""Append-only JSONL sample store.

Line 1 is a header: {"aows": "samples", "space": {...}, "target": {...}, "protocol": {...}}.
Every other line is one timed network: {"config": [...], "latency_ms": x, "sampler": ...}.
Records are flushed and fsynced per chunk, so a kill loses at most the chunk being
timed; a torn last line (a kill mid-write) is skipped with a warning and cut off before
the next append. The reference implementation's layout, one JSON array
``[[c1, ..., cn], latency_ms]`` per line and no header, is read too.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aows.errors import AowsError
from aows.io import WriteError, append_text, atomic_write_text
from aows.space import SearchSpace, SpaceError


class SampleFileError(AowsError, ValueError):
    """A sample file is malformed or belongs to another space or target."""


@dataclass
class Samples:
    configs: list[tuple[int, ...]]
    latency_ms: np.ndarray
    header: dict | None = None
    samplers: list[str] = field(default_factory=list)
    path: str = ""
    anchors: list[float | None] = field(default_factory=list)
    devices: list[int | None] = field(default_factory=list)  # of a fleet (--remote x N)

    def __len__(self) -> int:
        return len(self.configs)

    def subset(self, index) -> Samples:
        index = np.asarray(index, dtype=np.int64)
        pick = lambda seq: [seq[i] for i in index] if seq else []  # noqa: E731
        return Samples(pick(self.configs), self.latency_ms[index], self.header,
                       pick(self.samplers), self.path, pick(self.anchors),
                       pick(self.devices))

    @staticmethod
    def concat(parts: list[Samples]) -> Samples:
        fill = lambda p, seq, v: seq if seq else [v] * len(p)  # noqa: E731
        return Samples([c for p in parts for c in p.configs],
                       np.concatenate([p.latency_ms for p in parts]) if parts else np.zeros(0),
                       parts[0].header if parts else None,
                       [s for p in parts for s in fill(p, p.samplers, "")],
                       ",".join(p.path for p in parts),
                       [a for p in parts for a in fill(p, p.anchors, None)],
                       [d for p in parts for d in fill(p, p.devices, None)])

    @property
    def has_anchors(self) -> bool:
        return len(self) > 0 and len(self.anchors) == len(self) and \
            all(a is not None for a in self.anchors)

    def normalised(self, ref_ms: float | None) -> np.ndarray:
        """Latencies in the machine's reference state: each record scaled by
        ref_ms / (the anchor of its chunk). The anchor is one fixed network timed in
        every chunk, so this removes the drift of a shared machine (a few % to 10 % over
        minutes) from all records alike. With ref_ms None: the raw latencies."""
        if ref_ms is None:
            return self.latency_ms
        if not self.has_anchors:
            raise SampleFileError(f"{self.path}: some records have no anchor timing, so "
                                  "they cannot be drift-normalised; use --raw")
        return self.latency_ms * ref_ms / np.asarray(self.anchors, dtype=np.float64)

    def anchor_reference(self) -> float | None:
        """The reference state: the median anchor timing (None without anchors)."""
        return float(np.median(self.anchors)) if self.has_anchors else None

    def anchors_of(self, device: int = 0) -> list[float]:
        """The anchors timed on ``device`` of a fleet (records of one device: all): the
        bar that device's new chunks are held to."""
        devs = self.devices or [None] * len(self.anchors)
        return [a for a, d in zip(self.anchors, devs) if a is not None and d in (device, None)]

    def device_offsets(self) -> dict[int, float] | None:
        """A fleet's devices (``--remote`` given several times): each one's median anchor
        over all the anchors' median, minus 1 (how much slower it runs the same network;
        the drift normalisation removes it from the records). None: one device."""
        devs = {d for d in self.devices if d is not None}
        if len(devs) < 2 or not self.has_anchors:
            return None
        ref = float(np.median(self.anchors))
        return {d: float(np.median([a for a, e in zip(self.anchors, self.devices)
                                    if e == d])) / ref - 1 for d in sorted(devs)}

    def by_config(self, ref_ms: float | None = None) -> dict[tuple[int, ...], float]:
        """Configuration -> latency (the last record wins for repeated ones)."""
        return dict(zip(self.configs, self.normalised(ref_ms).tolist()))


def _parse_record(obj, path, lineno):
    if isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], list):
        return tuple(int(c) for c in obj[0]), float(obj[1]), "reference", None
    if isinstance(obj, dict) and "config" in obj and "latency_ms" in obj:
        return tuple(int(c) for c in obj["config"]), float(obj["latency_ms"]), \
            str(obj.get("sampler", "")), obj.get("anchor_ms")
    raise SampleFileError(f"{path}:{lineno}: not a sample record; expected "
                          '{"config": [...], "latency_ms": x} or [[widths...], ms]')


def read_samples(path: str | os.PathLike, space: SearchSpace | None = None) -> Samples:
    """Read a sample file; check it against ``space`` when given."""
    path = Path(path)
    if not path.exists():
        raise SampleFileError(f"sample file {path} does not exist")
    if path.is_dir():
        raise SampleFileError(f"{path} is a folder; give the sample file (.jsonl) in it")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SampleFileError(f"cannot read sample file {path} ({err.strerror})") from None
    lines = raw.split(b"\n")
    torn_tail = not raw.endswith(b"\n") and lines[-1] != b""
    header = None
    configs, lat, samplers, anchors, devices = [], [], [], [], []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if torn_tail and lineno == len(lines):
                warnings.warn(f"{path}:{lineno}: incomplete last line skipped (interrupted "
                              "write); it is removed on the next append", stacklevel=2)
                continue
            raise SampleFileError(f"{path}:{lineno}: malformed line (not JSON); fix or "
                                  "delete that line") from None
        if isinstance(obj, dict) and obj.get("aows") == "samples":
            if lineno != 1:
                raise SampleFileError(f"{path}:{lineno}: header found after the first line")
            header = obj
            continue
        try:
            cfg, ms, smp, anc = _parse_record(obj, path, lineno)
        except (TypeError, ValueError) as err:
            if isinstance(err, SampleFileError):
                raise
            raise SampleFileError(f"{path}:{lineno}: bad record ({err})") from None
        if not np.isfinite(ms) or ms <= 0:
            raise SampleFileError(f"{path}:{lineno}: latency {ms} is not a positive number")
        if anc is not None:
            try:
                anc = float(anc)
            except (TypeError, ValueError):
                anc = float("nan")
            if not np.isfinite(anc) or anc <= 0:
                raise SampleFileError(f"{path}:{lineno}: anchor_ms {obj.get('anchor_ms')!r} "
                                      "is not a positive number; fix or delete that line")
        configs.append(cfg)
        lat.append(ms)
        samplers.append(smp)
        anchors.append(anc)
        dev = obj.get("device") if isinstance(obj, dict) else None
        devices.append(dev if isinstance(dev, int) else None)
    if space is not None:
        if header is not None and "space" in header:
            space.check_same(SearchSpace.from_description(header["space"]), f"sample file {path}")
        for lineno, cfg in enumerate(configs, start=2 if header else 1):
            try:
                space.validate(cfg)
            except SpaceError as err:
                raise SampleFileError(f"{path}: record {lineno}: {err}") from None
    return Samples(configs, np.asarray(lat, dtype=np.float64), header, samplers, str(path),
                   anchors, devices)


def read_many(paths, space: SearchSpace | None = None) -> Samples:
    """Several sample files of one target, concatenated (refuses mixed targets)."""
    parts = [read_samples(p, space) for p in paths]
    ref = next((p for p in parts if p.header), None)
    for p in parts:
        if ref is None or p.header is None:
            continue
        for key in _TARGET_KEYS:
            a, b = ref.header["target"].get(key), p.header["target"].get(key)
            if a != b:
                raise SampleFileError(f"{p.path} was timed with {key}={b!r} but {ref.path} "
                                      f"with {key}={a!r}: fit one target at a time")
    return Samples.concat(parts)


# keys of the header's target that must agree to append to an existing file
_TARGET_KEYS = ("backend", "batch_size", "dtype", "threads", "channels_last", "host")


class SampleWriter:
    """Open (create or resume) a sample file for appending."""

    def __init__(self, path: str | os.PathLike, header: dict):
        self.path = Path(path)
        self.existing = Samples([], np.zeros(0), header, [], str(path))
        if self.path.exists() and self.path.stat().st_size > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.existing = read_samples(self.path)
            old = self.existing.header
            if old is None:
                raise SampleFileError(f"{self.path} has no aows header (reference layout?); "
                                      "write new samples to another file")
            SearchSpace.from_description(header["space"]).check_same(
                SearchSpace.from_description(old["space"]), f"sample file {self.path}")
            for key in _TARGET_KEYS:
                if (key == "threads" and old["target"].get(key) is None
                        and header["target"].get("threads_default")):
                    # written before the thread count in effect was recorded, when null
                    # meant the backend's default: still the default, so the same
                    continue
                if old["target"].get(key) != header["target"].get(key):
                    raise SampleFileError(
                        f"{self.path} was timed with {key}={old['target'].get(key)!r}, not "
                        f"{header['target'].get(key)!r}; use another output file")
            if old.get("protocol") is not None and old.get("protocol") != header.get("protocol"):
                diff = [f"{k}={old['protocol'].get(k)!r} there, {v!r} now"
                        for k, v in header.get("protocol", {}).items()
                        if old["protocol"].get(k) != v]
                raise SampleFileError(
                    f"{self.path} was timed under another protocol ({', '.join(diff)}); time "
                    "with the same --warmup/--rounds/--runs/--reduce/--chunk or use another "
                    "output file")
            self._cut_torn_tail()
        else:  # through the io layer: an OS error is one clear error naming the file
            atomic_write_text(self.path, json.dumps(header) + "\n")

    def _cut_torn_tail(self):
        try:
            with open(self.path, "rb+") as f:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
        except OSError as err:
            raise WriteError(f"cannot add to sample file {self.path} ({err.strerror}); make "
                             "it writable or write to another file (nothing was changed)"
                             ) from None

    def append(self, configs, latency_ms, sampler: str, extra: dict | None = None) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        append_text(self.path, "".join(
            json.dumps({"config": [int(c) for c in cfg], "latency_ms": round(float(ms), 6),
                        "sampler": sampler, "time": now, **(extra or {})}) + "\n"
            for cfg, ms in zip(configs, latency_ms)))
