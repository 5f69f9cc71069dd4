"""The profile report as typed records: what `profile_models` returns and `profile --json` prints.

    report = profile_models(["out/mnist_int8.tflite", "out/mnist_fp32.tflite"], ProfileOptions(runs=200))
    report.models[0].latency_ms.p50, report.speed[0].speedup
    ProfileReport.from_dict(json.load(open("profile.json")))  # a kept report, checked

`ProfileReport.to_dict()` is the JSON (`schema_version` first); `from_dict()` reads one back and
refuses, in one line naming the key, a report of another schema version, with a field missing
or of the wrong type, as the convert report's reader does (`edgeact.report.records`). The
renderers (`render`, `summary`, `plot`) read these attributes, never dict keys.
Device-side: the standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeact.fastpath.speed_verdict import SpeedVerdict

from .fields import FINITE, ListOf, ProfileDataError, read_record
from .row import Accuracy, DeviceInfo, ProfileRow, _plain

# 1: edgeact 0.2 (outputs by name: `agreement` per output, `scored_output`; "speed" from profile_models).
PROFILE_SCHEMA_VERSION = 1
_FIX = "re-run edgeact profile --json to write it with this edgeact"


@dataclass
class TargetInfo:
    """The device class the numbers are for (`--target`)."""

    name: str
    description: str

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "a profile report", path: str = "target") -> "TargetInfo":
        return cls(**read_record(cls, data, where, {"name": str, "description": str}, path, _FIX))


@dataclass
class HostInfo:
    """The machine that ran the profile (and measured, without --device)."""

    machine: str
    processor: str
    cpus: int | None
    system: str = ""
    release: str = ""
    python: str = ""

    def to_dict(self) -> dict:
        return {"machine": self.machine, "system": self.system, "release": self.release,
                "processor": self.processor, "cpus": self.cpus, "python": self.python}

    @classmethod
    def from_dict(cls, data: Any, where: str = "a profile report", path: str = "host") -> "HostInfo":
        return cls(**read_record(cls, data, where, {"machine": str, "processor": str, "cpus": (int, None),
                                                    "system": str, "release": str, "python": str}, path, _FIX))


@dataclass
class ProfileSettings:
    """How every model was run."""

    runs: int
    warmup: int
    threads: int | None
    streams: int
    isolate: bool
    limit: int | None = None

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "a profile report", path: str = "settings") -> "ProfileSettings":
        return cls(**read_record(cls, data, where, {"runs": int, "warmup": int, "threads": (int, None),
                                                    "streams": int, "isolate": bool, "limit": (int, None)},
                                 path, _FIX))


@dataclass
class DataSummary:
    """What the models were fed: `--data` (`edgeact.data.source.DataSource.summary()`) or random inputs.

    Random inputs have no `values`, `classes` or `skipped`; they are left out of the JSON then.
    """

    source: str
    samples: int
    labelled: bool
    classes: list[str] | None = None
    values: str | None = None  # pixels (preprocessed) or model inputs (fed as is)
    skipped: dict | None = None  # files not read, by reason
    files_seen: int | None = None

    def to_dict(self) -> dict:
        data = _plain(self)
        for key in ("values", "skipped", "files_seen"):
            if data[key] is None:
                del data[key]
        if self.values is None and self.classes is None:
            del data["classes"]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "a profile report", path: str = "data") -> "DataSummary":
        return cls(**read_record(cls, data, where, {
            "source": str, "samples": int, "labelled": bool, "classes": (ListOf(str), None), "values": (str, None),
            "skipped": (dict, None), "files_seen": (int, None)}, path, _FIX))


@dataclass
class ReferenceInfo:
    """The float `--reference`, with its own top-1 when every model saw the same labelled inputs."""

    path: str
    kind: str  # keras, tflite, onnx
    accuracy: Accuracy | None = None

    def to_dict(self) -> dict:
        data = {"path": self.path, "kind": self.kind}
        if self.accuracy is not None:
            data["accuracy"] = self.accuracy.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "a profile report", path: str = "reference") -> "ReferenceInfo":
        return cls(**read_record(cls, data, where, {"path": str, "kind": str, "accuracy": (Accuracy, None)},
                                 path, _FIX))


@dataclass
class DeviceRecord(DeviceInfo):
    """A `--device` of the run: its summary, its facts before and after, or why it failed."""

    facts_before: dict = field(default_factory=dict)
    facts_after: dict = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "a profile report", path: str = "devices") -> "DeviceRecord":
        from .row import DEVICE_SPEC

        spec = {**DEVICE_SPEC, "facts_before": dict, "facts_after": dict, "error": (str, None)}
        return cls(**read_record(cls, data, where, spec, path, _FIX))


class SpeedRecord:
    """`fastpath.speed_verdict.SpeedVerdict` read from JSON; its computed `speedup`/`slower` dropped."""

    SPEC: dict[str, Any] = {"int8": str, "float": str, "format": str, "int8_ms": FINITE, "float_ms": FINITE,
                            "coverage": (dict, None), "op_times": (dict, None), "device": (str, None),
                            "notes": ListOf(str), "runs": (dict, None)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "a profile report", path: str = "speed") -> SpeedVerdict:
        return SpeedVerdict(**read_record(SpeedVerdict, data, where, cls.SPEC, path, _FIX))


@dataclass
class ProfileReport:
    """Everything one `edgeact profile` run measured, scored and judged.

    `models`: one row per model and runtime (and device). `speed`: INT8 against its float
    sibling, where both were profiled with the same settings. `crashed`: models whose runtime
    crashed (their rows are missing); `errors`: devices that failed. The CLI exits 2 on either,
    after printing the rest.
    """

    edgeact_version: str
    created: str
    target: TargetInfo
    host: HostInfo
    settings: ProfileSettings
    data: DataSummary
    reference: ReferenceInfo | None
    models: list[ProfileRow]
    devices: list[DeviceRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    speed: list[SpeedVerdict] = field(default_factory=list)
    # The streamed evaluation of --data (edgeact.profile.evaluate): chunk size and count, the
    # checkpoint folder, whether it was sharded, and per device lane its samples and rate.
    evaluation: dict | None = None
    schema_version: int = PROFILE_SCHEMA_VERSION

    def to_dict(self) -> dict:
        return {
            "schema_version": self.schema_version, "edgeact_version": self.edgeact_version,
            "created": self.created, "target": self.target.to_dict(), "host": self.host.to_dict(),
            "settings": self.settings.to_dict(), "data": self.data.to_dict(),
            "reference": self.reference.to_dict() if self.reference else None,
            "models": [row.to_dict() for row in self.models],
            "devices": [device.to_dict() for device in self.devices],
            "errors": list(self.errors), "crashed": list(self.crashed), "notes": list(self.notes),
            "speed": [verdict.to_dict() for verdict in self.speed],
            "evaluation": self.evaluation,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "profile report") -> "ProfileReport":
        """Read a report written by `to_dict`; ProfileDataError (one line, naming the key) if it is not one."""
        if not isinstance(data, dict):
            raise ProfileDataError(f"{where} is not an edgeact profile report (a JSON object expected); {_FIX}")
        version = data.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or version != PROFILE_SCHEMA_VERSION:
            raise ProfileDataError(f"{where} has profile schema version {version!r}; this edgeact reads version "
                                   f"{PROFILE_SCHEMA_VERSION}; {_FIX}")
        return cls(**read_record(cls, data, where, REPORT_SPEC, "", _FIX))


REPORT_SPEC: dict[str, Any] = {
    "schema_version": int, "edgeact_version": str, "created": str, "target": TargetInfo, "host": HostInfo,
    "settings": ProfileSettings, "data": DataSummary, "reference": (ReferenceInfo, None),
    "models": ListOf(ProfileRow), "devices": ListOf(DeviceRecord), "errors": ListOf(str),
    "crashed": ListOf(str), "notes": ListOf(str), "speed": ListOf(SpeedRecord),
    "evaluation": (dict, None),
}
