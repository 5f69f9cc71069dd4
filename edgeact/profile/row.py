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
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from edgeact.errors import InputError

# 1: edgeact 0.2 (outputs by name: `agreement` per output, `scored_output`).
PROFILE_SCHEMA_VERSION = 1


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
    inputs: list[dict]
    outputs: list[dict]
    init_ms: float
    cold_ms: float
    warmup: int
    latency_ms: dict
    throughput_ips: float | None
    streams: dict
    memory: dict
    samples_evaluated: int
    timings_ms: list[float] = field(default_factory=list)
    report: str | None = None  # the convert report the model was fed by
    preprocessing: str | None = None
    scored_output: str | None = None  # the output scored against the labels
    accuracy: dict | None = None  # top1, top5, samples
    agreement: dict | None = None  # output name -> metrics.Agreement, against the reference
    reference: dict | None = None  # the scored (or first) output's agreement
    device: dict | None = None  # the device it ran on (--device)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if data["device"] is None:
            del data["device"]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "a profile row") -> "ProfileRow":
        """A row from JSON (the profiler's summary plus scores); InputError naming a bad key."""
        if not isinstance(data, dict):
            raise InputError(f"{where} is not a JSON object; the profiler that wrote it is not edgeact's")
        known = {f.name: f for f in fields(cls)}
        for name, spec in known.items():
            if name not in data:
                if spec.default is not MISSING or spec.default_factory is not MISSING:
                    continue  # optional
                raise InputError(f"{where} has no '{name}'; the profiler that wrote it is another edgeact version")
            _check(name, data[name], _TYPES.get(name), where)
        return cls(**{k: v for k, v in data.items() if k in known})


_NUMBER = (int, float)
_TYPES: dict[str, tuple] = {
    "model": (str,), "name": (str,), "format": (str,), "runtime": (str,), "runtime_version": (str,),
    "delegate": (str,), "threads": (int, type(None)), "size_bytes": (int,), "inputs": (list,), "outputs": (list,),
    "init_ms": _NUMBER, "cold_ms": _NUMBER, "warmup": (int,), "latency_ms": (dict,),
    "throughput_ips": (*_NUMBER, type(None)), "streams": (dict,), "memory": (dict,), "samples_evaluated": (int,),
    "timings_ms": (list,), "report": (str, type(None)), "preprocessing": (str, type(None)),
    "scored_output": (str, type(None)), "accuracy": (dict, type(None)), "agreement": (dict, type(None)),
    "reference": (dict, type(None)), "device": (dict, type(None)),
}


def _check(name: str, value: Any, types: tuple | None, where: str) -> None:
    if types is None:
        return
    if isinstance(value, bool) or not isinstance(value, types):
        raise InputError(f"{where}: '{name}' is {type(value).__name__}, not {' or '.join(t.__name__ for t in types)}")
    if isinstance(value, float) and not math.isfinite(value) and name.endswith("_ms"):
        raise InputError(f"{where}: '{name}' is {value}, not a finite time")
    if name == "latency_ms":
        bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, _NUMBER) or v < 0]
        if bad:
            raise InputError(f"{where}: 'latency_ms.{bad[0]}' is not a time in ms")
