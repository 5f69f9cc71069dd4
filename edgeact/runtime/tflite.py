"""TFLite runner over LiteRT (ai-edge-litert), tflite-runtime or tf.lite, whichever is installed.

Copy-free input and output: `interpreter.tensor(index)` returns a function that gives a
numpy view of the tensor's buffer. The interpreter refuses to `invoke()` while any such
view is alive (ai-edge-litert 2.3 checks the refcount of its native object and raises
RuntimeError "There is at least 1 reference to internal data"), so the runner keeps the
*functions* and takes a fresh view for each write or read, inside one statement, so the
view is gone before the next `invoke`.
"""
from __future__ import annotations

import ctypes
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeact.errors import InputError, ModelLoadError, RuntimeUnavailableError, first_line
from edgeact.formats.tflite_model import check_tflite_file
from edgeact.quiet import native_output_captured, runtime_output_captured

from .base import Delegate, IOSpec, Runner, RuntimeName, check_delegate

EDGETPU_LIBRARY = "libedgetpu.so.1"


@dataclass(frozen=True)
class TFLiteBackend:
    name: RuntimeName
    version: str
    interpreter: type
    load_delegate: Callable[..., Any]
    op_resolver: Any  # OpResolverType enum, to turn the default XNNPACK delegate off


def _import_backend(name: RuntimeName) -> TFLiteBackend:
    if name is RuntimeName.LITERT:
        module = importlib.import_module("ai_edge_litert.interpreter")
        version = getattr(importlib.import_module("ai_edge_litert"), "__version__", None)
        if version is None:
            from importlib.metadata import version as dist_version

            version = dist_version("ai-edge-litert")
    elif name is RuntimeName.TFLITE_RUNTIME:
        module = importlib.import_module("tflite_runtime.interpreter")
        version = getattr(importlib.import_module("tflite_runtime"), "__version__", "unknown")
    elif name is RuntimeName.TF_LITE:
        tf = _import_tensorflow()
        module, version = tf.lite, tf.__version__
        return TFLiteBackend(name, version, tf.lite.Interpreter, tf.lite.experimental.load_delegate,
                             tf.lite.experimental.OpResolverType)
    else:
        raise InputError(f"runtime '{name.value}' does not run .tflite models; choose litert, "
                         "tflite-runtime or tf-lite")
    return TFLiteBackend(name, str(version), module.Interpreter, module.load_delegate,
                         getattr(module, "OpResolverType", None))


def _import_tensorflow():
    """TensorFlow without its start-up banners, and without tf.lite's deprecation warning."""
    import warnings

    from edgeact.quiet import silence_tensorflow

    silence_tensorflow()
    warnings.filterwarnings("ignore", message=r".*tf.lite.Interpreter is deprecated.*")
    with native_output_captured():
        return importlib.import_module("tensorflow")


TFLITE_RUNTIMES = (RuntimeName.LITERT, RuntimeName.TFLITE_RUNTIME, RuntimeName.TF_LITE)


def tflite_backend(runtime: RuntimeName | str | None = None) -> TFLiteBackend:
    """The requested TFLite runtime, or the first installed in the order litert, tflite-runtime, tf.lite."""
    if runtime is not None:
        name = RuntimeName(runtime)
        try:
            return _import_backend(name)
        except ImportError:
            raise RuntimeUnavailableError(
                f"runtime '{name.value}' is not installed; {INSTALL_HINTS[name]}"
            ) from None
    for name in TFLITE_RUNTIMES:
        try:
            return _import_backend(name)
        except ImportError:
            continue
    raise RuntimeUnavailableError(
        "no TFLite runtime is installed; pip install ai-edge-litert "
        "(or 'numpy<2' tflite-runtime on older Raspberry Pi OS)"
    )


INSTALL_HINTS = {
    RuntimeName.LITERT: "pip install ai-edge-litert",
    RuntimeName.TFLITE_RUNTIME: "pip install 'numpy<2' tflite-runtime",
    RuntimeName.TF_LITE: "pip install tensorflow",
    RuntimeName.ONNXRUNTIME: "pip install onnxruntime",
}



def signature_names(interpreter) -> tuple[dict[int, str], dict[int, str]]:
    """{tensor index: name} of the inputs and outputs in the model's one SignatureDef.

    The SignatureDef carries the Keras names edgeact converted with; tensor names and tensor
    order do not (TFLite may swap two inputs). A model without exactly one signature keeps
    its tensor names.
    """
    try:
        signatures = interpreter._get_full_signature_list()
    except (AttributeError, RuntimeError, ValueError):
        return {}, {}
    if not signatures or len(signatures) != 1:
        return {}, {}
    signature = next(iter(signatures.values()))
    return ({int(i): str(n) for n, i in signature.get("inputs", {}).items()},
            {int(i): str(n) for n, i in signature.get("outputs", {}).items()})


def _spec(detail: dict, names: dict[int, str]) -> IOSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return IOSpec(
        name=names.get(int(detail["index"]), detail["name"]), shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]), scale=float(scale), zero_point=int(zero_point),
    )


class TFLiteRunner(Runner):
    """A .tflite model in a TFLite interpreter.

    Args:
        path: the .tflite file; its flatbuffer is checked before the interpreter sees it.
        runtime: a RuntimeName, or None for the first installed.
        threads: interpreter threads (None: the runtime's default).
        delegate: "xnnpack" (the runtime's default CPU path), "none" (reference kernels),
            "edgetpu" (Coral, libedgetpu.so.1), or a path to a delegate library.
    """

    format = "tflite"

    def __init__(self, path: str | Path, runtime: RuntimeName | str | None = None,
                 threads: int | None = None, delegate: str = "xnnpack") -> None:
        self.path = Path(path)
        delegate = check_delegate(Delegate(delegate).value if isinstance(delegate, Delegate) else delegate)
        check_tflite_file(self.path)
        backend = tflite_backend(runtime)
        self.runtime = backend.name.value
        self.runtime_version = backend.version
        self.delegate = delegate
        kwargs: dict[str, Any] = {"model_path": str(self.path)}
        if threads is not None:
            kwargs["num_threads"] = int(threads)
        if delegate == "none":
            if backend.op_resolver is None:
                raise RuntimeUnavailableError(
                    f"{self.runtime} {self.runtime_version} cannot turn XNNPACK off; use --delegate xnnpack"
                )
            kwargs["experimental_op_resolver_type"] = backend.op_resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif delegate != "xnnpack":
            kwargs["experimental_delegates"] = [self._load_delegate(backend, delegate)]
        try:
            # The runtime announces its XNNPACK delegate on stdout/stderr from C++; keep it off the table.
            with runtime_output_captured():
                self.interpreter = backend.interpreter(**kwargs)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{self.runtime} cannot load {self.path}: {first_line(exc)}") from None
        # Bound directly: one Python frame less inside the profiler's timed loop.
        self.invoke = self.interpreter.invoke
        self._input_index = [d["index"] for d in self.interpreter.get_input_details()]
        self._output_index = [d["index"] for d in self.interpreter.get_output_details()]
        input_names, output_names = signature_names(self.interpreter)
        self.inputs = [_spec(d, input_names) for d in self.interpreter.get_input_details()]
        self.outputs = [_spec(d, output_names) for d in self.interpreter.get_output_details()]
        self._input_views = [self.interpreter.tensor(i) for i in self._input_index]
        self._output_views = [self.interpreter.tensor(i) for i in self._output_index]

    @staticmethod
    def _load_delegate(backend: TFLiteBackend, delegate: str):
        library = EDGETPU_LIBRARY if delegate == "edgetpu" else delegate
        try:
            # Load the library ourselves first: when LiteRT's load_delegate fails, its half-made
            # Delegate object prints a traceback from __del__ under our error line.
            ctypes.CDLL(library)
            return backend.load_delegate(library)
        except (ValueError, OSError, RuntimeError):
            if delegate == "edgetpu":
                raise RuntimeUnavailableError(
                    f"cannot load the Edge TPU delegate ({EDGETPU_LIBRARY}); install libedgetpu1-std "
                    "from the Coral apt repository and plug the Coral in"
                ) from None
            raise RuntimeUnavailableError(
                f"cannot load delegate library '{library}'; check the path and that it matches "
                f"{backend.name.value} {backend.version}"
            ) from None

    def set_inputs(self, arrays: list[np.ndarray]) -> None:
        for index, array in zip(self._input_index, arrays):
            self.interpreter.set_tensor(index, array)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def get_outputs(self) -> list[np.ndarray]:
        return [self.interpreter.get_tensor(i) for i in self._output_index]

    def write_input(self, sample: np.ndarray) -> None:
        # The view lives only for this statement; np.copyto broadcasts (H, W, C) to (1, H, W, C).
        np.copyto(self._input_views[0](), sample)

    def store_outputs(self, results: list[np.ndarray], row: int) -> None:
        for slot, view in zip(results, self._output_views):
            slot[row] = view().reshape(slot.shape[1:])  # the view dies with the statement
