"""Host-side conversion: one entry point, `convert()`, dispatching to registered exporters by format.

    convert("model.keras", "photos/", "out/", ConvertOptions(formats=(Format.TFLITE, Format.ONNX)))

loads the model, reads the calibration data, gathers activation statistics, runs the graph
passes (verified numerically), hands the folded model to each exporter, and writes every
output and the `<name>.edgeact.json` report together, or none of them.
"""
from __future__ import annotations

import datetime as _dt
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np

from edgeact import __version__
from edgeact.config import CalibrationMethod, Format, IOType, OnnxLayout, Tolerances
from edgeact.errors import InputError, ModelLoadError, VerificationError
from edgeact.fileio import StagedOutputs, check_output_folder, check_writable, sha256_of, staged_outputs
from edgeact.model_report import REPORT_SUFFIX
from edgeact.preprocess import Preprocessing, make_preprocessing



@dataclass
class ConvertOptions:
    """Everything `convert` can be told; the CLI builds one of these from its options."""

    formats: tuple[Format, ...] = (Format.TFLITE,)
    io_type: IOType = IOType.INT8
    preprocessing: Preprocessing = field(default_factory=make_preprocessing)
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
    opset: int = 17
    progress: bool | None = None  # None: a progress bar when stderr is a terminal


@dataclass
class ConvertJob:
    """What exporters get: the folded model, the data, the float reference and the options."""

    name: str
    output_dir: Path
    loaded: Any  # converters.keras_loader.LoadedModel
    keras_model: Any  # after graph passes; None for a SavedModel
    input_name: str
    input_shape: tuple[int, ...]
    output_names: list[str]
    calibration: Any  # calibration.CalibrationSet
    reference_outputs: list[np.ndarray]  # the user's float model on the held-out samples
    options: ConvertOptions
    # Held-out outputs of each converted model ("tflite_int8", "onnx_int8"), for cross-format parity.
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[Any]:
        """A progress bar (or spinner line) for one step, on the terminal only."""
        from tqdm import tqdm

        from edgeact.quiet import console

        bar = tqdm(total=total, desc=f"{description:<26}", file=console(), leave=False,
                   disable=self.options.progress is False or (self.options.progress is None and not console().isatty()),
                   bar_format="{desc} {bar} {n_fmt}/{total_fmt}" if total else "{desc} ...")
        try:
            yield bar
        finally:
            bar.close()


class Exporter(Protocol):
    format: Format

    def output_names(self, name: str) -> list[str]: ...

    def export(self, job: ConvertJob, staged: StagedOutputs) -> dict: ...


EXPORTERS: dict[Format, Exporter] = {}


def register_exporter(cls):
    """Class decorator: make an exporter available under its `format`."""
    EXPORTERS[cls.format] = cls()
    return cls


def _load_exporters() -> None:
    from . import onnx_exporter, tflite_exporter  # noqa: F401  (registers them)


def report_path(output_dir: Path, name: str) -> Path:
    """Where convert writes the report that `edgeact.model_report.find_report` reads back."""
    return Path(output_dir) / f"{name}{REPORT_SUFFIX}"


def convert(model: str | Path | Any, calibration: Any, output_dir: str | Path,
            options: ConvertOptions | None = None) -> dict:
    """Convert a Keras model to the requested formats and return the report.

    Args:
        model: a .keras/.h5 path, a SavedModel folder, or a Keras model object.
        calibration: an image folder, a .npy/.npz path, "random", an array or an iterable.
        output_dir: where `<name>_int8.tflite`, ... and `<name>.edgeact.json` go.
    Raises:
        EdgeactError subclasses for bad input or a refused conversion (nothing is written);
        VerificationError when outputs were written but fail the INT8 checks.
    """
    from calibration import read_calibration
    from calibration.sources import ModelInput
    from calibration.statistics import activation_statistics

    from .keras_loader import LoadedModel, check_graph_model, load_model
    from .passes import DEFAULT_PIPELINE, run_pipeline
    from .verify import predict_keras

    options = options or ConvertOptions()
    _load_exporters()
    formats = tuple(dict.fromkeys(Format(f) for f in options.formats))
    if not formats:
        raise InputError("no output format chosen; pass --format tflite and/or --format onnx")
    output_dir = Path(output_dir)
    check_output_folder(output_dir)
    if isinstance(model, (str, Path)):
        loaded = load_model(model)
    else:
        check_graph_model(model, Path(getattr(model, "name", "model")))
        loaded = LoadedModel(path=Path(f"{model.name}.keras"), kind="object", keras_model=model)
    name = options.name or loaded.name
    outputs = [output_dir / f for fmt in formats for f in EXPORTERS[fmt].output_names(name)]
    check_writable(outputs + [report_path(output_dir, name)], options.force)

    if loaded.keras_model is None and Format.ONNX in formats:
        raise InputError(f"{loaded.path} is a SavedModel folder, which converts to TFLite only; "
                         "give the .keras or .h5 file for ONNX")
    input_name, input_shape, output_names = _model_signature(loaded)
    job_input = ModelInput(input_name, input_shape)
    bar_job = ConvertJob(name, output_dir, loaded, None, input_name, input_shape, output_names,
                         None, [], options)
    with bar_job.step("reading calibration data", total=options.samples + options.holdout) as bar:
        calib = read_calibration(calibration, job_input, options.preprocessing, options.samples,
                                 options.holdout, options.seed, progress=bar)
    _check_labels(options.labels, output_names, loaded)

    reference = loaded.keras_model if loaded.keras_model is not None else loaded.saved_model_fn
    stats, pass_results, folded = [], [], loaded.keras_model
    if loaded.keras_model is not None:
        samples = calib.calibration.samples
        with bar_job.step("activation statistics"):
            stats = activation_statistics(loaded.keras_model, samples)
        passes = list(DEFAULT_PIPELINE if options.passes is None else options.passes)
        with bar_job.step("graph passes"):
            folded, pass_results = run_pipeline(loaded.keras_model, passes, samples[:64])
    with bar_job.step("float reference outputs"):
        reference_outputs = predict_keras(reference, calib.holdout)

    job = ConvertJob(name, output_dir, loaded, folded, input_name, input_shape, output_names,
                     calib, reference_outputs, options)
    report = {
        "edgeact_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "name": name,
        "source": {"path": str(loaded.path), "kind": loaded.kind, "sha256": _model_hash(loaded)},
        "input": {"name": input_name, "shape": list(input_shape), "layout": "NHWC", "dtype": "float32"},
        "outputs": output_names,
        "preprocessing": options.preprocessing.to_dict(),
        "labels": options.labels,
        "calibration": calib.summary,
        "activation_stats": [s.to_dict() for s in stats],
        "passes": [r.to_dict() for r in pass_results],
        "formats": {},
    }
    with staged_outputs() as staged:
        for fmt in formats:
            report["formats"][fmt.value] = EXPORTERS[fmt].export(job, staged)
        report["parity"] = _parity(job, report)
        report["checks_passed"] = _all_checks_pass(report)
        staged.write_json(report_path(output_dir, name), report)
        staged.commit()
    if not report["checks_passed"]:
        raise VerificationError(
            f"converted models written to {output_dir}, but {', '.join(_failed_checks(report))} failed; "
            "use more or better calibration data, or see the report"
        )
    return report


def _parity(job: ConvertJob, report: dict) -> dict:
    """Every float-vs-converted comparison in one place, plus TFLite INT8 vs ONNX INT8 when both exist."""
    from .verify import compare_outputs

    parity = {}
    for fmt, section in report["formats"].items():
        for name, checks in section.get("checks", {}).items():
            parity[f"{fmt}_{name}"] = checks
    if {"tflite_int8", "onnx_int8"} <= set(job.predictions):
        parity["tflite_int8_vs_onnx_int8"] = compare_outputs(
            job.predictions["tflite_int8"], job.predictions["onnx_int8"], job.output_names, job.options.tolerances)
    return parity


def _model_signature(loaded) -> tuple[str, tuple[int, ...], list[str]]:
    """(input name, input shape without batch, output names) of a single-input model."""
    if loaded.keras_model is not None:
        model = loaded.keras_model
        inputs = model.inputs
        if len(inputs) != 1:
            raise ModelLoadError(f"{loaded.path} has {len(inputs)} inputs; edgeact converts single-input models")
        tensor = inputs[0]
        shape = tuple(tensor.shape[1:])
        name = getattr(tensor, "name", "input") or "input"
        outputs = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))])
        if len(model.outputs) != 1:
            # TFLite and ONNX may order several outputs differently from Keras; matching them by
            # name is not built yet, and comparing them by position would be silently wrong.
            raise ModelLoadError(f"{loaded.path} has {len(model.outputs)} outputs; edgeact converts "
                                 "single-output models for now (give the model one output head)")
    else:
        specs = loaded.saved_model_fn.structured_input_signature[1]
        if len(specs) != 1:
            raise ModelLoadError(f"{loaded.path} has {len(specs)} inputs; edgeact converts single-input models")
        name, spec = next(iter(specs.items()))
        shape = tuple(spec.shape[1:])
        outputs = sorted(loaded.saved_model_fn.structured_outputs)
    if any(d is None for d in shape):
        raise ModelLoadError(
            f"{loaded.path} has an input of shape (batch, {', '.join(str(d) for d in shape)}) with undefined "
            "dimensions; rebuild the model with a fixed input size, e.g. keras.Input((224, 224, 3))"
        )
    return str(name), tuple(int(d) for d in shape), [str(o) for o in outputs]


def _check_labels(labels, output_names, loaded) -> None:
    if labels is None or loaded.keras_model is None:
        return
    classes = loaded.keras_model.outputs[0].shape[-1]
    if len(labels) != classes:
        raise InputError(f"--labels gives {len(labels)} labels but the model's output has {classes} classes; "
                         "give one label per line, in class order")


def _model_hash(loaded) -> str | None:
    return sha256_of(loaded.path) if loaded.path.exists() else None


def _iter_checks(report: dict) -> Iterator[tuple[str, dict]]:
    for name, checks in report.get("parity", {}).items():
        for check in checks:
            yield f"{name} ({check['output']})", check
    for fmt, section in report["formats"].items():
        for name in ("graph_shape", "integer_only", "integer_kernels"):
            if name in section:
                yield f"{fmt} {name}", section[name]
        for kind, fusion in section.get("fusion", {}).items():
            yield f"{fmt} {kind} fusion", fusion


def _all_checks_pass(report: dict) -> bool:
    return all(check["passed"] for _, check in _iter_checks(report))


def _failed_checks(report: dict) -> list[str]:
    return [label for label, check in _iter_checks(report) if not check["passed"]]


__all__ = ["ConvertOptions", "ConvertJob", "EXPORTERS", "convert", "register_exporter", "report_path"]
