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
from pathlib import Path

import numpy as np

from calibration.adapters import OrtCalibrationReader
from edgeact.config import CalibrationMethod, Format, OnnxLayout
from edgeact.errors import ConversionError
from edgeact.fileio import StagedOutputs
from edgeact.quiet import last_error_line, native_output_captured
from edgeact.runtime.onnx import OnnxRunner

from . import ConvertJob, register_exporter
from .onnx_check import check_activations, check_graph_shape, check_integer_kernels, count_ops
from .verify import compare_outputs


def to_layout(batch: np.ndarray, layout: OnnxLayout) -> np.ndarray:
    """NHWC samples in the ONNX model's input layout."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2)) if layout is OnnxLayout.NCHW else batch


def export_float_onnx(job: ConvertJob, path: Path) -> None:
    """tf2onnx on a tf.function of the folded model; NCHW input via tf2onnx's inputs_as_nchw."""
    import tensorflow as tf
    import tf2onnx

    model = job.keras_model
    if model is None:
        raise ConversionError("ONNX export needs a .keras or .h5 model; SavedModel folders convert to TFLite only")
    spec = (tf.TensorSpec((None, *job.input_shape), tf.float32, name=job.input_name),)

    @tf.function(input_signature=spec)
    def serve(x):
        outputs = model(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: out for name, out in zip(job.output_names, outputs)}

    nchw = [job.input_name] if job.options.onnx_layout is OnnxLayout.NCHW else None
    errors = _ErrorLog()
    tf2onnx_logger = logging.getLogger("tf2onnx")
    tf2onnx_logger.addHandler(errors)
    try:
        with native_output_captured() as captured:
            tf2onnx.convert.from_function(serve, input_signature=spec, opset=job.options.opset,
                                          inputs_as_nchw=nchw, output_path=str(path))
    except Exception as exc:
        detail = last_error_line(captured.text) or (errors.lines or [str(exc).splitlines()[0][:300]])[-1]
        raise ConversionError(f"tf2onnx cannot export the model: {detail}") from None
    finally:
        tf2onnx_logger.removeHandler(errors)
    # tf2onnx logs unsupported ops and carries on; the model it writes would not run.
    unsupported = unsupported_ops("\n".join(errors.lines), [layer.name for layer in model.layers])
    if unsupported:
        raise ConversionError(f"tf2onnx cannot export {unsupported}; replace that layer or export TFLite only")


class _ErrorLog(logging.Handler):
    """Collects tf2onnx's error records, wherever else logging sends them."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


_NOT_SUPPORTED = re.compile(r"Tensorflow op \[([^:\]]+): ([^\]]+)\] is not supported")


def unsupported_ops(log: str, layer_names: list[str]) -> str:
    """'op BesselI0e in layer 'my_lambda'' for each op tf2onnx reported as unsupported."""
    found = []
    for node, op in _NOT_SUPPORTED.findall(log):
        # tf2onnx names nodes by TF name scope: model/layer[_N]/.../op
        scopes = node.split("/")
        layer = next((n for n in layer_names if n in scopes), None) or next(
            (n for n in layer_names for s in scopes if re.fullmatch(re.escape(n) + r"_\d+", s)), None)
        found.append(f"op {op}" + (f" in layer '{layer}'" if layer else f" ({node})"))
    return ", ".join(dict.fromkeys(found))


def quantize_onnx(job: ConvertJob, float_path: Path, int8_path: Path, progress=None, exclude=()) -> None:
    """Static QDQ quantization of the float ONNX on the job's calibration samples; `exclude`
    names nodes to keep in float (the float fallback of converters.fallback_onnx)."""
    from onnxruntime.quantization import (CalibrationMethod as OrtMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {CalibrationMethod.MINMAX: OrtMethod.MinMax, CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
               CalibrationMethod.ENTROPY: OrtMethod.Entropy}
    extra = {"CalibPercentile": float(job.options.percentile)} \
        if job.options.calibration_method is CalibrationMethod.PERCENTILE else {}
    with tempfile.TemporaryDirectory(prefix="edgeact-onnx-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        layout = job.options.onnx_layout
        reader = OrtCalibrationReader(job.calibration.calibration, rename={job.input_name: _input_name(float_path)},
                                      transform=lambda x: to_layout(x, layout), progress=progress)
        try:
            with native_output_captured() as captured:
                _pre_process(quant_pre_process, float_path, prepared)
                quantize_static(
                    str(prepared), str(int8_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=methods[job.options.calibration_method], extra_options=extra,
                    calibration_providers=["CPUExecutionProvider"],
                    nodes_to_exclude=float_nodes(prepared) + list(exclude),
                )
        except Exception as exc:
            detail = last_error_line(captured.text) or str(exc).splitlines()[0][:300]
            raise ConversionError(f"ONNX Runtime could not quantize the model: {detail}") from None


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


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


@register_exporter
class OnnxExporter:
    format = Format.ONNX

    def output_names(self, name: str) -> list[str]:
        return [f"{name}_fp32.onnx", f"{name}_int8.onnx"]

    def export(self, job: ConvertJob, staged: StagedOutputs) -> dict:
        fp32_name, int8_name = self.output_names(job.name)
        fp32 = staged.staged_path(job.output_dir / fp32_name)
        int8 = staged.staged_path(job.output_dir / int8_name)
        with job.step("onnx: float (tf2onnx)"):
            export_float_onnx(job, fp32)
        with job.step("onnx: int8 (ORT quantizer)", total=len(job.calibration.calibration)) as bar:
            quantize_onnx(job, fp32, int8, bar)
        with job.step("onnx: verify"):
            holdout = to_layout(job.calibration.holdout, job.options.onnx_layout)
            fp32_out = OnnxRunner(fp32).predict(holdout)
            int8_runner = OnnxRunner(int8)
            int8_out = int8_runner.predict(holdout)
            job.predictions["onnx_int8"] = int8_out
            tol = job.options.tolerances
            section = {
                "files": {"fp32": str(job.output_dir / fp32_name), "int8": str(job.output_dir / int8_name)},
                "size_bytes": {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size},
                "runtime": {"name": int8_runner.runtime, "version": int8_runner.runtime_version},
                "opset": job.options.opset,
                "layout": job.options.onnx_layout.value,
                "inputs": [s.to_dict() for s in int8_runner.inputs],
                "outputs": [s.to_dict() for s in int8_runner.outputs],
                "quantization": {"format": "QDQ", "activations": "uint8 asymmetric",
                                 "weights": "int8 per-channel", "float_ops": list(FLOAT_OPS),
                                 "method": job.options.calibration_method.value,
                                 **({"percentile": job.options.percentile} if job.options.calibration_method
                                    is CalibrationMethod.PERCENTILE else {})},
                "op_counts": {"fp32": count_ops(fp32), "int8": count_ops(int8)},
                "graph_shape": check_graph_shape(fp32, job.options.onnx_layout.value),
                "integer_kernels": check_integer_kernels(int8),
                "fusion": {"fp32": check_activations(fp32, quantized=False),
                           "int8": check_activations(int8, quantized=True)},
                "checks": {
                    "fp32_vs_keras": compare_outputs(job.reference_outputs, fp32_out, job.output_names, tol,
                                                     exact=True),
                    "int8_vs_keras": compare_outputs(job.reference_outputs, int8_out, job.output_names, tol),
                },
            }
        return section


__all__ = ["OnnxExporter", "export_float_onnx", "quantize_onnx", "to_layout"]
