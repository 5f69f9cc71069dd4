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


class Int8Steps(str, enum.Enum):
    """Which weight steps convert keeps (converters.rounding): each where the held-out error says it
    helps (auto), all of them, or none (the converters' own round-to-nearest)."""

    AUTO = "auto"
    ALL = "all"
    NONE = "none"


# ONNX INT8 weight bits -> the symmetric range quantize_static gives per-channel weights: 7 is ORT's
# reduce_range, exact in its integer kernels on every CPU; 8 saturates on x86-64 without VNNI and is
# for ARM/VNNI targets (edgeact.cpu_features).
ONNX_WEIGHT_LEVELS = {7: 64, 8: 127}


class OnnxLayout(str, enum.Enum):
    """Input layout of the exported ONNX model."""

    NHWC = "nhwc"
    NCHW = "nchw"


class LayerErrorMode(str, enum.Enum):
    """When `convert` measures the per-layer INT8 error for its report."""

    ALWAYS = "always"
    AUTO = "auto"  # only when an INT8 check fails
    NEVER = "never"


def choices(enum_type: type[enum.Enum]) -> list[str]:
    """The values of an enum, for `click.Choice`."""
    return [member.value for member in enum_type]


@dataclass(frozen=True)
class Tolerances:
    """How close converted models must stay to the float model on held-out samples.

    INT8 class-score outputs are judged by top-1 agreement and cosine, INT8 dense outputs by
    SQNR and the 99.9th percentile of their error relative to the output's range
    (`max_relative_diff`, key rel-diff), float exports by a relative
    error or an SQNR that only float rounding reaches. `--tolerance KEY=VALUE` overrides any.
    """

    min_top1_agreement: float = 0.97
    min_cosine: float = 0.98
    min_sqnr_db: float = 15.0
    max_relative_diff: float = 0.25
    float_min_sqnr_db: float = 60.0
    float_max_relative_diff: float = 1e-3

    # --tolerance keys, as a user types them.
    KEYS = {"top1": "min_top1_agreement", "cosine": "min_cosine", "sqnr": "min_sqnr_db",
            "rel-diff": "max_relative_diff", "float-sqnr": "float_min_sqnr_db",
            "float-rel-diff": "float_max_relative_diff"}

    def to_dict(self) -> dict:
        return {key: getattr(self, attr) for key, attr in self.KEYS.items()}

    def with_overrides(self, items: list[str] | tuple[str, ...]) -> "Tolerances":
        """`["sqnr=20", "top1=0.95"]` applied; InputError naming a bad key or value."""
        import dataclasses
        import math

        from .errors import InputError

        changes = {}
        for item in items:
            key, _, value = item.partition("=")
            attr = self.KEYS.get(key.strip())
            if attr is None:
                raise InputError(f"--tolerance '{item}': unknown key '{key}'; use one of {', '.join(self.KEYS)}")
            try:
                number = float(value)
            except ValueError:
                raise InputError(f"--tolerance '{item}': '{value}' is not a number; give e.g. {key}=0.9") from None
            if not math.isfinite(number) or number < 0 or (key in ("top1", "cosine") and number > 1):
                raise InputError(f"--tolerance '{item}' is out of range; top1 and cosine lie in [0, 1], "
                                 "the others are >= 0")
            changes[attr] = number
        return dataclasses.replace(self, **changes)
