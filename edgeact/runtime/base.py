"""The `Runner` interface every runtime implements, and quantize/dequantize helpers."""
from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class RuntimeName(str, enum.Enum):
    """Runtimes edgeact can drive; for .tflite the default is the first one installed."""

    LITERT = "litert"  # ai-edge-litert
    TFLITE_RUNTIME = "tflite-runtime"
    TF_LITE = "tf-lite"  # tensorflow.lite, on a desktop with TensorFlow
    ONNXRUNTIME = "onnxruntime"


@dataclass(frozen=True)
class IOSpec:
    """One model input or output: its shape, type and (per-tensor) quantization."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "shape": list(self.shape), "dtype": np.dtype(self.dtype).name,
            "scale": self.scale, "zero_point": self.zero_point,
        }


def quantize(x: np.ndarray, spec: IOSpec) -> np.ndarray:
    """Float values to the tensor's type with its scale and zero point (a cast if not quantized)."""
    if not spec.quantized:
        return np.asarray(x, dtype=spec.dtype)
    info = np.iinfo(spec.dtype)
    q = np.round(np.asarray(x, dtype=np.float32) / np.float32(spec.scale)) + spec.zero_point
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def dequantize(q: np.ndarray, spec: IOSpec) -> np.ndarray:
    """The tensor's values as float32 (a cast if not quantized)."""
    if not spec.quantized:
        return np.asarray(q, dtype=np.float32)
    return ((np.asarray(q, dtype=np.int32) - spec.zero_point) * np.float32(spec.scale)).astype(np.float32)


class Runner(ABC):
    """A loaded model ready to run one sample at a time.

    `set_inputs` takes arrays already in the model's input types (prepared before any
    timing), `invoke` runs the model, `get_outputs` returns raw outputs. `predict` is
    the convenience path: float in, float out, over a batch.
    """

    format: str
    runtime: str
    runtime_version: str
    delegate: str
    inputs: list[IOSpec]
    outputs: list[IOSpec]

    @abstractmethod
    def set_inputs(self, arrays: list[np.ndarray]) -> None: ...

    @abstractmethod
    def invoke(self) -> None: ...

    @abstractmethod
    def get_outputs(self) -> list[np.ndarray]: ...

    def prepare(self, batch: np.ndarray, index: int = 0) -> np.ndarray:
        """Quantize a float batch for input `index`, once, outside any timed loop."""
        return quantize(batch, self.inputs[index])

    def predict(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run a float batch (N, ...) one sample at a time; float outputs, one array per output."""
        prepared = self.prepare(batch)
        results: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for sample in prepared:
            self.set_inputs([sample[None]])
            self.invoke()
            for slot, out, spec in zip(results, self.get_outputs(), self.outputs):
                slot.append(dequantize(out, spec)[0])
        return [np.stack(r) for r in results]

    def describe(self) -> dict:
        return {
            "format": self.format, "runtime": self.runtime, "runtime_version": self.runtime_version,
            "delegate": self.delegate,
            "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
        }
