"""edgeact: quantized CNNs on edge devices.

This package is what runs on the device: it needs numpy and a TFLite runtime (or ONNX
Runtime), never TensorFlow. Host-side conversion lives in the `converters` and
`calibration` packages.
"""
__version__ = "0.1.0"

from .errors import EdgeactError  # noqa: E402


def load(path, runtime=None, threads=None, delegate="xnnpack"):
    """A converted .tflite model ready for camera frames: `edgeact.load(p).classify(frame, top_k=5)`.

    Imported on first use, so `import edgeact` stays light. See `edgeact.frame_api.FrameModel`.
    """
    from .frame_api import load as _load

    return _load(path, runtime=runtime, threads=threads, delegate=delegate)


__all__ = ["EdgeactError", "__version__", "load"]
