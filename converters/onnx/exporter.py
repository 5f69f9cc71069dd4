"""The ONNX exporter: float ONNX through tf2onnx, INT8 QDQ through ONNX Runtime's static quantizer.

Both start from the folded Keras graph the TFLite exporter uses, and the INT8 model is
calibrated on the same samples, through the same calibration protocol.

Quantization settings (the final Softmax stays float, see FLOAT_OPS), chosen because they
make ONNX Runtime's CPU provider run every Conv as QLinearConv and every MatMul/Gemm as an
integer kernel (checked after ORT's own graph optimisation): QDQ format, uint8 asymmetric activations, int8 per-channel
weights, after `quant_pre_process`. Signed activations left some convolutions in float in
a trial here, and symmetric activations kept every Relu/Clip as a separate node; with
asymmetric uint8 activations the quantizer absorbs Relu and Clip(0, 6) into the
convolution's output range.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from calibration.adapters import OrtCalibrationReader
from converters.job import FLOAT_CHECK_SAMPLES, ConvertJob, verify_threads
from converters.keras.serving import serving_function
from converters.registry import register_exporter
from converters.rounding.judge import timed
from edgeact.config import ONNX_WEIGHT_LEVELS, CalibrationMethod, Format, OnnxLayout
from edgeact.errors import ConversionError, first_line
from edgeact.fastpath.speed_verdict import fast_path_report
from edgeact.fileio import StagedOutputs, write_error
from edgeact.quiet import last_error_line, native_output_captured
from edgeact.report.records import FormatReport
from edgeact.report.render import some_of
from edgeact.runtime.onnx import OnnxRunner
from edgeact.targets import timing_threads

from .check import check_activations, check_graph_shape, check_integer_kernels, count_ops
from .kernels import verify_arithmetic
from .rewrites import (
    average_pool_to_depthwise,
    conv1d_epilogue_into_conv,
    fold_constant_mul_into_scale,
    reduce_mean_to_global_pool,
)
from .weights import snap_initializers


def image_inputs(job: ConvertJob) -> list[str]:
    """The inputs an NCHW layout applies to: (H, W, C) images."""
    return [i.name for i in job.signature.inputs if len(i.shape) == 3]


def to_layout(job: ConvertJob, samples) -> dict[str, np.ndarray]:
    """Held-out samples keyed by input name, image inputs in the ONNX model's layout."""
    images = image_inputs(job) if job.options.onnx_layout is OnnxLayout.NCHW else []
    return {name: image_layout(a, job.options.onnx_layout) if name in images else a
            for name, a in samples.arrays.items()}


def image_layout(batch: np.ndarray, layout: OnnxLayout) -> np.ndarray:
    """An NHWC image batch in the ONNX model's input layout."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if layout is OnnxLayout.NCHW else batch


def export_float_onnx(job: ConvertJob, path: Path) -> None:
    """tf2onnx on the named tf.function of the folded model (or the SavedModel's signature)."""
    import tf2onnx

    from . import tf2onnx_ops  # registers handlers for ops tf2onnx lacks

    model = job.keras_model
    serve, spec = serving_function(model, getattr(job.loaded, "saved_model_fn", None), job.signature)
    nchw = image_inputs(job) if job.options.onnx_layout is OnnxLayout.NCHW else None
    errors = _ErrorLog()
    tf2onnx_logger = logging.getLogger("tf2onnx")
    tf2onnx_logger.addHandler(errors)
    try:
        with native_output_captured() as captured, tf2onnx_ops.collecting_optimizers():
            tf2onnx.convert.from_function(serve, input_signature=spec, opset=job.options.opset,
                                          inputs_as_nchw=nchw, output_path=str(path))
    except Exception as exc:
        detail = last_error_line(captured.text) or (errors.lines or [first_line(exc, 300)])[-1]
        raise ConversionError(f"tf2onnx cannot export the model: {first_line(detail, 200)}") from None
    finally:
        tf2onnx_logger.removeHandler(errors)
    # tf2onnx logs unsupported ops and carries on; the model it writes would not run.
    layer_names = [layer.name for layer in model.layers] if model is not None else []
    unsupported = unsupported_ops("\n".join(errors.lines), layer_names)
    if unsupported:
        raise ConversionError(f"tf2onnx cannot export {unsupported}; replace that layer or export TFLite only")
    conv1d_epilogue_into_conv(path)  # Conv1D's bias and ReLU next to its Conv, where ORT fuses them


class _ErrorLog(logging.Handler):
    """Collects tf2onnx's error records, wherever else logging sends them."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


_NOT_SUPPORTED = re.compile(r"Tensorflow op \[([^:\]]+): ([^\]]+)\] is not supported")


def unsupported_ops(log: str, layer_names: list[str]) -> str:
    """'op BesselI0e in layer 'my_lambda'' for each op tf2onnx reported as unsupported; one op in
    many layers (ConvNeXt's 18 grouped convolutions) is one entry with a count and the first two."""
    by_op: dict[str, list[str]] = {}
    for node, op in _NOT_SUPPORTED.findall(log):
        # tf2onnx names nodes by TF name scope: model/layer[_N]/.../op
        scopes = node.split("/")
        layer = next((n for n in layer_names if n in scopes), None) or next(
            (n for n in layer_names for s in scopes if re.fullmatch(re.escape(n) + r"_\d+", s)), None)
        where = f"'{layer}'" if layer else f"({node})"
        if where not in by_op.setdefault(op, []):
            by_op[op].append(where)
    found = []
    for op, places in by_op.items():
        if len(places) == 1:
            found.append(f"op {op} in layer {places[0]}" if places[0].startswith("'") else f"op {op} {places[0]}")
        else:
            found.append(f"op {op} in {len(places)} layers ({some_of(places)})")
    return ", ".join(found)


def quantize_onnx(job: ConvertJob, float_path: Path, int8_path: Path, progress=None, exclude=(),
                  calibration_cache: Path | None = None, weight_steps: bool = False) -> dict:
    """Static QDQ quantization of the float ONNX on the job's calibration samples; `exclude`
    names nodes to keep in float (the float fallback of converters.budget.onnx);
    `calibration_cache` is ORT's range cache (written when missing, read when present);
    `weight_steps`: judge converters.rounding's candidates (ConvertJob.weight_steps["onnx"] says which was kept).

    Returns the nodes each rewrite of converters.onnx.rewrites changed, by rewrite."""
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {CalibrationMethod.MINMAX: OrtMethod.MinMax, CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
               CalibrationMethod.ENTROPY: OrtMethod.Entropy}
    extra = {"CalibPercentile": float(job.options.percentile)} \
        if job.options.calibration_method is CalibrationMethod.PERCENTILE else {}

    with tempfile.TemporaryDirectory(prefix="edgeact-onnx-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        layout = job.options.onnx_layout
        images = image_inputs(job) if layout is OnnxLayout.NCHW else []
        reader = OrtCalibrationReader(
            job.calibration.calibration, rename=_input_names(float_path, job.input_names), progress=progress,
            transform=lambda name, x: image_layout(x, layout) if name in images else x)
        try:
            with native_output_captured() as captured, _entropy_bins(job.options.calibration_method):
                _pre_process(quant_pre_process, float_path, prepared)
                pooled = reduce_mean_to_global_pool(prepared)  # quantizable, unlike ReduceMean
                depthwise = average_pool_to_depthwise(prepared)  # ORT's fast 3x3 kernel, not QLinearAveragePool
                settings = dict(
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    reduce_range=job.options.onnx_weight_bits == 7,  # see edgeact.cpu_features
                    calibrate_method=methods[job.options.calibration_method], extra_options=extra,
                    calibration_providers=["CPUExecutionProvider"],
                    nodes_to_exclude=float_nodes(prepared) + list(exclude))
                rounding = job.weight_rounding if weight_steps else None
                candidates = rounding.candidates(ONNX_WEIGHT_LEVELS[job.options.onnx_weight_bits]) \
                    if rounding is not None else {}
                # one judge for every step: a file it has run (the kept one, judged again by the next
                # step) is not run again
                run = _judge_run(job) if rounding is not None and rounding.judge is not None else None
                if candidates:
                    # The model as it is calibrates, into ORT's range cache; each candidate's kernels go
                    # into a copy, quantized from that cache (the grids the rounding was chosen for, see
                    # converters.onnx.weights), and the judge samples pick one.
                    cache = calibration_cache or Path(tmp) / "ranges.json"
                    none = Path(tmp) / "none.onnx"
                    quantize_static(str(prepared), str(none), reader if not cache.exists() else None,
                                    calibration_cache_path=cache, **settings)
                    start = time.perf_counter()
                    step, source = _judged_weight_step(job, prepared, none, candidates, int8_path, cache,
                                                       quantize_static, settings, run)
                    job.weight_steps["onnx"] = timed(step, start)
                    if job.options.calibration_method is CalibrationMethod.MINMAX and not exclude:
                        reader.rewind()
                        reader.progress = None  # the bar counted the calibration
                        start = time.perf_counter()
                        step = _judged_ranges(job, prepared, source, int8_path, cache, reader, quantize_static,
                                              settings, run)
                        job.range_steps["onnx"] = timed(step, start)
                else:
                    quantize_static(str(prepared), str(int8_path), reader, calibration_cache_path=calibration_cache,
                                    **settings)
                if weight_steps and job.equalization and not exclude:
                    reader.rewind()
                    reader.progress = None  # the bar counted the first calibration
                    start = time.perf_counter()
                    job.equalization_steps["onnx"] = timed(_judged_equalization(
                        job, prepared, int8_path, reader, quantize_static, settings, run), start)
                folded = fold_constant_mul_into_scale(int8_path)  # a scale change, not a QLinearMul
        except Exception as exc:
            detail = last_error_line(captured.text) or first_line(exc, 300)
            raise ConversionError(f"ONNX Runtime could not quantize the model: {first_line(detail, 200)}") from None
    return {"ReduceMean -> GlobalAveragePool": pooled, "AveragePool -> depthwise Conv": depthwise,
            "Mul by a constant -> quantization scale": folded}


def _judged_weight_step(job: ConvertJob, prepared: Path, none: Path, candidates: dict, int8_path: Path,
                        cache: Path, quantize_static, settings: dict, run) -> dict:
    """Quantize each candidate from the range cache, keep the one the judge samples pick (converters.rounding.judge)
    in `int8_path`, and say why."""
    import itertools
    import shutil

    from converters.rounding.judge import keep_step

    numbers = itertools.count()
    sources = {none: prepared}  # INT8 model -> the float model it was quantized from

    def build(changes):
        count = next(numbers)
        snapped, quantized = prepared.with_name(f"snapped_{count}.onnx"), prepared.with_name(f"candidate_{count}.onnx")
        shutil.copyfile(prepared, snapped)
        found = snap_initializers(snapped, changes)
        quantize_static(str(snapped), str(quantized), None, calibration_cache_path=cache, **settings)
        sources[quantized] = snapped
        return quantized, found

    kept, choice = keep_step(job.weight_rounding.mode, job.judge_reference, none, candidates, build, run)
    shutil.copyfile(kept, int8_path)
    return choice, sources[kept]


def _judged_ranges(job: ConvertJob, prepared: Path, source: Path, int8_path: Path, cache: Path, reader,
                   quantize_static, settings: dict, run) -> dict | None:
    """The model in `int8_path` (quantized from `source` with ORT's min/max cache), or the same model
    with per-tensor activation ranges (converters.onnx.ranges: chosen on the prepared float model's
    values by converters.rounding.ranges.shrunk_ranges) when the judge samples keep them; `all` keeps
    them unjudged. The verdict, or None where no range moved enough to build a candidate."""
    import shutil

    from converters.rounding.judge import NONE, choose_step
    from converters.rounding.ranges import PER_TENSOR, shrunk_ranges

    from .ranges import sample_values, write_cache

    unjudged = job.weight_rounding.mode == "all"
    judge = job.weight_rounding.judge
    if not unjudged and (not job.judge_reference or judge is None or not len(judge)):
        return None
    values = sample_values(prepared, cache, reader)
    shrunk = shrunk_ranges(values)
    if not shrunk:
        return None
    found = {"tensors": len(values), "shrunk": len(shrunk)}
    ranges, candidate = prepared.with_name("ranges.json"), prepared.with_name("ranges_int8.onnx")
    write_cache(cache, shrunk, ranges)
    quantize_static(str(source), str(candidate), None, calibration_cache_path=ranges, **settings)
    if unjudged:
        shutil.copyfile(candidate, int8_path)
        return {"kept": PER_TENSOR, **found}
    choice = choose_step(job.judge_reference, {NONE: run(int8_path), PER_TENSOR: run(candidate)})
    choice.update(found)
    if choice["kept"] == PER_TENSOR:
        shutil.copyfile(candidate, int8_path)
    return choice


def _judge_run(job: ConvertJob):
    """The judge: a model's outputs on the judge samples, with the format's own kernels; each file
    content is run once (the steps judge the kept file one after another, under changing paths)."""
    import hashlib

    arithmetic = verify_arithmetic(job.options.onnx_weight_bits)
    judge = to_layout(job, job.weight_rounding.judge)
    judged: dict[str, dict] = {}

    def run(path):
        key = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if key not in judged:
            runner = OnnxRunner(path, threads=verify_threads(), optimization=arithmetic.optimization,
                                config=arithmetic.config)
            judged[key] = runner.predict(judge)
        return judged[key]

    return run


def _judged_equalization(job: ConvertJob, prepared: Path, int8_path: Path, reader, quantize_static,
                         settings: dict, run) -> dict:
    """The equalized model (converters.rounding.equalization: its kernels written into a copy of the
    prepared float model, calibrated anew, round-to-nearest weights) in `int8_path` when the judge
    samples resolve a gain over the model there; the verdict."""
    import shutil

    from converters.rounding.equalization import EQUALIZATION, fully_placed, unplaced
    from converters.rounding.judge import NONE, choose_step

    equalized, quantized = prepared.with_name("equalized.onnx"), prepared.with_name("equalized_int8.onnx")
    shutil.copyfile(prepared, equalized)
    found = snap_initializers(equalized, job.equalization)
    if not fully_placed(found, job.equalization):
        return {"kept": NONE, "layers": len(job.equalization),
                "why": f"not every kernel and bias was found in the .onnx: {unplaced(found, job.equalization)}"}
    quantize_static(str(equalized), str(quantized), reader, **settings)
    choice = choose_step(job.judge_reference, {NONE: run(int8_path), EQUALIZATION: run(quantized)})
    choice["layers"] = len(job.equalization)
    if choice["kept"] == EQUALIZATION:
        shutil.copyfile(quantized, int8_path)
        twin = job.scratch() / "onnx_equalized_fp32.onnx"  # what its per-layer error is measured against
        shutil.copyfile(equalized, twin)
        job.equalized_float["onnx"] = twin
        job.mark_superseded("onnx", EQUALIZATION)
    return choice


@contextmanager
def _entropy_bins(method: CalibrationMethod):
    """Give ORT's entropy calibrator TensorRT's 2048 histogram bins.

    quantize_static passes no bin counts to its calibrator, whose entropy defaults (128 bins,
    128 quantized bins) leave the KL search one candidate threshold, the full range: entropy
    calibration was min/max (a test compares the ranges). quantize_static looks
    `create_calibrator` up in its own module, so the counts are added there, for this call only.
    """
    if method is not CalibrationMethod.ENTROPY:
        yield
        return
    import importlib

    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")  # the module, not the function
    original = ort_quantize.create_calibrator

    def with_bins(*args, **kwargs):
        kwargs["extra_options"] = {"num_bins": 2048, "num_quantized_bins": 128, **(kwargs.get("extra_options") or {})}
        return original(*args, **kwargs)

    ort_quantize.create_calibrator = with_bins
    try:
        yield
    finally:
        ort_quantize.create_calibrator = original


# Left in float: a final Softmax costs nothing next to the convolutions, and ORT's
# QLinearSoftmax flattened near-uniform probabilities in trials here (top-1 agreement 0.06 on
# a MobileNetV2), while the float one kept them (1.00), with every Conv still integer.
FLOAT_OPS = ("Softmax",)


def float_nodes(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type in FLOAT_OPS]


def _pre_process(quant_pre_process, source: Path, target: Path) -> None:
    """ORT's pre-processing (basic optimisation, shape inference), run inside the target's folder.

    Symbolic shape inference writes 'sym_shape_infer_temp.onnx' into the working directory
    when it cannot finish; it must not land in the user's folder. Models it cannot finish
    are quantized with ONNX's own shape inference instead.
    """
    previous = os.getcwd()
    os.chdir(target.parent)
    try:
        try:
            quant_pre_process(str(source), str(target), skip_symbolic_shape=False)
        except Exception:
            quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    finally:
        os.chdir(previous)


def _input_names(path: Path, keras_names: list[str]) -> dict[str, str]:
    """Keras input name -> ONNX graph input name (tf2onnx keeps the names; ':0' suffixes are tolerated)."""
    import onnx

    graph_names = [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]
    mapping = {}
    for name in keras_names:
        match = next((g for g in graph_names if g in (name, f"{name}:0")), None)
        if match is None:
            raise ConversionError(f"the float ONNX model has no input '{name}' (its inputs: {', '.join(graph_names)}); "
                                  "inputs are matched by name")
        mapping[name] = match
    return mapping


def _write_contract(job: ConvertJob, paths: list[Path]) -> None:
    """The model contract (labels, preprocessing, input layout) into each file's metadata_props."""
    from converters.metadata import add_onnx_metadata, build_contract
    from edgeact.fileio import sha256_of

    source = sha256_of(job.loaded.path) if job.loaded.path.exists() else None
    contract = build_contract(job, "float", None, source)  # ORT's QDQ model keeps a float interface
    for path in paths:
        add_onnx_metadata(path, contract, job.options.onnx_layout.value)


@register_exporter
class OnnxExporter:
    format = Format.ONNX

    def output_names(self, name: str) -> list[str]:
        return [f"{name}_fp32.onnx", f"{name}_int8.onnx"]

    def export(self, job: ConvertJob, staged: StagedOutputs, report: FormatReport) -> None:
        fp32_name, int8_name = self.output_names(job.name)
        fp32 = staged.staged_path(job.output_dir / fp32_name)
        int8 = staged.staged_path(job.output_dir / int8_name)
        try:
            with job.step("onnx: float (tf2onnx)"):
                export_float_onnx(job, fp32)
            with job.step("onnx: int8 (ORT quantizer)", total=len(job.calibration.calibration)) as bar:
                rewrites = quantize_onnx(job, fp32, int8, bar, weight_steps=True)
        except OSError as exc:  # tf2onnx and ORT write these files themselves: a full disk lands here
            raise write_error(job.output_dir / int8_name, _size_or_zero(fp32), exc) from None
        _write_contract(job, [fp32, int8])
        with job.step("onnx: verify"):
            holdout = to_layout(job, job.calibration.holdout)
            threads = verify_threads()
            arithmetic = verify_arithmetic(job.options.onnx_weight_bits)
            fp32_runner = OnnxRunner(fp32, threads=threads)
            int8_runner = OnnxRunner(int8, threads=threads, optimization=arithmetic.optimization,
                                     config=arithmetic.config)
            job.predictions["onnx_fp32"] = fp32_runner.predict({k: v[:FLOAT_CHECK_SAMPLES] for k, v in holdout.items()})
            job.predictions["onnx_int8"] = int8_runner.predict(holdout)
            job.int8_files["onnx"] = int8
            method = job.options.calibration_method
            timing = timing_threads(job.options.target)
            if arithmetic.method != "kernels":
                job.notes.append(f"onnx int8 verified with {arithmetic.text}")
            report.files = {"fp32": str(job.output_dir / fp32_name), "int8": str(job.output_dir / int8_name)}
            report.size_bytes = {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size}
            report.runtime = {"name": int8_runner.runtime, "version": int8_runner.runtime_version}
            report.inputs = [s.to_dict() for s in int8_runner.inputs]
            report.outputs = [s.to_dict() for s in int8_runner.outputs]
            report.details = {
                "opset": job.options.opset,
                "layout": job.options.onnx_layout.value,
                "quantization": {"format": "QDQ", "activations": "uint8 asymmetric",
                                 "weights": f"int8 per-channel, {weight_range(job.options.onnx_weight_bits)}",
                                 "weight_bits": job.options.onnx_weight_bits, "float_ops": list(FLOAT_OPS),
                                 "method": method.value,
                                 **({"percentile": job.options.percentile}
                                    if method is CalibrationMethod.PERCENTILE else {})},
                "op_counts": {"fp32": count_ops(fp32), "int8": count_ops(int8)},
                "graph_shape": check_graph_shape(fp32, job.options.onnx_layout.value),
                "integer_kernels": check_integer_kernels(int8),
                "verified_with": arithmetic.to_dict(),
                # Timed with this host's default kernels, in the target's threads: the verification's
                # runners are reused only when they are those.
                "fast_path": fast_path_report(int8, fp32, "onnx", (int8_name, fp32_name), threads=timing,
                                              runners=(int8_runner if arithmetic.method == "kernels" else None,
                                                       fp32_runner) if timing == threads else None),
                "weight_rounding": job.weight_steps.get("onnx"),
                "activation_ranges": job.range_steps.get("onnx"),
                "equalization": job.equalization_steps.get("onnx"),
                "rewrites": rewrites,
                "fusion": {"fp32": check_activations(fp32, quantized=False),
                           "int8": check_activations(int8, quantized=True)},
            }


def weight_range(bits: int) -> str:
    """The range quantize_static gives per-channel int8 weights (edgeact.config.ONNX_WEIGHT_LEVELS)."""
    levels = ONNX_WEIGHT_LEVELS[bits]
    return f"{bits}-bit range -{levels}..{levels}"


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


__all__ = ["OnnxExporter", "export_float_onnx", "quantize_onnx", "to_layout"]
