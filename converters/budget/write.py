"""The budget search's best model written over the staged INT8 file, and verified again.

The exporters wrote and verified their own INT8 model; the search (converters.budget.search)
may pick another. Whatever it picks replaces the staged `<name>_int8.*` file, gets the model
contract (metadata) the exporter gives, and everything the report says about the INT8 file
is measured again on it: held-out predictions (for the parity checks), size, op counts,
integer-only / integer kernels, fused activations and the fast-path timing.

A model with layers kept in float by the search is not full-integer, and the report says so in
the integer check's summary; the check passes because the user's budget asked for that
fallback (`accepted_float` names the layers), not because the model is integer.
"""
from __future__ import annotations

from pathlib import Path

from converters.job import ConvertJob, verify_threads
from converters.metadata import build_contract
from edgeact.config import IOType
from edgeact.fastpath.speed_verdict import fast_path_report
from edgeact.fileio import sha256_of
from edgeact.quiet import native_output_captured
from edgeact.report.records import FormatReport

from .explore import SearchResult


def _source_sha(job: ConvertJob) -> str | None:
    return sha256_of(job.loaded.path) if job.loaded.path.exists() else None


def _staged(staged, section: FormatReport, variant: str) -> Path:
    return staged.staged_file(Path(section.files[variant]))


def _accept_float(found: dict, result: SearchResult, summary_key: str | None = None) -> dict:
    """Mark the float layers the budget search chose; the check's text says the model is not full-integer."""
    if result.best.full_integer or found.get("passed"):
        return found
    found = {**found, "passed": True, "accepted_float": list(result.best.float_layers)}
    if summary_key:
        found[summary_key] = (f"NOT full-integer: {', '.join(result.best.float_layers)} kept in float by the accuracy "
                              f"budget search; {found.get(summary_key, '')}")
    return found


def rewrite_tflite(job: ConvertJob, section: FormatReport, staged, result: SearchResult) -> None:
    from converters.metadata import add_tflite_metadata
    from converters.tflite.check import check_fusion, check_integer_only
    from edgeact.formats.tflite_model import read_tflite
    from edgeact.runtime.tflite import TFLiteRunner

    io_type = job.options.io_type
    int8, fp32 = _staged(staged, section, "int8"), _staged(staged, section, "fp32")
    int8.write_bytes(add_tflite_metadata(result.model, build_contract(job, io_type.value, None, _source_sha(job))))
    info = read_tflite(int8)
    threads = verify_threads()
    with native_output_captured():
        runner = TFLiteRunner(int8, threads=threads)
        fp32_runner = TFLiteRunner(fp32, threads=threads)
    job.predictions["tflite_int8"] = runner.predict(job.calibration.holdout)
    section.size_bytes["int8"] = info.size_bytes
    details = section.details
    details["op_counts"]["int8"] = info.op_counts()
    details["fusion"]["int8"] = check_fusion(info, result.best.float_nodes)
    details["integer_only"] = _accept_float(check_integer_only(info, float_io=io_type is IOType.FLOAT), result)
    details["ranges"] = result.best.ranges
    details["budget_attempt"] = result.best.attempt
    details["fast_path"] = fast_path_report(int8, fp32, "tflite", (Path(section.files["int8"]).name,
                                                                   Path(section.files["fp32"]).name),
                                            threads=threads, runners=(runner, fp32_runner))


def rewrite_onnx(job: ConvertJob, section: FormatReport, staged, result: SearchResult) -> None:
    from converters.metadata import add_onnx_metadata
    from converters.onnx.check import check_activations, check_integer_kernels, count_ops
    from converters.onnx.exporter import to_layout
    from edgeact.runtime.onnx import OnnxRunner

    int8, fp32 = _staged(staged, section, "int8"), _staged(staged, section, "fp32")
    int8.write_bytes(result.model)
    # ORT's QDQ model keeps a float interface, as the exporter's contract says.
    add_onnx_metadata(int8, build_contract(job, "float", None, _source_sha(job)), job.options.onnx_layout.value)
    job.predictions["onnx_int8"] = OnnxRunner(int8).predict(to_layout(job, job.calibration.holdout))
    section.size_bytes["int8"] = int8.stat().st_size
    details = section.details
    details["op_counts"]["int8"] = count_ops(int8)
    kernels = check_integer_kernels(int8, result.best.float_nodes)
    if not result.best.full_integer:
        kernels["summary"] = (f"NOT full-integer: {', '.join(result.best.float_layers)} kept in float by the accuracy "
                              f"budget search; {kernels['summary']}")
        kernels["accepted_float"] = list(result.best.float_layers)
    details["integer_kernels"] = kernels
    details["fusion"]["int8"] = check_activations(int8, quantized=True, float_nodes=result.best.float_nodes)
    quantization = details.setdefault("quantization", {})
    quantization["method"] = result.best.ranges
    if result.best.ranges == "percentile":
        quantization["percentile"] = job.options.percentile
    else:
        quantization.pop("percentile", None)
    if not result.best.full_integer:
        quantization["float_layers"] = list(result.best.float_layers)
    details["budget_attempt"] = result.best.attempt
    details["fast_path"] = fast_path_report(int8, fp32, "onnx", (Path(section.files["int8"]).name,
                                                                 Path(section.files["fp32"]).name))
