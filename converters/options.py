"""What `convert` can be told: one typed options object the CLI builds and the library checks."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converters.keras.model_code import ModelCode
from edgeact.config import CalibrationMethod, Format, Int8Steps, IOType, LayerErrorMode, OnnxLayout, Tolerances
from edgeact.data.preprocess import Preprocessing
from edgeact.errors import InputError


@dataclass(frozen=True)
class Budget:
    """Exactly one of: top-1 drop in percentage points (needs labels), top-1 agreement with float,
    output SQNR in dB against float."""

    max_drop: float | None = None
    min_agreement: float | None = None
    min_sqnr: float | None = None
    # How the search judges and how far it goes (converters.budget.explore):
    min_int8_share: float = 0.5  # of the conv/dense MACs; below it a result is not an INT8 model
    eval_holdout: float = 0.3    # of the evaluation samples kept aside to judge the chosen model
    search_seconds: float = 900.0  # no new attempt after this long (per format)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.min_int8_share) <= 1.0:
            raise InputError(f"--min-int8-share {self.min_int8_share:g} is outside 0..1 (the share of the "
                             "conv/dense multiply-accumulates computed in INT8); give e.g. --min-int8-share 0.5")
        if not 0.0 <= float(self.eval_holdout) < 1.0:
            raise InputError(f"--eval-holdout {self.eval_holdout:g} is outside [0, 1) (the share of the evaluation "
                             "samples the search does not select on); give e.g. --eval-holdout 0.3")
        if not float(self.search_seconds) > 0:
            raise InputError(f"--search-seconds {self.search_seconds:g} is not positive; "
                             "give e.g. --search-seconds 900")
        given = [v for v in (self.max_drop, self.min_agreement, self.min_sqnr) if v is not None]
        if len(given) != 1:
            raise InputError("give exactly one budget: --max-drop, --min-agreement or --min-sqnr")
        value = float(given[0])
        if not np.isfinite(value):
            raise InputError(f"--{self.option} {value} is not a finite number; give e.g. {self.example}")
        if self.max_drop is not None and not 0 <= value <= 100:
            raise InputError(f"--max-drop {value:g} is outside 0..100 (top-1 percentage points lost against "
                             "float); give e.g. --max-drop 0.5")
        if self.min_agreement is not None and not 0 < value <= 1:
            raise InputError(f"--min-agreement {value:g} is outside (0, 1] (the fraction of samples whose top-1 "
                             "matches float); give e.g. --min-agreement 0.99")

    @property
    def option(self) -> str:
        return "max-drop" if self.max_drop is not None else \
            "min-agreement" if self.min_agreement is not None else "min-sqnr"

    @property
    def value(self) -> float:
        return next(v for v in (self.max_drop, self.min_agreement, self.min_sqnr) if v is not None)

    @property
    def example(self) -> str:
        return {"max-drop": "--max-drop 0.5", "min-agreement": "--min-agreement 0.99",
                "min-sqnr": "--min-sqnr 30"}[self.option]

    @property
    def top1(self) -> bool:
        """Whether the metric compares top-1 classes (it needs one class-score output)."""
        return self.min_sqnr is None

    @property
    def metric(self) -> str:
        return "top-1 drop (pp)" if self.max_drop is not None else \
            "top-1 agreement" if self.min_agreement is not None else "output SQNR (dB)"

    def met(self, value: float) -> bool:
        slack = 1e-9  # 96.1 % - 95.6 % is 0.50000000001 pp in floating point
        if self.max_drop is not None:
            return value <= self.max_drop + slack
        if self.min_agreement is not None:
            return value >= self.min_agreement - slack
        return value >= self.min_sqnr - slack

    def better(self, a: float, b: float) -> bool:
        """Whether metric value a is better than b."""
        return a < b if self.max_drop is not None else a > b


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
    # A key of edgeact.config.ONNX_WEIGHT_LEVELS: 7 (x86-64 without VNNI) or 8 (ARM/VNNI); None: the target's.
    onnx_weight_bits: int | None = None
    # The device the model is for (edgeact.targets.Target value); None: a Raspberry Pi-class ARM CPU.
    target: str | None = None
    opset: int = 17
    input_shapes: dict = field(default_factory=dict)  # {input name or None: shape}, for open sizes
    output_kinds: dict = field(default_factory=dict)  # {output name: OutputKind}, overriding the guess
    # Weight rounding by output error and bias correction (converters.rounding): auto keeps each per layer
    # where the held-out error improves.
    int8_steps: Int8Steps = Int8Steps.AUTO
    layer_error: LayerErrorMode = LayerErrorMode.ALWAYS  # per-layer error: always, auto (an INT8 check failed), never
    budget: Budget | None = None  # an accuracy budget: search until met (converters.budget.search)
    eval_data: str | Path | None = None  # labelled data the budget is measured on; None: the held-out samples
    model_code: ModelCode = field(default_factory=ModelCode)  # --custom-objects, --trust-model-code
    progress: bool | None = None  # None: a progress bar when stderr is a terminal
    verbose: bool = False
