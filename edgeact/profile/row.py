"""One row of `edgeact profile` as a typed record: what a profiler measured (here, in a child
process or on a device over SSH) and how it scored.

The profiler's summary travels as JSON from another process or another machine, so it is
input like any other: `ProfileRow.from_dict` checks every field's type before the row is
scored, rendered or plotted, and refuses a malformed one in one line naming the key.
`to_dict()` is the row in `profile --json` (the keys the table's columns and the CSV name).
Device-side: the standard library only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgeact.metrics import Agreement

from .fields import FINITE, JSON_FLOAT, DictOf, ListOf, ProfileDataError, read_record

_FIX = "the profiler that wrote it is another edgeact version"


def _plain(record) -> dict:
    return {f.name: getattr(record, f.name) for f in fields(record)}


@dataclass
class TensorSpec:
    """A model input or output as its runtime reported it (shape with the batch axis)."""

    name: str
    shape: list[int]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "a tensor", path: str = "") -> "TensorSpec":
        return cls(**read_record(cls, data, where, {"name": str, "shape": ListOf(int), "dtype": str,
                                                    "scale": FINITE, "zero_point": int}, path, _FIX))


@dataclass
class Latency:
    """The timed loop's statistics in ms (`edgeact.measure.profiler.latency_stats`)."""

    runs: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "latency", path: str = "latency_ms") -> "Latency":
        if isinstance(data, dict):
            bad = [k for k, v in data.items() if k != "runs" and (isinstance(v, bool) or not isinstance(v, (int, float))
                                                                 or not math.isfinite(v) or v < 0)]
            if bad:
                raise ProfileDataError(f"{where}: '{path}.{bad[0]}' is not a time in ms")
        return cls(**read_record(cls, data, where, {"runs": int, **{k: float for k in (
            "mean", "std", "min", "p50", "p90", "p99", "max")}}, path, _FIX))


@dataclass
class Memory:
    """Resident memory from model load to the end of timing, in MB."""

    peak_rss_mb: float
    growth_mb: float
    rss_before_mb: float = 0.0
    method: str = ""

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "memory", path: str = "memory") -> "Memory":
        return cls(**read_record(cls, data, where, {"peak_rss_mb": FINITE, "growth_mb": FINITE,
                                                    "rss_before_mb": FINITE, "method": str}, path, _FIX))


@dataclass
class Accuracy:
    """Top-1 (and top-5, for more than 5 classes) against the labels of --data."""

    top1: float
    top5: float | None
    samples: int
    # Per class: how many samples had each label and how many of them were top-1 hits (the
    # streamed evaluation's counts, which a sharded run merges); None where not counted.
    per_class: dict | None = None

    def to_dict(self) -> dict:
        out = _plain(self)
        if self.per_class is None:
            out.pop("per_class")
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "accuracy", path: str = "accuracy") -> "Accuracy":
        return cls(**read_record(cls, data, where, {"top1": FINITE, "top5": (FINITE, None), "samples": int,
                                                    "per_class": (dict, None)}, path, _FIX))


AGREEMENT_SPEC: dict[str, Any] = {
    "samples": int, "top1_agreement": (JSON_FLOAT, None), "cosine": JSON_FLOAT, "max_abs_diff": JSON_FLOAT,
    "mean_abs_diff": JSON_FLOAT, "sqnr_db": JSON_FLOAT, "relative_max_diff": JSON_FLOAT, "collapsed": (str, None),
    "top1_agreement_decisive": (JSON_FLOAT, None), "top1_ties": int, "relative_p999_diff": JSON_FLOAT,
    "reference_static": (str, None),
}


class AgreementRecord:
    """`metrics.Agreement` read from JSON (inf and nan arrive as strings)."""

    @staticmethod
    def from_dict(data: Any, where: str = "agreement", path: str = "agreement") -> Agreement:
        return Agreement(**read_record(Agreement, data, where, AGREEMENT_SPEC, path, _FIX))


@dataclass
class DeviceInfo:
    """The device a row was measured on (`--device`): `edgeact.remote.fleet.DeviceRun.summary()`."""

    name: str
    arch: str | None = None
    model: str | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    os: str | None = None
    python: str | None = None
    numpy: str | None = None
    governor: str | None = None
    temperature_before_c: float | None = None
    temperature_after_c: float | None = None
    throttled: bool = False
    throttle_flags: str | None = None

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "a device", path: str = "device") -> "DeviceInfo":
        return cls(**read_record(cls, data, where, DEVICE_SPEC, path, _FIX))


_TEXT = (str, None)
DEVICE_SPEC: dict[str, Any] = {
    "name": str, "arch": _TEXT, "model": _TEXT, "cpu_model": _TEXT, "cpu_count": (int, None), "os": _TEXT,
    "python": _TEXT, "numpy": _TEXT, "governor": _TEXT, "temperature_before_c": (FINITE, None),
    "temperature_after_c": (FINITE, None), "throttled": bool, "throttle_flags": _TEXT,
}


@dataclass
class ProfileRow:
    """A model on one runtime: its measurements (from the profiler) and its scores (from the host)."""

    model: str
    name: str
    format: str
    runtime: str
    runtime_version: str
    delegate: str
    threads: int | None
    size_bytes: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    init_ms: float
    cold_ms: float
    warmup: int
    latency_ms: Latency
    throughput_ips: float | None
    streams: dict  # the throughput loop: streams, threads_per_stream, inferences, wall_s, images_per_s
    memory: Memory
    samples_evaluated: int
    timings_ms: list[float] = field(default_factory=list)
    report: str | None = None  # the convert report the model was fed by
    preprocessing: str | None = None
    scored_output: str | None = None  # the output scored against the labels
    accuracy: Accuracy | None = None
    agreement: dict[str, Agreement] | None = None  # output name -> agreement with the reference
    reference: Agreement | None = None  # the scored (or first) output's agreement
    device: DeviceInfo | None = None  # the device it ran on (--device)

    def to_dict(self) -> dict:
        data = _plain(self)
        for key in ("latency_ms", "memory", "accuracy", "reference", "device"):
            if data[key] is not None:
                data[key] = asdict(data[key])
        data["inputs"] = [t.to_dict() for t in self.inputs]
        data["outputs"] = [t.to_dict() for t in self.outputs]
        if self.agreement is not None:
            data["agreement"] = {name: a.to_dict() for name, a in self.agreement.items()}
        if data["device"] is None:
            del data["device"]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "a profile row", path: str = "") -> "ProfileRow":
        """A row from JSON (the profiler's summary plus scores); InputError naming a bad key."""
        if not isinstance(data, dict):
            raise ProfileDataError(f"{where} is not a JSON object; the profiler that wrote it is not edgeact's")
        return cls(**read_record(cls, data, where, ROW_SPEC, path, _FIX))


_NUMBER = FINITE
ROW_SPEC: dict[str, Any] = {
    "model": str, "name": str, "format": str, "runtime": str, "runtime_version": str, "delegate": str,
    "threads": (int, None), "size_bytes": int, "inputs": ListOf(TensorSpec), "outputs": ListOf(TensorSpec),
    "init_ms": _NUMBER, "cold_ms": _NUMBER, "warmup": int, "latency_ms": Latency,
    "throughput_ips": (_NUMBER, None), "streams": dict, "memory": Memory, "samples_evaluated": int,
    "timings_ms": ListOf(_NUMBER), "report": _TEXT, "preprocessing": _TEXT, "scored_output": _TEXT,
    "accuracy": (Accuracy, None), "agreement": (DictOf(AgreementRecord), None),
    "reference": (AgreementRecord, None), "device": (DeviceInfo, None),
}
