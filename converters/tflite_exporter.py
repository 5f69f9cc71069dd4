"""The TFLite exporter: a float reference and a full-integer INT8 model from the folded Keras graph.

Full integer means TFLiteConverter with `TFLITE_BUILTINS_INT8` only (it fails rather than
leave a float op), int8 weights and activations calibrated on the user's samples, and an
int8 (default), uint8 or float interface.
"""
from __future__ import annotations

from edgeact.config import Format, IOType
from edgeact.errors import ConversionError, first_line
from edgeact.fileio import StagedOutputs
from edgeact.quiet import last_error_line, native_output_captured
from edgeact.report import FormatReport
from edgeact.runtime.tflite import TFLiteRunner
from edgeact.speed_verdict import fast_path_report
from edgeact.tflite_model import read_tflite

from calibration.adapters import representative_dataset

from .job import ConvertJob
from .registry import register_exporter
from .serving import dict_output_model
from .tflite_check import check_fusion, check_integer_only


def _converter(job: ConvertJob):
    """A converter whose SignatureDef names inputs and outputs like the Keras model (see converters.signature)."""
    import tensorflow as tf

    if job.keras_model is not None:
        return tf.lite.TFLiteConverter.from_keras_model(dict_output_model(job.keras_model, job.output_names))
    return tf.lite.TFLiteConverter.from_saved_model(str(job.loaded.path))


def _run_converter(converter, what: str) -> bytes:
    try:
        with native_output_captured() as captured:
            return converter.convert()
    except Exception as exc:
        detail = last_error_line(captured.text) or first_line(exc, 300)
        raise ConversionError(f"TFLiteConverter could not write the {what} model: {detail}") from None


def export_float(job: ConvertJob) -> bytes:
    return _run_converter(_converter(job), "float")


def export_int8(job: ConvertJob, progress=None) -> bytes:
    import tensorflow as tf

    converter = _converter(job)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(job.calibration.calibration, progress)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_types = {IOType.INT8: tf.int8, IOType.UINT8: tf.uint8, IOType.FLOAT: tf.float32}
    converter.inference_input_type = io_types[job.options.io_type]
    converter.inference_output_type = io_types[job.options.io_type]
    return _run_converter(converter, "INT8")


@register_exporter
class TFLiteExporter:
    format = Format.TFLITE

    def output_names(self, name: str) -> list[str]:
        return [f"{name}_fp32.tflite", f"{name}_int8.tflite"]

    def export(self, job: ConvertJob, staged: StagedOutputs, report: FormatReport) -> None:
        fp32_name, int8_name = self.output_names(job.name)
        with job.step("tflite: float reference"):
            fp32 = staged.write_bytes(job.output_dir / fp32_name, export_float(job))
        with job.step("tflite: int8", total=len(job.calibration.calibration)) as bar:
            int8 = staged.write_bytes(job.output_dir / int8_name, export_int8(job, bar))
        with job.step("tflite: verify"):
            fp32_info, int8_info = read_tflite(fp32), read_tflite(int8)
            with native_output_captured():  # the runtime announces its XNNPACK delegate
                fp32_runner, int8_runner = TFLiteRunner(fp32), TFLiteRunner(int8)
            holdout = job.calibration.holdout
            job.predictions["tflite_fp32"] = fp32_runner.predict(holdout)
            job.predictions["tflite_int8"] = int8_runner.predict(holdout)
        report.files = {"fp32": str(job.output_dir / fp32_name), "int8": str(job.output_dir / int8_name)}
        report.size_bytes = {"fp32": fp32_info.size_bytes, "int8": int8_info.size_bytes}
        report.runtime = {"name": int8_runner.runtime, "version": int8_runner.runtime_version}
        report.inputs = [s.to_dict() for s in int8_runner.inputs]
        report.outputs = [s.to_dict() for s in int8_runner.outputs]
        report.details = {
            "io_type": job.options.io_type.value,
            "op_counts": {"fp32": fp32_info.op_counts(), "int8": int8_info.op_counts()},
            "fusion": {"fp32": check_fusion(fp32_info), "int8": check_fusion(int8_info)},
            "integer_only": check_integer_only(int8_info, float_io=job.options.io_type is IOType.FLOAT),
            "fast_path": fast_path_report(int8, fp32, "tflite", (int8_name, fp32_name)),
        }
