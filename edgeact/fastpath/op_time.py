"""Where an inference's time goes, per op type: the share the ops off the fast path take.

Coverage (`edgeact.fastpath.coverage`) says which ops left the fast path; this module says what
they cost, measured, as a share of the whole model's time with the same runtime and threads.
ONNX Runtime: its session profiler (`edgeact.fastpath.op_time_onnx`). TFLite: LiteRT 2.3's
Python interpreter has no op profiler, so `edgeact.fastpath.op_time_tflite` times each op left
off the delegate as a one-op model (see there). The records are `edgeact.fastpath.op_shares`.

numpy and a runtime only.
"""
from __future__ import annotations

from pathlib import Path

from edgeact.errors import EdgeactError, InputError

from .op_shares import OpTimes


def model_op_times(path: str | Path, threads: int | None = None, delegate: str = "xnnpack", runs: int = 20,
                   fmt: str | None = None, coverage=None, whole_ms: float | None = None) -> OpTimes:
    """Per-op-type time shares of a .tflite or .onnx model; the entry point for inspect, convert, profile.

    Args:
        fmt: "tflite" or "onnx"; None: from the suffix (convert's staged files have none).
        coverage, whole_ms: the TFLite model's `Coverage` and median call time when already
            measured (not measured twice; ORT's profiler measures its own total).
    """
    fmt = fmt or Path(path).suffix.lower().lstrip(".")
    if fmt == "onnx":
        from .op_time_onnx import onnx_op_times

        return onnx_op_times(path, threads=threads, runs=runs)
    if fmt == "tflite":
        from .op_time_tflite import tflite_op_times

        return tflite_op_times(path, threads=threads, delegate=delegate, runs=runs, coverage=coverage,
                               whole_ms=whole_ms)
    raise InputError(f"{path} is not a .tflite or .onnx file; op times are measured on converted models")


def measured_op_times(path: str | Path, **kwargs) -> dict:
    """`model_op_times(...).to_dict()`, or {"unavailable": why} where this runtime cannot measure them."""
    try:
        return model_op_times(path, **kwargs).to_dict()
    except EdgeactError as exc:
        return {"unavailable": str(exc)}
