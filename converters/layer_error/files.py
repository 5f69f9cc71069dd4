"""Per-layer error of models converted earlier: find each INT8 model's float twin, read the samples.

`edgeact convert` writes `<name>_int8.tflite` beside `<name>_fp32.tflite` (and the same for
.onnx) and `<name>.edgeact.json`, whose preprocessing and input shape say how to feed them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeact.data.preprocess import Preprocessing, make_preprocessing
from edgeact.errors import InputError
from edgeact.report.layer_errors import LayerErrorReport
from edgeact.report.sidecar import find_report

from .measure import DEFAULT_SAMPLES, layer_errors

_SUFFIXES = {".tflite": "tflite", ".onnx": "onnx"}


@dataclass(frozen=True)
class LayerJob:
    """What `edgeact layers` was asked to measure."""

    models: tuple[Path, ...]  # INT8 .tflite / .onnx
    data: Path | str
    float_model: Path | None = None  # only with a single model; else `<name>_fp32.<ext>` beside each
    keras_model: Path | None = None  # gives layer names and the own-error column
    preprocessing: Preprocessing | None = None  # None: the convert report's, else unit
    samples: int = DEFAULT_SAMPLES
    seed: int = 0
    keras_code: Any = None  # --keras's custom objects / Lambda trust (converters.keras.model_code.ModelCode)


def find_float_twin(int8_path: Path) -> Path:
    """`out/m_int8.tflite` -> `out/m_fp32.tflite`; InputError when it is not there."""
    stem = int8_path.stem
    if stem.endswith("_int8"):
        twin = int8_path.with_name(stem[: -len("_int8")] + "_fp32" + int8_path.suffix)
        if twin.is_file():
            return twin
    raise InputError(f"no float model beside {int8_path} (looked for <name>_fp32{int8_path.suffix}); "
                     "give it with --float")


def _check_models(job: LayerJob) -> dict[str, tuple[Path, Path]]:
    pairs: dict[str, tuple[Path, Path]] = {}
    if job.float_model is not None and len(job.models) != 1:
        raise InputError("--float names the float twin of one model; give one INT8 model with it, "
                         "or leave --float out and keep <name>_fp32 files beside the INT8 ones")
    for model in job.models:
        fmt = _SUFFIXES.get(model.suffix.lower())
        if fmt is None:
            raise InputError(f"{model} is neither .tflite nor .onnx; give the INT8 model edgeact convert wrote")
        if not model.is_file():
            raise InputError(f"{model} does not exist; give the INT8 model edgeact convert wrote")
        if fmt in pairs:
            raise InputError(f"two {fmt} models given; compare one .tflite and one .onnx per run")
        twin = job.float_model or find_float_twin(model)
        if not twin.is_file():
            raise InputError(f"float model {twin} does not exist")
        if twin.suffix.lower() != model.suffix.lower():
            raise InputError(f"--float {twin} is not a {model.suffix} model like {model}")
        pairs[fmt] = (twin, model)
    return pairs


def _input_shape(model: Path, report) -> tuple[int, ...]:
    """(H, W, C) the samples must have: the convert report's, else the model's own."""
    if report is not None and report.input_shape:
        return report.input_shape
    if model.suffix.lower() == ".tflite":
        from edgeact.runtime.tflite import TFLiteRunner

        return tuple(TFLiteRunner(model, delegate="none").inputs[0].shape[1:])
    import onnx

    dims = tuple(d.dim_value for d in onnx.load(str(model), load_external_data=False)
                 .graph.input[0].type.tensor_type.shape.dim[1:])
    if len(dims) == 3 and dims[0] in (1, 3) and dims[2] not in (1, 3):
        return (dims[1], dims[2], dims[0])  # an NCHW export
    return dims


def read_samples(job: LayerJob, model: Path) -> np.ndarray:
    """Model inputs (N, H, W, C) from --data, preprocessed as the model was calibrated."""
    from calibration import read_calibration
    from edgeact.data.samples import ModelInput

    report = find_report(model)
    preprocessing = job.preprocessing or (report.preprocessing if report else make_preprocessing())
    shape = _input_shape(model, report)
    if not shape or any(d <= 0 for d in shape):
        raise InputError(f"{model} has an input of undefined size {shape}; layers needs a fixed input size")
    calib = read_calibration(job.data, ModelInput("input", tuple(int(d) for d in shape)), preprocessing,
                             samples=job.samples, holdout=0, seed=job.seed)
    return calib.calibration.array()


def measure_layers(job: LayerJob) -> LayerErrorReport:
    """The per-layer report of every model in the job, on the same samples."""
    pairs = _check_models(job)
    keras_model = None
    if job.keras_model is not None:
        from converters.keras.loader import load_model

        keras_model = load_model(job.keras_model, job.keras_code).keras_model
        if keras_model is None:
            raise InputError(f"--keras {job.keras_model} is a SavedModel; give the .keras or .h5 file")
    samples = read_samples(job, job.models[0])
    return layer_errors(samples, tflite=pairs.get("tflite"), onnx=pairs.get("onnx"), keras_model=keras_model,
                        max_samples=job.samples)
