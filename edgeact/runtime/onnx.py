"""ONNX Runtime runner for .onnx models (float or QDQ INT8)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, ModelLoadError, RuntimeUnavailableError
from .base import IOSpec, Runner, RuntimeName

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
}


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeUnavailableError("running .onnx models needs ONNX Runtime; pip install onnxruntime") from None
    return onnxruntime


def session_options(threads: int | None = None, optimized_path: str | Path | None = None):
    """ORT session options: all graph optimisations, optional thread count and optimized-graph dump."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return options


class OnnxRunner(Runner):
    """An .onnx model in an ONNX Runtime InferenceSession (CPU execution provider by default).

    The model's float interface is kept: QDQ models quantize inside the graph, so inputs
    are float32 and `prepare` is a cast.
    """

    format = "onnx"

    def __init__(self, path: str | Path, runtime: RuntimeName | str | None = None,
                 threads: int | None = None, delegate: str = "xnnpack") -> None:
        if runtime is not None and RuntimeName(runtime) is not RuntimeName.ONNXRUNTIME:
            raise InputError(f"runtime '{runtime}' does not run .onnx models; use --runtime onnxruntime")
        ort = import_onnxruntime()
        self.path = Path(path)
        self.runtime = RuntimeName.ONNXRUNTIME.value
        self.runtime_version = ort.__version__
        # ORT's execution provider plays the part of a TFLite delegate here.
        self.delegate = "CPUExecutionProvider"
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
            raise ModelLoadError(
                f"ONNX Runtime cannot load {self.path}: {str(exc).splitlines()[0][:200]}; re-export it"
            ) from None
        self.inputs = [IOSpec(i.name, tuple(d if isinstance(d, int) else 1 for d in i.shape),
                              np.dtype(_ORT_TYPES.get(i.type, np.float32))) for i in self.session.get_inputs()]
        self.outputs = [IOSpec(o.name, tuple(d if isinstance(d, int) else 1 for d in o.shape),
                               np.dtype(_ORT_TYPES.get(o.type, np.float32))) for o in self.session.get_outputs()]
        self._names = [o.name for o in self.session.get_outputs()]
        self._feed: dict[str, np.ndarray] = {}
        self._results: list[np.ndarray] = []

    def set_inputs(self, arrays: list[np.ndarray]) -> None:
        self._feed = {spec.name: array for spec, array in zip(self.inputs, arrays)}

    def invoke(self) -> None:
        self._results = self.session.run(self._names, self._feed)

    def get_outputs(self) -> list[np.ndarray]:
        return self._results

    def predict(self, batch: np.ndarray) -> list[np.ndarray]:
        """Whole batches at once where the model's batch axis is dynamic; else one at a time."""
        shape = self.session.get_inputs()[0].shape
        if shape and not isinstance(shape[0], int):
            outputs = self.session.run(self._names, {self.inputs[0].name: self.prepare(batch)})
            return [np.asarray(o, dtype=np.float32) for o in outputs]
        return super().predict(batch)
