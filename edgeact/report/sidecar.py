"""Find and read the `<name>.edgeact.json` report that `edgeact convert` writes beside its models.

`out/mnist_int8.tflite`, `out/mnist_fp32.tflite` and `out/mnist_int8.onnx` all belong to
`out/mnist.edgeact.json`: the name is the file's stem without a trailing `_int8`/`_fp32`
(or `_int8_edgetpu`, as edgetpu_compiler names its output). The report says how the model
was fed during calibration (preprocessing), its class labels and its input shape, so that
`profile` feeds the model the same way. Device-side: json and the standard library only.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from edgeact.data.preprocess import Preprocessing
from edgeact.errors import InputError

from .validate import validate_report_data

REPORT_SUFFIX = ".edgeact.json"
_VARIANT = re.compile(r"_(int8|fp32|float32|fp16)(_edgetpu)?$")


@dataclass(frozen=True)
class ModelReport:
    """What profile needs from a convert report."""

    path: Path
    name: str
    preprocessing: Preprocessing
    labels: list[str] | None
    input_shape: tuple[int, ...] | None  # (H, W, C), without batch
    input_range: tuple[float, float] | None = None  # of the calibration inputs, after preprocessing
    output_kinds: dict[str, str] | None = None  # output name -> "class_scores" | "dense" (schema 2)
    target: str | None = None  # the device `convert --target` converted for (edgeact.targets.Target)


def report_name(model_path: str | Path) -> str:
    """`mnist_int8.tflite` -> `mnist`; a stem without a variant suffix is kept whole."""
    return _VARIANT.sub("", Path(model_path).stem)


def report_path(model_path: str | Path) -> Path:
    model_path = Path(model_path)
    return model_path.with_name(report_name(model_path) + REPORT_SUFFIX)


def read_report(path: str | Path) -> ModelReport:
    """Parse a report file; InputError if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{path} is not a readable edgeact report ({type(exc).__name__}); "
                         "re-run edgeact convert, or move it away and pass --preprocess") from None
    validate_report_data(data, path)  # types, ranges, finite numbers, schema version: before any use
    preprocessing = Preprocessing.from_dict(data["preprocessing"])
    # schema 2 lists inputs by name; schema 1 (edgeact 0.1) had one "input".
    inputs = data.get("inputs") or ([data["input"]] if data.get("input") else [])
    shape = inputs[0].get("shape") if len(inputs) == 1 else None
    labels = data.get("labels")
    calibration = data.get("calibration") or {}
    low, high = calibration.get("input_min"), calibration.get("input_max")
    return ModelReport(
        path=path, name=str(data.get("name") or report_name(path)), preprocessing=preprocessing,
        labels=[str(label) for label in labels] if labels else None,
        input_shape=tuple(int(d) for d in shape) if shape else None,
        input_range=(float(low), float(high)) if low is not None and high is not None else None,
        output_kinds={str(o["name"]): str(o.get("kind")) for o in data.get("outputs") or []
                      if isinstance(o, dict) and "name" in o} or None,
        target=(data.get("target") or {}).get("name"),
    )


def find_report(model_path: str | Path) -> ModelReport | None:
    """The report beside a model, or None when there is none."""
    path = report_path(model_path)
    return read_report(path) if path.is_file() else None


def float_sibling(model_path: str | Path, fmt: str) -> Path | None:
    """The float model the convert report beside `model_path` names for format `fmt`, or None.

    Read through the typed report (`ConvertReport`); the file is looked for beside the report
    by name, so a folder of converted models that was moved or copied still pairs up. None
    without a report, with a report of another schema, or one that converted no float `fmt` file.
    """
    from .records import ConvertReport

    path = report_path(model_path)
    if not path.is_file():
        return None
    try:
        report = ConvertReport.from_dict(json.loads(path.read_text()), str(path))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, InputError):
        return None
    section = report.formats.get(fmt)
    named = section.files.get("fp32") if section else None
    return path.parent / Path(named).name if named else None
