"""Why an INT8 ONNX model is far from float: its quantization, or this host's integer kernels.

A QDQ model states its arithmetic (DequantizeLinear -> float op -> QuantizeLinear); ONNX
Runtime's optimiser replaces each such group with an integer kernel (QLinearConv, ...) that
should compute the same up to rounding. Run with only the basic optimisations, ORT keeps the
QDQ groups and computes exactly what the file says. Comparing the two runs separates a model
that quantization hurt (both far from float) from kernels that misbehave on this CPU (the
kernels far from the model's own arithmetic), e.g. 8-bit weights on x86-64 without VNNI
(edgeact.cpu_features).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from converters.job import ConvertJob
from edgeact.cpu_features import precise_u8s8_available, u8s8_saturates
from edgeact.metrics import sqnr_db

# ORT's session config key for exact U8S8 products on x86-64 without VNNI (kOrtSessionOptionsAvx2PrecisionMode
# in onnxruntime_session_options_config_keys.h: "use slower U8U8 matrix multiplications. Only effective
# with AVX2 or AVX512 platforms").
PRECISE_U8S8 = "session.x64quantprecision"


@dataclass
class VerifyArithmetic:
    """How convert runs the INT8 ONNX model on this host to judge it: with the host's integer
    kernels when they compute what the target computes, else with the target's arithmetic."""

    method: str  # "kernels", "x64quantprecision" (ORT's exact U8U8 kernels) or "qdq_reference" (DQ -> float op -> Q)
    text: str
    optimization: str = "all"
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def verify_arithmetic(weight_bits: int) -> VerifyArithmetic:
    """The arithmetic the host verification judges an INT8 ONNX model by.

    8-bit weights on an x86-64 host without VNNI (edgeact.cpu_features.u8s8_saturates): ORT's
    U8S8 kernels saturate there, but not on the ARM/VNNI target such weights are for, so the
    host runs the target's exact arithmetic: ORT's U8U8 kernels (session.x64quantprecision=1)
    where ORT has them (AVX2/AVX-512), else the model's own QDQ arithmetic (basic optimisation:
    DequantizeLinear -> float op -> QuantizeLinear).
    """
    if weight_bits != 8 or not u8s8_saturates():
        return VerifyArithmetic("kernels", "ONNX Runtime's integer kernels on this CPU (they compute what the "
                                           "target computes)")
    if precise_u8s8_available():
        return VerifyArithmetic("x64quantprecision", f"ONNX Runtime's exact U8U8 kernels ({PRECISE_U8S8}=1): "
                                "this x86-64 CPU has no VNNI and its U8S8 kernels saturate 8-bit weights, which the "
                                "ARM/VNNI target computes exactly", config={PRECISE_U8S8: "1"})
    return VerifyArithmetic("qdq_reference", "the model's QDQ arithmetic (DequantizeLinear -> float op -> "
                            "QuantizeLinear): this x86-64 CPU has no VNNI and no AVX2 for ORT's exact kernels, and its "
                            "U8S8 kernels saturate 8-bit weights, which the ARM/VNNI target computes exactly",
                            optimization="basic")

# Samples the diagnosis runs: it explains a failed check, the verdict is already made.
DIAGNOSIS_SAMPLES = 8
# The kernels are the cause when they lose this much more against Keras than the model's own QDQ
# arithmetic does on the same samples. Healthy kernels differ from the QDQ arithmetic by rounding
# only and land within a dB or so of it against Keras (17.7 vs 18.4 dB on a random-weight
# MobileNetV3Small); saturating 8-bit weights on x86 without VNNI lost 17.8 dB there (0.6 vs 18.4).
KERNEL_MARGIN_DB = 10.0


def kernel_diagnosis(job: ConvertJob) -> dict[str, dict] | None:
    """Per output, measured on the first held-out samples: the SQNR of the kernels against the
    QDQ arithmetic and of the QDQ arithmetic against Keras, and whether the kernels are the cause.
    None when there is no INT8 ONNX to diagnose."""
    from edgeact.runtime.onnx import OnnxRunner

    from .exporter import to_layout

    path = job.int8_files.get("onnx")
    kernels = job.predictions.get("onnx_int8")
    if path is None or kernels is None or not Path(path).exists():
        return None
    holdout = to_layout(job, job.calibration.holdout.head(DIAGNOSIS_SAMPLES))
    qdq = OnnxRunner(path, optimization="basic").predict(holdout)
    n = len(next(iter(holdout.values())))
    found = {}
    for name in job.output_names:
        reference = job.reference_outputs[name][:n]
        kernel_db = sqnr_db(qdq[name], kernels[name][:n])
        qdq_db = sqnr_db(reference, qdq[name])
        kernels_keras_db = sqnr_db(reference, kernels[name][:n])
        found[name] = {"samples": n, "kernels_vs_qdq_sqnr_db": round(kernel_db, 2),
                       "qdq_vs_keras_sqnr_db": round(qdq_db, 2), "kernels_vs_keras_sqnr_db": round(kernels_keras_db, 2),
                       "kernels_are_the_cause": bool(qdq_db - kernels_keras_db >= KERNEL_MARGIN_DB)}
    return found


def kernel_advice(job: ConvertJob, found: dict) -> str:
    """The advice for an ONNX INT8 parity failure that this host's kernels, not quantization, cause."""
    kernel_db, qdq_db = found["kernels_vs_keras_sqnr_db"], found["qdq_vs_keras_sqnr_db"]
    measured = (f"ONNX Runtime's integer kernels on this CPU are at {kernel_db:.1f} dB from Keras where the "
                f"model's own QDQ arithmetic is at {qdq_db:.1f} dB")
    if job.options.onnx_weight_bits == 8 and u8s8_saturates():
        return (f"{measured}: x86-64 without VNNI saturates 8-bit weights; convert with --onnx-weight-bits 7 "
                "(or --target x86-avx2) for this CPU, or verify on the ARM/VNNI target this model is for")
    return f"{measured}: the kernels misbehave here, not the quantization; run the model on its target to compare"


__all__ = ["DIAGNOSIS_SAMPLES", "KERNEL_MARGIN_DB", "PRECISE_U8S8", "VerifyArithmetic", "kernel_advice",
           "kernel_diagnosis", "verify_arithmetic"]
