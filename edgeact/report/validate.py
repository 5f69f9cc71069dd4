"""Check a `<name>.edgeact.json` report before profile uses it.

A report travels with downloaded models, so it is input like any other: a huge input shape
made `profile --data` grow to 19.7 GB, a NaN scale or a zero std silently gave 10%
accuracy. Every key profile reads is checked for its type, range and finiteness, and the
schema version against what this edgeact reads; the error names the key. Device-side:
standard library only.
"""
from __future__ import annotations

import math
from pathlib import Path

from edgeact.errors import InputError
from edgeact.formats.limits import MAX_INPUT_SAMPLE_ELEMENTS, MAX_RANK

SCHEMA_VERSIONS = (1, 2)  # a report without "schema_version" is version 1
MAX_CHANNELS = 64
MAX_LABELS = 1_000_000


class ReportError(InputError):
    """A report is not one this edgeact can use; the message names the key."""


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_report_data(data, path: Path | str) -> None:
    """Raise ReportError naming the first key that is missing, of the wrong type or out of range."""
    def fail(key: str, problem: str) -> None:
        raise ReportError(f"report {path}: '{key}' {problem}; re-run edgeact convert, "
                          "or move the report away and pass --preprocess")

    if not isinstance(data, dict):
        fail("(top level)", "is not a JSON object")
    version = data.get("schema_version", 1)
    if not _integer(version) or version not in SCHEMA_VERSIONS:
        raise ReportError(f"report {path} has schema version {version!r}; this edgeact reads "
                          f"{SCHEMA_VERSIONS[0]}-{SCHEMA_VERSIONS[-1]}; re-run edgeact convert")
    if "name" in data and not isinstance(data["name"], str):
        fail("name", "is not a string")
    pre = data.get("preprocessing")
    if not isinstance(pre, dict):
        fail("preprocessing", "is missing or not an object")
    if not isinstance(pre.get("preset"), str):
        fail("preprocessing.preset", "is missing or not a string")
    if not _number(pre.get("scale", 1.0)) or pre.get("scale", 1.0) <= 0:
        fail("preprocessing.scale", f"is {pre.get('scale')!r}, not a finite number above 0")
    for key, positive in (("mean", False), ("std", True)):
        values = pre.get(key, [1.0])
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_CHANNELS \
                or not all(_number(v) and (v > 0 or not positive) for v in values):
            fail(f"preprocessing.{key}", f"is {str(values)[:60]}, not a list of 1 to {MAX_CHANNELS} finite numbers"
                 + (" above 0" if positive else ""))
    if not isinstance(pre.get("bgr", False), bool):
        fail("preprocessing.bgr", "is not true or false")
    _check_input(data.get("input"), fail)
    inputs = data.get("inputs")  # schema 2: every input by name
    if inputs is not None:
        if not isinstance(inputs, list) or len(inputs) > MAX_LABELS:
            fail("inputs", "is not a list of inputs")
        for k, item in enumerate(inputs):
            _check_input(item, fail, f"inputs[{k}]")
    outputs = data.get("outputs")
    if isinstance(outputs, list) and version == 2:
        for k, item in enumerate(outputs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                fail(f"outputs[{k}]", "is not an output with a name")
            if item.get("kind") not in (None, "class_scores", "dense"):
                fail(f"outputs[{k}].kind", f"is {str(item.get('kind'))[:40]!r}, not class_scores or dense")
    budget = data.get("accuracy_budget")  # optional in schema 2 (convert --max-drop/...)
    if budget is not None and (not isinstance(budget, dict) or not isinstance(budget.get("formats", {}), dict)):
        fail("accuracy_budget", "is not an object with formats")
    rounding = data.get("weight_rounding")  # optional in schema 2 (converters.rounding)
    if rounding is not None and (not isinstance(rounding, dict) or not isinstance(rounding.get("layers", []), list)):
        fail("weight_rounding", "is not an object with a list of layers")
    target = data.get("target")  # optional in schema 2 (convert --target)
    if target is not None:
        from edgeact.targets import Target

        known = [t.value for t in Target]
        if not isinstance(target, dict) or target.get("name") not in (None, *known):
            fail("target.name", f"is {str((target or {}).get('name') if isinstance(target, dict) else target)[:40]!r}, "
                 f"not one of {', '.join(known)}")
    labels = data.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) > MAX_LABELS
                               or not all(isinstance(label, (str, int)) for label in labels)):
        fail("labels", "is not a list of class names")
    calibration = data.get("calibration")
    if calibration is None:
        return
    if not isinstance(calibration, dict):
        fail("calibration", "is not an object")
    low, high = calibration.get("input_min"), calibration.get("input_max")
    for key, value in (("input_min", low), ("input_max", high)):
        if value is not None and not _number(value):
            fail(f"calibration.{key}", f"is {value!r}, not a finite number")
    if _number(low) and _number(high) and low > high:
        fail("calibration.input_min", f"{low} is above input_max {high}")


def _check_input(model_input, fail, key: str = "input") -> None:
    if model_input is None:
        return
    if not isinstance(model_input, dict):
        fail(key, "is not an object")
    shape = model_input.get("shape")
    if shape is None:
        return
    if not isinstance(shape, list) or not 1 <= len(shape) < MAX_RANK or not all(_integer(d) and d > 0 for d in shape):
        fail(f"{key}.shape", f"is {str(shape)[:60]}, not a list of positive dimensions (height, width, channels)")
    elements = math.prod(shape)
    if elements > MAX_INPUT_SAMPLE_ELEMENTS:
        fail(f"{key}.shape", f"{shape} is {elements:,} values per sample, over edgeact's limit of "
                            f"{MAX_INPUT_SAMPLE_ELEMENTS:,}")
