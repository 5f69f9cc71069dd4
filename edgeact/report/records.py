"""The convert report as small typed records: what `convert` writes, `inspect`/`profile` read back.

`ConvertReport.to_dict()` is the `<name>.edgeact.json` file; `ConvertReport.from_dict()` reads
it back and refuses, in one line, a report of a schema it does not know. Every verdict is a
`Check`; the report's verdict is that all of them passed, so rendering, `checks_passed` and
the device side iterate over checks instead of naming report keys. Device-side: standard
library only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgeact.errors import InputError
from edgeact.fileio import json_safe

# 1: edgeact 0.1 (one input, one output, untyped). 2: named inputs/outputs, typed checks.
SCHEMA_VERSION = 2


class OutputKind:
    """How an output is judged. Plain strings in the report, so older readers can print them."""

    CLASS_SCORES = "class_scores"  # softmax probabilities or logits of a classifier: top-1 + cosine
    DENSE = "dense"  # maps, boxes, landmarks, embeddings, features: SQNR + relative error


@dataclass
class TensorInfo:
    """A model input or output by its Keras name. `kind` and `why` only for outputs."""

    name: str
    shape: list[int]  # without the batch axis
    kind: str | None = None
    why: str | None = None  # what made edgeact judge the output as `kind`

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> "TensorInfo":
        return cls(name=str(data["name"]), shape=[int(d) for d in data["shape"]], kind=data.get("kind"),
                   why=data.get("why"))


@dataclass
class Check:
    """One verdict: what was checked, by which rule, whether it passed, and what to do if not.

    Args:
        kind: a name from CHECK_KINDS (which group the check belongs to).
        subject: what was checked, e.g. "tflite int8 vs keras" or "onnx fusion (fp32)".
        output: the model output the check is about, if any.
        rule: the rule that judged it, e.g. "class scores: top-1 agreement >= 0.97, cosine >= 0.98".
        summary: the evidence, one line.
        advice: the next step when it failed (names the cause where it is known).
        metrics: the numbers behind the verdict.
    """

    kind: str
    subject: str
    passed: bool
    rule: str = ""
    summary: str = ""
    advice: str = ""
    output: str | None = None
    format: str | None = None
    metrics: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.subject} ({self.output})" if self.output else self.subject

    def to_dict(self) -> dict:
        # inf/nan are not JSON: written as strings ("inf", as everywhere), read back by from_dict.
        return {**asdict(self), "metrics": json_safe(self.metrics)}

    @classmethod
    def from_dict(cls, data: dict) -> "Check":
        known = {f.name for f in fields(cls)}
        item = {k: v for k, v in data.items() if k in known}
        item["metrics"] = {k: _number_from_json(v) for k, v in (data.get("metrics") or {}).items()}
        return cls(**item)


# Check kinds, in the order a report shows them. Host-side producers register under these names.
CHECK_KINDS: dict[str, str] = {
    "export": "exports written",
    "names": "inputs and outputs matched by name",
    "parity": "converted vs float model, per output",
    "cross_format": "TFLite INT8 vs ONNX INT8",
    "budget": "accuracy budget on the evaluation data (convert --max-drop/--min-agreement/--min-sqnr)",
    "fusion": "BatchNorm folded, ReLU/ReLU6 fused",
    "integer_only": "full-integer INT8",
    "integer_kernels": "integer kernels after ONNX Runtime's optimiser",
    "graph_shape": "ONNX graph layout",
}


@dataclass
class FormatReport:
    """One format's exports: files, sizes, the runtime that verified them and what it found.

    `details` holds the format's own evidence (op counts, fusion tables, quantization
    settings); `error` says why the export failed, when it did (the other formats are still
    written and verified).
    """

    format: str
    files: dict[str, str] = field(default_factory=dict)
    size_bytes: dict[str, int] = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "FormatReport":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ConvertReport:
    """Everything `edgeact convert` found and decided, written beside the models it converted."""

    name: str
    edgeact_version: str
    created: str
    source: dict
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    preprocessing: dict
    labels: list[str] | None = None
    input_normalization: list[dict] = field(default_factory=list)  # layers that normalise raw pixels
    calibration: dict = field(default_factory=dict)
    tolerances: dict = field(default_factory=dict)
    activation_stats: list[dict] = field(default_factory=list)
    passes: list[dict] = field(default_factory=list)
    formats: dict[str, FormatReport] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layer_errors: dict | None = None  # edgeact.report.layer_errors.LayerErrorReport.to_dict(), when measured
    # With a budget: {budget, metric, eval_data, met, formats: {fmt: SearchResult.to_dict() + file}}
    # (converters.budget.search); rendered by edgeact.report.budget. Optional: schema 2 without it reads.
    accuracy_budget: dict | None = None
    # The device convert converted for (edgeact.targets.target_record): name (None without --target),
    # its CPU class, threads, the defaults it set. Optional: schema 2 without it reads.
    target: dict | None = None
    # Weight rounding and bias correction (converters.rounding.RoundingResult.to_dict()): per layer,
    # what each step did to the held-out error and whether it was kept. Optional: schema 2 without it reads.
    weight_rounding: dict | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def checks_passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def failed_checks(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def checks_of(self, kind: str) -> list[Check]:
        return [check for check in self.checks if check.kind == kind]

    def output(self, name: str) -> TensorInfo:
        for info in self.outputs:
            if info.name == name:
                return info
        raise KeyError(name)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["inputs"] = [t.to_dict() for t in self.inputs]
        data["outputs"] = [t.to_dict() for t in self.outputs]
        data["formats"] = {k: v.to_dict() for k, v in self.formats.items()}
        data["checks"] = [c.to_dict() for c in self.checks]
        data["checks_passed"] = self.checks_passed
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "report") -> "ConvertReport":
        """Read a report written by `to_dict`; InputError naming the version or key if it is not one."""
        if not isinstance(data, dict):
            raise InputError(f"{where} is not an edgeact report (a JSON object expected); re-run edgeact convert")
        from .validate import validate_report_data

        validate_report_data(data, where)  # types, ranges, finite numbers, known version: before any use
        version = data.get("schema_version", 1)
        if version != SCHEMA_VERSION:
            raise InputError(f"{where} has report schema version {version}; this edgeact reads version "
                             f"{SCHEMA_VERSION}; re-run edgeact convert to rewrite it")
        try:
            known = {f.name for f in fields(cls)}
            item = {k: v for k, v in data.items() if k in known}
            item["inputs"] = [TensorInfo.from_dict(t) for t in data["inputs"]]
            item["outputs"] = [TensorInfo.from_dict(t) for t in data["outputs"]]
            item["formats"] = {k: FormatReport.from_dict(v) for k, v in (data.get("formats") or {}).items()}
            item["checks"] = [Check.from_dict(c) for c in data.get("checks") or []]
            return cls(**item)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where} is not a valid edgeact report (bad or missing key {exc}); "
                             "re-run edgeact convert") from None


def _number_from_json(value):
    if value in ("inf", "-inf", "nan"):
        return float(value)
    return value
