"""The runtime layer: one `Runner` interface over TFLite runtimes and ONNX Runtime.

`base` is the interface (inputs by name, quantization, delegates), `tflite` runs LiteRT,
tflite-runtime or tf.lite, `onnx` ONNX Runtime; `open_runner` picks one for a file.

May import: the core, `edgeact.formats`, `edgeact.data`.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from edgeact.errors import InputError

from .base import Delegate, IOSpec, Runner, RuntimeName, check_delegate, dequantize, quantize

__all__ = ["Delegate", "IOSpec", "Runner", "RuntimeName", "check_delegate", "dequantize",
           "import_runtime", "installed_runtimes", "model_format", "open_runner", "quantize", "runtimes_for"]

_RUNTIME_MODULES = {
    RuntimeName.LITERT: "ai_edge_litert",
    RuntimeName.TFLITE_RUNTIME: "tflite_runtime",
    RuntimeName.TF_LITE: "tensorflow",
    RuntimeName.ONNXRUNTIME: "onnxruntime",
}
_FORMAT_RUNTIMES = {
    "tflite": (RuntimeName.LITERT, RuntimeName.TFLITE_RUNTIME, RuntimeName.TF_LITE),
    "onnx": (RuntimeName.ONNXRUNTIME,),
}


def model_format(path: str | Path) -> str:
    """'tflite' or 'onnx' from the file suffix; InputError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in (".tflite", ".onnx"):
        return suffix[1:]
    raise InputError(f"{path} is not a .tflite or .onnx model; give one written by edgeact convert")


def runtimes_for(fmt: str) -> tuple[RuntimeName, ...]:
    """The runtimes that run a format, in the order the default picks them."""
    return _FORMAT_RUNTIMES[fmt]


def installed_runtimes() -> list[RuntimeName]:
    """Runtimes whose Python package is importable here, without importing them."""
    installed = []
    for name, module in _RUNTIME_MODULES.items():
        try:
            if importlib.util.find_spec(module) is not None:
                installed.append(name)
        except (ImportError, ValueError):  # a module set to None in sys.modules raises ValueError
            continue
    return installed


def import_runtime(fmt: str, runtime: RuntimeName | str | None = None) -> None:
    """Import the runtime a model will use, so that loading the model can be timed on its own."""
    if fmt == "tflite":
        from .tflite import tflite_backend

        tflite_backend(runtime)
    else:
        from .onnx import import_onnxruntime

        import_onnxruntime()


def open_runner(path: str | Path, runtime: RuntimeName | str | None = None,
                threads: int | None = None, delegate: str = "xnnpack",
                input_shape: tuple[int, ...] | None = None) -> Runner:
    """Open a .tflite or .onnx model in the requested (or first installed) runtime.

    `input_shape` (without batch) sets the dynamic dimensions of an ONNX model's input.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"model {path} does not exist; check the path")
    fmt = model_format(path)
    if fmt == "tflite":
        from .tflite import TFLiteRunner

        return TFLiteRunner(path, runtime=runtime, threads=threads, delegate=delegate)
    from .onnx import OnnxRunner

    return OnnxRunner(path, runtime=runtime, threads=threads, delegate=delegate, input_shape=input_shape)
