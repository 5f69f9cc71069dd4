"""Typed options shared by the library and the CLI.

The CLI's `click.Choice` values are built from these enums, so the two cannot drift apart.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Format(str, enum.Enum):
    """Model formats `convert` can write."""

    TFLITE = "tflite"
    ONNX = "onnx"


class IOType(str, enum.Enum):
    """Input/output tensor type of the INT8 model (the body is int8 either way)."""

    FLOAT = "float"
    INT8 = "int8"
    UINT8 = "uint8"


class CalibrationMethod(str, enum.Enum):
    """How activation ranges are derived from calibration samples (ONNX Runtime)."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"


class OnnxLayout(str, enum.Enum):
    """Input layout of the exported ONNX model."""

    NHWC = "nhwc"
    NCHW = "nchw"


def choices(enum_type: type[enum.Enum]) -> list[str]:
    """The values of an enum, for `click.Choice`."""
    return [member.value for member in enum_type]


@dataclass(frozen=True)
class Tolerances:
    """How close the INT8 model must stay to the float model on held-out samples.

    Defaults are what a well-calibrated INT8 CNN reaches; `convert` marks each check
    with a check mark or a cross against them.
    """

    min_top1_agreement: float = 0.97
    min_cosine: float = 0.98
    # Float exports (fp32 .tflite/.onnx vs Keras) differ only by float rounding.
    float_max_abs_diff: float = 1e-4
