"""The runtime layer: one `Runner` interface over TFLite runtimes and ONNX Runtime."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .base import IOSpec, Runner, RuntimeName, dequantize, quantize

__all__ = ["IOSpec", "Runner", "RuntimeName", "dequantize", "open_runner", "quantize"]


def open_runner(path: str | Path, runtime: RuntimeName | str | None = None,
                threads: int | None = None, delegate: str = "xnnpack") -> Runner:
    """Open a .tflite or .onnx model in the requested (or first installed) runtime."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from .tflite import TFLiteRunner

        return TFLiteRunner(path, runtime=runtime, threads=threads, delegate=delegate)
    if suffix == ".onnx":
        from .onnx import OnnxRunner

        return OnnxRunner(path, runtime=runtime, threads=threads, delegate=delegate)
    raise InputError(f"{path} is not a .tflite or .onnx model; give one written by edgeact convert")
