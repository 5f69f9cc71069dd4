"""`edgeact inspect`: what is inside a .tflite or .onnx model."""
from __future__ import annotations

from pathlib import Path

from .errors import InputError, ModelLoadError
from .tflite_model import read_tflite


def describe_model(path: str | Path) -> dict:
    """Ops, fused activations, tensors, quantization and size of a model file, as a dict."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from .model_metadata import read_metadata

        return {**read_tflite(path).to_dict(), "metadata": read_metadata(path).to_dict()}
    if suffix == ".onnx":
        from .onnx_model import read_onnx

        return read_onnx(path)
    raise InputError(f"{path} is not a .tflite or .onnx file; inspect takes converted models")
