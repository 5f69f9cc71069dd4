"""The TFLite exporter: a float reference and a full-integer INT8 model from the folded Keras graph.

Full integer means TFLiteConverter with `TFLITE_BUILTINS_INT8` only (it fails rather than
leave a float op), int8 weights and activations calibrated on the user's samples, and an
int8 (default), uint8 (pixel-in, see converters.tflite.pixel_in) or float interface. Every file
carries the standard TFLite metadata (converters.metadata).
"""
from __future__ import annotations

from converters.job import FLOAT_CHECK_SAMPLES, ConvertJob, verify_threads
from converters.keras.serving import dict_output_model
from converters.metadata import add_tflite_metadata, build_contract
from converters.registry import register_exporter
from converters.rounding.ranges import PER_TENSOR, SampledValues, shrunk_ranges
from edgeact.config import Format, IOType
from edgeact.data.pixel_input import to_pixels
from edgeact.errors import InputError
from edgeact.fastpath.speed_verdict import fast_path_report
from edgeact.fileio import StagedOutputs, sha256_of
from edgeact.formats.tflite_model import read_tflite
from edgeact.quiet import native_output_captured
from edgeact.report.records import FormatReport
from edgeact.runtime.tflite import TFLiteRunner
from edgeact.targets import device_spec, timing_threads

from .calibrate import calibrate_float, write_ranges
from .check import check_fusion, check_integer_only
from .fixed_batch import fixed_batch
from .pixel_in import PixelIn, normalisation_model, plan_pixel_in, set_input_quantization
from .ranges import quantize_calibrated, run_converter
from .weights import snap_buffers
from .xnnpack_rewrites import xnnpack_rewrites


def _converter(job: ConvertJob, keras_model=None, float_form: bool = False):
    """A converter whose SignatureDef names inputs and outputs like the Keras model (see converters.keras.signature).

    `float_form`: the float reference's graph (without the INT8-only rewrites, ConvertJob.float_keras_model).
    """
    import tensorflow as tf

    if keras_model is not None:  # already a model with named (dict) outputs
        return tf.lite.TFLiteConverter.from_keras_model(keras_model)
    source = job.float_keras_model if float_form and job.float_keras_model is not None else job.keras_model
    if source is not None:
        return tf.lite.TFLiteConverter.from_keras_model(dict_output_model(source, job.output_names))
    return tf.lite.TFLiteConverter.from_saved_model(str(job.loaded.path))


def export_float(job: ConvertJob) -> bytes:
    return run_converter(_converter(job, float_form=True), "float")


def pixel_in_plan(job: ConvertJob) -> PixelIn | None:
    """How a `--io uint8` model takes pixels; None for other interfaces."""
    if job.options.io_type is not IOType.UINT8:
        return None
    if len(job.signature.inputs) != 1 or len(job.input_shape) != 3:
        raise InputError("--io uint8 makes a pixel-in model, which needs one image input (H, W, C); "
                         "use --io int8 for this model")
    return plan_pixel_in(job.options.preprocessing, job.input_shape[-1])


def export_int8(job: ConvertJob, float_model: bytes, progress=None) -> tuple[bytes, dict]:
    """The INT8 model (with `--io uint8`, one that takes uint8 pixels, see converters.tflite.pixel_in),
    and how it was calibrated (converters.tflite.calibrate).

    `float_model`: the float reference as the converter wrote it. It is calibrated and quantized
    as it is, unless the INT8 model has a graph of its own (the INT8-only rewrites of
    ConvertJob.float_keras_model, a pixel-in normalisation): only then is there a second conversion.
    """
    pixel_in = pixel_in_plan(job)
    keras_model, calibration = None, job.calibration.calibration
    if pixel_in is not None and pixel_in.method == "normalisation_op":
        if job.keras_model is None:
            raise InputError("--io uint8 with per-channel preprocessing needs the .keras/.h5 model, "
                             "not a SavedModel; give the Keras file or use --preprocess unit/mobilenet")
        pre = job.options.preprocessing
        keras_model = normalisation_model(job.keras_model, pre, job.output_names)
        calibration = [{k: to_pixels(pre, v).astype("float32") for k, v in sample.items()}
                       for sample in calibration]
    own_graph = keras_model is not None or job.float_keras_model is not None
    source = run_converter(_converter(job, keras_model), "INT8 model's float") if own_graph else float_model
    rounding = job.weight_rounding
    steps = rounding is not None and rounding.mode != "none" and keras_model is None
    values = SampledValues() if steps else None
    calibrated, found = calibrate_float(source, calibration, progress, values=values)
    found["conversions"] = 2 if own_graph else 1
    rewrite = not device_spec(job.options.target).edgetpu  # the Edge TPU maps RELU and AVERAGE_POOL_2D itself
    if rewrite:
        calibrated, found["xnnpack_rewrites"] = xnnpack_rewrites(calibrated)
    if steps:
        # (an INT8 graph of its own pairs its tensors by rewrite: no equalized twin for it)
        equalize = (source, calibration, rewrite) if job.equalization and not own_graph else None
        model = _int8_steps(job, calibrated, rounding.candidates(127), values, pixel_in, equalize)
    else:
        model = quantize_calibrated(calibrated, job.options.io_type)
    if pixel_in is not None:
        model = set_input_quantization(model, pixel_in.scale, pixel_in.zero_point)
    return model, found


def _int8_steps(job: ConvertJob, calibrated: bytes, candidates: dict, values: SampledValues, pixel_in,
                equalize: tuple | None = None) -> bytes:
    """The INT8 model with the steps the judge samples keep (converters.rounding.judge): first the
    weight step (each candidate's kernels go into the one calibration, converters.tflite.weights),
    then, on top of it, per-tensor activation ranges (`_judged_ranges`), then against that the
    equalized model (`_judged_equalization`, with `equalize` = (float model, calibration samples,
    depthwise rewrites on)). Each model is run on the judge samples once. What was kept and why go
    to ConvertJob.weight_steps, range_steps and equalization_steps["tflite"]."""
    import time

    from converters.rounding.judge import keep_step, timed

    io_type = job.options.io_type
    plain = quantize_calibrated(calibrated, io_type)
    calibrated_of = {plain: calibrated}  # INT8 model -> the calibrated float model it was quantized from
    judged: dict[bytes, dict] = {}

    def build(changes):
        snapped, found = snap_buffers(calibrated, changes)
        model = quantize_calibrated(snapped, io_type)
        calibrated_of[model] = snapped
        return model, found

    def run(model: bytes) -> dict:
        if model not in judged:
            judged[model] = _run_judge(job, model, pixel_in)
        return judged[model]

    model = plain
    if candidates:
        start = time.perf_counter()
        model, step = keep_step(job.weight_rounding.mode, job.judge_reference, plain, candidates, build, run)
        job.weight_steps["tflite"] = timed(step, start)
    start = time.perf_counter()
    model, step = _judged_ranges(job, calibrated_of[model], model, values, run)
    job.range_steps["tflite"] = timed(step, start)
    if equalize is not None:
        start = time.perf_counter()
        model = _judged_equalization(job, *equalize, model, run)
        timed(job.equalization_steps.get("tflite"), start)
    return model


def _judged_ranges(job: ConvertJob, calibrated: bytes, model: bytes, values: SampledValues,
                   run) -> tuple[bytes, dict | None]:
    """`model`, or the same model with per-tensor activation ranges when the judge samples keep them.

    Each op output's range is converters.rounding.ranges.shrunk_ranges' (MSE-chosen, where it moved
    enough: NASNetMobile's MSE shrank 448 of 570 ranges); the model outputs keep min/max. Kept like a weight step: only
    when its gain on the judge samples is resolved above zero (`choose_step`); `all` keeps it
    unjudged."""
    from converters.rounding.judge import NONE, choose_step

    shrunk = shrunk_ranges(values)
    if not shrunk:  # nothing moved enough to resolve on the judge samples: no model to build or run
        return model, None
    found = {"tensors": len(values), "shrunk": len(shrunk)}
    unjudged = job.weight_rounding.mode == "all"
    judge = job.weight_rounding.judge
    if not unjudged and (not job.judge_reference or judge is None or not len(judge)):
        return model, None
    candidate = quantize_calibrated(write_ranges(calibrated, shrunk), job.options.io_type)
    if unjudged:
        return candidate, {"kept": PER_TENSOR, **found}
    choice = choose_step(job.judge_reference, {NONE: run(model), PER_TENSOR: run(candidate)})
    choice.update(found)
    return (candidate if choice["kept"] == PER_TENSOR else model), choice


def _judged_equalization(job: ConvertJob, source: bytes, calibration, rewrite: bool, model: bytes, run) -> bytes:
    """`model`, or the equalized model (converters.rounding.equalization: its kernels written into the
    float model, calibrated anew, round-to-nearest weights) when the judge samples resolve a gain over
    it; the verdict goes to ConvertJob.equalization_steps["tflite"]."""
    from converters.rounding.equalization import EQUALIZATION, fully_placed, unplaced
    from converters.rounding.judge import NONE, choose_step

    equalized, found = snap_buffers(source, job.equalization)
    if not fully_placed(found, job.equalization):
        job.equalization_steps["tflite"] = {"kept": NONE, "layers": len(job.equalization),
                                            "why": f"not every kernel and bias was found in the .tflite: "
                                            f"{unplaced(found, job.equalization)}"}
        return model
    calibrated, _ = calibrate_float(equalized, calibration)
    if rewrite:
        calibrated, _ = xnnpack_rewrites(calibrated)
    candidate = quantize_calibrated(calibrated, job.options.io_type)
    choice = choose_step(job.judge_reference, {NONE: run(model), EQUALIZATION: run(candidate)})
    choice["layers"] = len(job.equalization)
    job.equalization_steps["tflite"] = choice
    if choice["kept"] != EQUALIZATION:
        return model
    job.equalized_float["tflite"] = equalized  # the float twin its per-layer error is measured against
    job.mark_superseded("tflite", EQUALIZATION)
    return candidate


def _run_judge(job: ConvertJob, model: bytes, pixel_in) -> dict:
    import tempfile
    from pathlib import Path

    judge = job.weight_rounding.judge
    if pixel_in is not None:
        model = set_input_quantization(model, pixel_in.scale, pixel_in.zero_point)
        judge = to_pixels(job.options.preprocessing, judge.arrays[job.input_name])
    with tempfile.TemporaryDirectory(prefix="edgeact-judge-") as tmp:
        path = Path(tmp) / "candidate.tflite"
        path.write_bytes(model)
        with native_output_captured():
            runner = TFLiteRunner(path, threads=verify_threads())
        return runner.predict(judge)


def with_target_batch(job: ConvertJob, model: bytes) -> tuple[bytes, dict]:
    """The model with its batch fixed to 1 where the target wants it (converters.tflite.fixed_batch)."""
    if not device_spec(job.options.target).fixed_batch:
        return model, {"skipped": "the target keeps an open batch"}
    return fixed_batch(model)


def _with_metadata(job: ConvertJob, model: bytes, io_type: IOType, pixel_in: PixelIn | None) -> bytes:
    source = sha256_of(job.loaded.path) if job.loaded.path.exists() else None
    contract = build_contract(job, io_type.value, pixel_in.to_dict() if pixel_in else None, source)
    return add_tflite_metadata(model, contract)


@register_exporter
class TFLiteExporter:
    format = Format.TFLITE

    def output_names(self, name: str) -> list[str]:
        return [f"{name}_fp32.tflite", f"{name}_int8.tflite"]

    def export(self, job: ConvertJob, staged: StagedOutputs, report: FormatReport) -> None:
        fp32_name, int8_name = self.output_names(job.name)
        io_type = job.options.io_type
        pixel_in = pixel_in_plan(job)
        batch = {}
        with job.step("tflite: float reference"):
            float_model = export_float(job)
            fp32_model, batch["fp32"] = with_target_batch(job, float_model)
            fp32 = staged.write_bytes(job.output_dir / fp32_name, _with_metadata(job, fp32_model, IOType.FLOAT, None))
        with job.step("tflite: int8", total=len(job.calibration.calibration)) as bar:
            int8_model, calibration = export_int8(job, float_model, bar)
            int8_model, batch["int8"] = with_target_batch(job, int8_model)
            int8 = staged.write_bytes(job.output_dir / int8_name, _with_metadata(job, int8_model, io_type, pixel_in))
        with job.step("tflite: verify"):
            fp32_info, int8_info = read_tflite(fp32), read_tflite(int8)
            with native_output_captured():  # the runtime announces its XNNPACK delegate
                threads = verify_threads()
                fp32_runner, int8_runner = TFLiteRunner(fp32, threads=threads), TFLiteRunner(int8, threads=threads)
            holdout = job.calibration.holdout
            job.predictions["tflite_fp32"] = fp32_runner.predict(holdout.head(FLOAT_CHECK_SAMPLES))
            # A pixel-in model is verified the way a camera feeds it: uint8 pixels, not floats.
            int8_input = to_pixels(job.options.preprocessing, holdout.arrays[job.input_name]) if pixel_in else holdout
            job.predictions["tflite_int8"] = int8_runner.predict(int8_input)
        report.files = {"fp32": str(job.output_dir / fp32_name), "int8": str(job.output_dir / int8_name)}
        report.size_bytes = {"fp32": fp32_info.size_bytes, "int8": int8_info.size_bytes}
        report.runtime = {"name": int8_runner.runtime, "version": int8_runner.runtime_version}
        report.inputs = [s.to_dict() for s in int8_runner.inputs]
        report.outputs = [s.to_dict() for s in int8_runner.outputs]
        report.details = {
            "io_type": job.options.io_type.value,
            "fixed_batch": batch,
            "calibration": calibration,
            "weight_rounding": job.weight_steps.get("tflite"),
            "activation_ranges": job.range_steps.get("tflite"),
            "equalization": job.equalization_steps.get("tflite"),
            "pixel_in": pixel_in.to_dict() if pixel_in else None,
            "op_counts": {"fp32": fp32_info.op_counts(), "int8": int8_info.op_counts()},
            "fusion": {"fp32": check_fusion(fp32_info), "int8": check_fusion(int8_info)},
            "integer_only": check_integer_only(int8_info, float_io=job.options.io_type is IOType.FLOAT),
            "fast_path": fast_path_report(int8, fp32, "tflite", (int8_name, fp32_name),
                                          threads=timing_threads(job.options.target),
                                          runners=(int8_runner, fp32_runner)
                                          if timing_threads(job.options.target) == threads else None),
        }
