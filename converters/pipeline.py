"""`convert()`: load, calibrate, fold and fuse, export every format, check, write, in that order.

Cheap refusals come first (formats, output folder, existing files), then the model is
loaded and its open sizes fixed before any data is read. Formats are independent: an
exporter that fails is recorded in its section of the report while the others are written
and verified. Everything is staged and written together with the report, or nothing is.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from converters.budget.search import check_model, judge_by_budget, open_budget, search_to_budget
from converters.edgetpu.section import edgetpu_outputs, edgetpu_step
from edgeact import __version__
from edgeact.config import ONNX_WEIGHT_LEVELS, Format, IOType
from edgeact.errors import ConversionError, InputError, VerificationError, first_line
from edgeact.fileio import check_output_folder, check_writable, sha256_of, staged_outputs
from edgeact.report.records import ConvertReport, FormatReport
from edgeact.report.sidecar import REPORT_SUFFIX
from edgeact.targets import Target, check_convert_target, device_spec, target_record

from . import checks  # noqa: F401  (importing registers the conversion's checks)
from .check_registry import run_checks
from .job import ConvertJob, progress_step
from .options import ConvertOptions
from .registry import EXPORTERS, Exporter

# Samples each graph pass is checked on: a pass that changes the function shows on any of them.
PASS_SAMPLES = 16


def load_exporters() -> dict[Format, Exporter]:
    """Every registered exporter (importing a format's exporter module registers it)."""
    from converters.onnx import exporter as _onnx  # noqa: F401
    from converters.tflite import exporter as _tflite  # noqa: F401

    return EXPORTERS


def report_path(output_dir: Path, name: str) -> Path:
    """Where convert writes the report that `edgeact.report.sidecar.find_report` reads back."""
    return Path(output_dir) / f"{name}{REPORT_SUFFIX}"


def convert(model: str | Path | Any, calibration: Any, output_dir: str | Path,
            options: ConvertOptions | None = None) -> ConvertReport:
    """Convert a Keras model to the requested formats and return the report.

    Args:
        model: a .keras/.h5 path, a SavedModel folder, or a Keras model object.
        calibration: an image folder, a .npy/.npz path, "random", an array, a dict of arrays
            keyed by input name, or an iterable of samples.
        output_dir: where `<name>_int8.tflite`, ... and `<name>.edgeact.json` go.
    Raises:
        EdgeactError subclasses for bad input (nothing is written);
        VerificationError (with `.report`) when outputs were written but a check failed.
    """
    from converters.keras.model_code import model_code_scope

    options = _with_target_defaults(options or ConvertOptions())
    with model_code_scope(options.model_code):  # custom classes and Lambda trust, for loading and every rebuild
        return _convert(model, calibration, output_dir, options)


def _with_target_defaults(options: ConvertOptions) -> ConvertOptions:
    """The options with what the target decides and the user left open (edgeact.targets)."""
    import dataclasses

    if options.target is not None:
        try:
            target = Target(options.target).value
        except ValueError:
            raise InputError(f"target {options.target!r} is unknown; choose one of "
                             f"{', '.join(t.value for t in Target)}") from None
        options = dataclasses.replace(options, target=target)
    if options.onnx_weight_bits is None:
        options = dataclasses.replace(options, onnx_weight_bits=device_spec(options.target).onnx_weight_bits)
    return options


def _convert(model, calibration, output_dir: Path, options: ConvertOptions) -> ConvertReport:
    from calibration import open_calibration
    from converters.keras.in_memory import calibration_by_layer_names, load_keras_object
    from converters.keras.loader import load_model, model_name

    exporters = load_exporters()
    formats = tuple(dict.fromkeys(Format(f) for f in options.formats))
    if not formats:
        raise InputError("no output format chosen; pass --format tflite and/or --format onnx")
    if options.onnx_weight_bits not in ONNX_WEIGHT_LEVELS:
        raise InputError(f"onnx_weight_bits {options.onnx_weight_bits!r} is not 7 or 8; give 7 (x86-64 without VNNI) "
                         "or 8 (ARM/VNNI targets)")
    check_convert_target(options.target, tuple(f.value for f in formats), IOType(options.io_type).value)
    output_dir = Path(output_dir)
    check_output_folder(output_dir)
    if isinstance(model, (str, Path)):
        name = options.name or model_name(Path(model))
    else:
        name = options.name or getattr(model, "name", "model")
    outputs = [output_dir / f for fmt in formats for f in exporters[fmt].output_names(name)]
    if device_spec(options.target).edgetpu:
        outputs += edgetpu_outputs(output_dir, name)
    check_writable(outputs + [report_path(output_dir, name)], options.force)  # before anything heavy
    budget = open_budget(options)  # --eval-data read and the budget refused here, before the model loads
    calibration = open_calibration(calibration)  # a missing or empty folder refused before the model loads

    with progress_step("loading the model", options.progress):
        if isinstance(model, (str, Path)):
            loaded = load_model(model, options.model_code)
        else:
            loaded = load_keras_object(model)  # renames unnamed inputs the way loading its file would
            calibration = calibration_by_layer_names(calibration, model, loaded)
    job = _prepare(loaded, name, output_dir, calibration, options, budget)
    try:
        return _export(job, loaded, name, output_dir, options, formats, exporters, budget)
    finally:
        job.cleanup()


def _export(job: ConvertJob, loaded, name: str, output_dir: Path, options: ConvertOptions, formats, exporters,
            budget) -> ConvertReport:
    _round_weights(job, formats)
    _equalization(job)

    report = ConvertReport(
        name=name, edgeact_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        source={"path": str(loaded.path), "kind": loaded.kind,
                "sha256": sha256_of(loaded.path) if loaded.path.is_file() else None},
        inputs=[_input_info(i) for i in job.signature.inputs], outputs=job.signature.outputs,
        preprocessing=job.options.preprocessing.to_dict(), labels=options.labels,
        input_normalization=job.input_normalization, calibration=job.calibration.summary,
        tolerances=options.tolerances.to_dict(), activation_stats=[s.to_dict() for s in job.stats],
        passes=[r.to_dict() for r in job.pass_results], notes=job.notes, target=target_record(options.target),
        weight_rounding=job.weight_rounding.to_dict() if job.weight_rounding is not None else None,
    )
    with staged_outputs() as staged:
        for fmt in formats:
            section = FormatReport(format=fmt.value)
            try:
                exporters[fmt].export(job, staged, section)
            except ConversionError as exc:
                if len(formats) == 1 or (fmt == formats[-1] and all(s.error for s in report.formats.values())):
                    raise  # nothing converted: a refusal (exit 2), and nothing is written
                section.error = first_line(exc, 400)
                staged.discard_matching(job.output_dir, exporters[fmt].output_names(name))
                for key in [k for k in job.predictions if k.startswith(f"{fmt.value}_")]:
                    del job.predictions[key]
            report.formats[fmt.value] = section
        if device_spec(options.target).edgetpu:
            edgetpu_step(name, output_dir, report, staged)
        if budget is not None:
            search_to_budget(budget, job, report, staged)
        report.checks = run_checks(job, report)
        judge_by_budget(report)
        report.layer_errors = _layer_errors(job, report, staged)
        staged.write_json(report_path(output_dir, name), report.to_dict())
        staged.commit()
    if not report.checks_passed:
        failed = report.failed_checks()
        error = VerificationError(first_line(
            f"{len(failed)} of {len(report.checks)} checks failed, first {failed[0].label}: {failed[0].summary}"
            " (the report has the rest)", 240))
        error.report = report
        raise error
    return report


def _prepare(loaded, name: str, output_dir: Path, calibration: Any, options: ConvertOptions,
             budget=None) -> ConvertJob:
    """Signature, calibration data, statistics, graph passes and the float reference: the job exporters get."""
    import dataclasses

    from calibration import read_calibration
    from converters.keras.forward import float_pass
    from converters.keras.input_normalization import choose_preprocessing, input_normalization
    from converters.keras.serving import predict_saved_model
    from converters.keras.signature import (
        fix_open_sizes,
        functional,
        judge_kinds_from_data,
        keras_signature,
        saved_model_signature,
    )
    from converters.passes.pipeline import DEFAULT_PIPELINE, EDGETPU_PASSES, INT8_ONLY_PASSES, run_pipeline

    keras_model = loaded.keras_model
    if keras_model is not None:
        keras_model = fix_open_sizes(functional(keras_model), options.input_shapes)
        signature = keras_signature(keras_model, options.labels)
        normalization = input_normalization(keras_model)
    else:
        if options.input_shapes:
            raise InputError(f"{loaded.path} is a SavedModel: its input size is fixed by its signature; "
                             "drop --input-shape")
        signature = saved_model_signature(loaded.saved_model_fn)
        normalization = []
    _apply_output_kinds(signature, options.output_kinds)
    _check_labels(options.labels, signature)
    if budget is not None:  # converters.budget.search.BudgetPlan: refused before calibration data is read
        check_model(budget, signature, keras_model, options)
    preprocessing = choose_preprocessing(options.preprocessing, normalization)
    options = dataclasses.replace(options, preprocessing=preprocessing)

    with progress_step("reading calibration data", options.progress, options.samples + options.holdout) as bar:
        calib = read_calibration(calibration, signature.inputs, preprocessing, options.samples, options.holdout,
                                 options.seed, progress=bar)
    stats, pass_results, folded, notes = [], [], keras_model, list(loaded.notes)
    float_keras_model, int8_rewrites = None, {}
    if keras_model is not None:
        # One compiled pass over the held-out samples gives the float reference and the ReLU
        # statistics; the passes are checked against its first outputs (no model runs twice).
        with progress_step("float reference and statistics", options.progress):
            stats, outputs = float_pass(keras_model, calib.holdout)
        reference = dict(zip(signature.output_names, outputs))
        passes = list(DEFAULT_PIPELINE if options.passes is None else options.passes)
        if options.passes is None and device_spec(options.target).edgetpu:
            passes += EDGETPU_PASSES
        float_passes = [p for p in passes if p not in INT8_ONLY_PASSES]
        int8_passes = [p for p in passes if p in INT8_ONLY_PASSES]
        with progress_step("graph passes", options.progress):
            float_form, pass_results = run_pipeline(keras_model, float_passes, calib.holdout.head(PASS_SAMPLES),
                                                    reference=[o[:PASS_SAMPLES] for o in outputs])
            folded, int8_results = run_pipeline(float_form, int8_passes, calib.holdout.head(PASS_SAMPLES))
        pass_results += int8_results
        if folded is not float_form:
            float_keras_model = float_form
            int8_rewrites = {c["layer"]: float(c.get("output_factor", 1.0)) for r in int8_results for c in r.changed}
            changed = ", ".join(r.name for r in int8_results if r.changed)
            notes.append(f"{changed} rewrote the INT8 models only: the float TFLite reference keeps the float "
                         "model's faster form (one op per activation)")
    else:
        notes.append("graph passes did not run: a SavedModel folder has no Keras layers to rewrite (TFLiteConverter "
                     "and ONNX Runtime still fold and fuse what they can); give the .keras file for the passes")
        with progress_step("float reference outputs", options.progress):
            reference = predict_saved_model(loaded.saved_model_fn, signature, calib.holdout)
    judge_kinds_from_data(signature, reference)
    return ConvertJob(name, output_dir, loaded, folded, signature, calib, reference, options, stats=stats,
                      pass_results=pass_results, notes=notes, input_normalization=normalization,
                      calibration_source=str(calibration) if isinstance(calibration, (str, Path)) else None,
                      float_keras_model=float_keras_model, int8_rewrites=int8_rewrites)


def _round_weights(job: ConvertJob, formats) -> None:
    """Each kernel's integers chosen by the output error they cause, and its bias corrected, as candidates
    each INT8 exporter judges on its own files (converters.rounding); the float model is not touched."""
    from converters.rounding.layers import round_weights
    from edgeact.config import Int8Steps

    if job.keras_model is None or job.options.int8_steps is Int8Steps.NONE:
        return
    grids = []  # the integer range each format's per-channel weights take
    if Format.TFLITE in formats:
        grids.append(127)
    if Format.ONNX in formats:
        grids.append(ONNX_WEIGHT_LEVELS[job.options.onnx_weight_bits])
    with progress_step("weight rounding and bias correction", job.options.progress):
        result = round_weights(job.keras_model, job.calibration.calibration, levels=tuple(grids),
                               mode=job.options.int8_steps, seed=job.options.seed)
        if result.judge_outputs:
            job.judge_reference = dict(zip(job.output_names, result.judge_outputs))
    job.weight_rounding = result


def _equalization(job: ConvertJob) -> None:
    """Cross-layer equalization as a candidate the exporters judge (`--int8-steps auto`;
    converters.rounding.equalization)."""
    from converters.passes.pipeline import run_pipeline
    from converters.rounding.equalization import equalization_changes

    rounding = job.weight_rounding
    if job.keras_model is None or rounding is None or rounding.mode != "auto" or not job.judge_reference:
        return
    equalized, (result,) = run_pipeline(job.keras_model, ["equalize"], None)
    if result.changed:
        job.equalization = equalization_changes(job.keras_model, equalized)
        job.equalized_keras_model = equalized if job.equalization else None


def _layer_errors(job: ConvertJob, report: ConvertReport, staged) -> dict | None:
    """Where INT8 loses accuracy, layer by layer (converters.layer_error.measure): in every report by default
    (`--layer-error always`), only when an INT8 check failed (`auto`), or not (`never`).

    Measured on the staged files before they are committed, on REPORT_SAMPLES calibration samples;
    a failure to measure is a note, not a failed conversion (the checks already hold the verdict).
    """
    mode = job.options.layer_error
    failed = any(c.kind in ("parity", "cross_format") and not c.passed for c in report.checks)
    if mode == "never" or (mode == "auto" and not failed):
        return None
    if len(job.signature.inputs) != 1:
        report.notes.append(f"per-layer error not measured: it feeds single-input models, this one has "
                            f"{len(job.signature.inputs)} inputs")
        return None
    from converters.layer_error.measure import layer_errors_for_job

    pairs = {}
    for fmt, section in report.formats.items():
        if section.error is None and {"fp32", "int8"} <= set(section.files):
            pairs[fmt] = tuple(staged.staged_file(Path(section.files[v])) for v in ("fp32", "int8"))
    # (an equalized format's float twin is ConvertJob.equalized_float: layer_errors_for_job picks it)
    if not pairs:
        return None
    try:
        with progress_step("per-layer error", job.options.progress):
            return layer_errors_for_job(job, tflite=pairs.get("tflite"), onnx=pairs.get("onnx")).to_dict()
    except Exception as exc:  # a diagnosis, not a verdict: say why it is missing
        report.notes.append(f"per-layer error could not be measured: {first_line(exc, 200)}")
        return None


def _apply_output_kinds(signature, kinds: dict) -> None:
    from edgeact.report.records import OutputKind

    names = signature.output_names
    for name, kind in (kinds or {}).items():
        if name not in names:
            raise InputError(f"--output-kind names '{name}', which is not a model output ({', '.join(names)})")
        info = next(o for o in signature.outputs if o.name == name)
        info.kind, info.why = kind, "set with --output-kind"
        if kind not in (OutputKind.CLASS_SCORES, OutputKind.DENSE):
            raise InputError(f"--output-kind {name}={kind}: choose class_scores or dense")


def _check_labels(labels, signature) -> None:
    if labels is None:
        return
    classes = [o for o in signature.outputs if len(o.shape) == 1 and o.shape[0] == len(labels)]
    if not classes:
        shapes = ", ".join(f"{o.name} {tuple(o.shape)}" for o in signature.outputs)
        raise InputError(f"--labels gives {len(labels)} labels but no model output has {len(labels)} classes "
                         f"({shapes}); give one label per line, in class order")


def _input_info(model_input):
    from edgeact.report.records import TensorInfo

    return TensorInfo(model_input.name, list(model_input.shape))
