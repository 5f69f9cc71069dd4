"""What exporters and checks get: the folded model, its signature, the data, the float reference."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from converters.keras.signature import ModelSignature

from .options import ConvertOptions


@dataclass
class ConvertJob:
    """One conversion in progress.

    `reference_outputs` are the user's float model's outputs on the held-out samples, keyed by
    output name; `predictions` collects each written model's outputs on the same samples,
    keyed by variant ("tflite_int8", "onnx_fp32", ...) and then by output name.
    """

    name: str
    output_dir: Path
    loaded: Any  # converters.keras.loader.LoadedModel
    keras_model: Any  # after graph passes; None for a SavedModel
    signature: ModelSignature
    calibration: Any  # calibration.CalibrationSet
    reference_outputs: dict[str, np.ndarray]
    options: ConvertOptions
    stats: list = field(default_factory=list)  # calibration.statistics.ActivationStats
    pass_results: list = field(default_factory=list)  # converters.passes.registry.PassResult
    notes: list[str] = field(default_factory=list)
    input_normalization: list[dict] = field(default_factory=list)
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    int8_files: dict[str, Path] = field(default_factory=dict)  # staged INT8 model by format, for diagnoses
    calibration_source: str | None = None  # the calibration path as the user gave it, for the advice's commands
    # The float reference's graph: the passes without the INT8-only ones (converters.passes.pipeline.
    # INT8_ONLY_PASSES); None when it is keras_model itself.
    float_keras_model: Any = None
    # Layers those INT8-only passes rewrote -> the factor between the INT8 and the float output
    # (6 where decompose_hard_swish moved the 1/6 into the next kernels): the per-layer error pairs them.
    int8_rewrites: dict[str, float] = field(default_factory=dict)
    # Weight rounding and bias correction (converters.rounding.RoundingResult, None when not run): the
    # candidate kernels each INT8 exporter judges, and the float outputs on its judge samples by output name.
    weight_rounding: Any = None
    judge_reference: dict[str, np.ndarray] = field(default_factory=dict)
    weight_steps: dict = field(default_factory=dict)  # format -> the step its exporter kept, and the judge's figures
    range_steps: dict = field(default_factory=dict)  # format -> whether per-tensor activation ranges were kept, and why
    # Cross-layer equalization of the model (converters.rounding.equalization): its kernels and biases as
    # KernelChanges each exporter writes into a copy of its float model, recalibrates and judges; the
    # verdicts by format.
    equalization: list = field(default_factory=list)
    equalization_steps: dict = field(default_factory=dict)
    equalized_keras_model: Any = None
    # format -> the equalized float model (.tflite bytes, or an .onnx path in `scratch`) where the
    # format kept equalization: what its per-layer error is measured against.
    equalized_float: dict = field(default_factory=dict)
    _scratch: Any = field(default=None, repr=False)

    def scratch(self) -> Path:
        """A private temporary folder for the conversion's intermediate files, removed by `cleanup`."""
        import tempfile

        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="edgeact-job-")
        return Path(self._scratch.name)

    def cleanup(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def mark_superseded(self, fmt: str, by: str) -> None:
        """`by` won in `fmt` (cross-layer equalization, or an accuracy budget's attempt), so the INT8
        steps kept before it are not in the file, and their records say so. A step already marked
        keeps what replaced it first; a step is not marked as replaced by itself."""
        for steps in (self.weight_steps, self.range_steps, self.equalization_steps):
            step = steps.get(fmt) or {}
            if step.get("kept", "none") not in ("none", by) and not step.get("superseded"):
                step["superseded"] = by

    @property
    def input_names(self) -> list[str]:
        return self.signature.input_names

    @property
    def output_names(self) -> list[str]:
        return self.signature.output_names

    @property
    def input_name(self) -> str:
        """The first (for image models, the image) input's name: what pixel-in and metadata describe."""
        return self.signature.inputs[0].name

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.signature.inputs[0].shape)

    @contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Any]:
        with progress_step(description, self.options.progress, total) as bar:
            yield bar


# Held-out samples a float export is checked on (the INT8 models: all of them). A float export
# differs from Keras by float rounding or by a semantic error that shows on any input; the
# statistics of INT8 agreement need the full set. On VGG16, 68 more float runs were 18 s.
FLOAT_CHECK_SAMPLES = 32


def verify_threads() -> int:
    """Threads convert runs the exported models with (verification, the timed loop): every core.
    LiteRT's default is one thread, which made the held-out check of a VGG16 1.6x slower."""
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (containers, taskset)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def progress_step(description: str, progress: bool | None, total: int | None = None):
    """A progress bar on a terminal; elsewhere (CI logs) one line with its time when the step is done."""
    from .progress import step

    return step(description, total, progress)
