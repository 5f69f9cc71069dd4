"""What `convert` can be told: one typed options object the CLI builds and the library checks."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeact.config import CalibrationMethod, Format, IOType, OnnxLayout, Tolerances
from edgeact.preprocess import Preprocessing

from .fallback import Budget


@dataclass
class ConvertOptions:
    """Everything `convert` can be told; the CLI builds one of these from its options.

    `preprocessing` None means: decide from the model (the identity for a model that
    normalises its own input with Rescaling/Normalization layers, `unit` otherwise).
    """

    formats: tuple[Format, ...] = (Format.TFLITE,)
    io_type: IOType = IOType.INT8
    preprocessing: Preprocessing | None = None
    samples: int = 200
    holdout: int = 100
    seed: int = 0
    passes: tuple[str, ...] | None = None  # None: the default pipeline; () turns fusion off
    labels: list[str] | None = None
    name: str | None = None
    force: bool = False
    tolerances: Tolerances = field(default_factory=Tolerances)
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    percentile: float = 99.999
    onnx_layout: OnnxLayout = OnnxLayout.NHWC
    onnx_weight_bits: int = 7  # a key of edgeact.config.ONNX_WEIGHT_LEVELS: 7 (every CPU) or 8 (ARM/VNNI)
    opset: int = 17
    input_shapes: dict = field(default_factory=dict)  # {input name or None: shape}, for open sizes
    output_kinds: dict = field(default_factory=dict)  # {output name: OutputKind}, overriding the guess
    layer_error: str = "always"  # per-layer error: "always", "auto" (when an INT8 check fails), "never"
    budget: Budget | None = None  # an accuracy budget: search until met (converters.budget_search)
    eval_data: str | Path | None = None  # labelled data the budget is measured on; None: the held-out samples
    progress: bool | None = None  # None: a progress bar when stderr is a terminal
    verbose: bool = False
