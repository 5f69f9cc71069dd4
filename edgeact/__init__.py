"""edgeact: quantized CNNs on edge devices.

This package is what runs on the device: it needs numpy and a TFLite runtime (or ONNX
Runtime), never TensorFlow. Host-side conversion lives in the `converters` and
`calibration` packages.
"""
__version__ = "0.1.0"

from .errors import EdgeactError  # noqa: E402

__all__ = ["EdgeactError", "__version__"]
