"""The `Runner` interface every runtime implements, and quantize/dequantize helpers.

A runner has two ways in. The convenience path, `predict`, takes float batches and
returns float outputs. The measuring path is what `edgeact.measure.profiler` times: inputs are
`prepare`d once (quantized with the model's own scale and zero point), then each step is
`write_input` (a copy into the runtime's own input buffer, no allocation), `invoke`, and
`store_outputs` (a copy from the runtime's output buffers into arrays allocated once).
Only `invoke` sits inside the timer.
"""
from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from edgeact.errors import InputError


class RuntimeName(str, enum.Enum):
    """Runtimes edgeact can drive; for .tflite the default is the first one installed."""

    LITERT = "litert"  # ai-edge-litert
    TFLITE_RUNTIME = "tflite-runtime"
    TF_LITE = "tf-lite"  # tensorflow.lite, on a desktop with TensorFlow
    ONNXRUNTIME = "onnxruntime"


class Delegate(str, enum.Enum):
    """Named delegates; any other value is taken as the path of a TFLite delegate library."""

    XNNPACK = "xnnpack"  # the TFLite runtimes' default CPU path; plain CPU provider in ORT
    NONE = "none"  # TFLite reference kernels, no delegate
    EDGETPU = "edgetpu"  # Coral Edge TPU through libedgetpu.so.1


def check_delegate(delegate: str) -> str:
    """A delegate name, or a library path that looks like one; InputError otherwise."""
    if delegate in {d.value for d in Delegate}:
        return delegate
    if Path(delegate).suffix in (".so", ".dylib", ".dll") or ".so." in Path(delegate).name:
        return delegate
    names = ", ".join(d.value for d in Delegate)
    raise InputError(f"unknown delegate '{delegate}'; choose {names} or give the path of a delegate library (.so)")


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
    """Float values to the tensor's type with its scale and zero point (a cast if not quantized).

    An array already of the tensor's integer type is taken as quantized (a host quantizes
    inputs before sending them to a device) and returned as it is.
    """
    if not spec.quantized or np.asarray(x).dtype == spec.dtype:
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
    timing), `invoke` runs the model, `get_outputs` returns raw outputs (copies).
    `write_input` / `store_outputs` are the allocation-free versions the profiler's loop uses.
    """

    format: str
    runtime: str
    runtime_version: str
    delegate: str
    path: Path
    inputs: list[IOSpec]
    outputs: list[IOSpec]

    @abstractmethod
    def set_inputs(self, arrays: list[np.ndarray]) -> None: ...

    @abstractmethod
    def invoke(self) -> None: ...

    @abstractmethod
    def get_outputs(self) -> list[np.ndarray]: ...

    def write_input(self, sample: np.ndarray) -> None:
        """Copy one prepared sample (with or without its batch axis) into the input buffer."""
        self.set_inputs([np.reshape(sample, self.inputs[0].shape)])

    def write_inputs(self, sample: tuple[np.ndarray, ...]) -> None:
        """Copy one prepared sample of every input (in `inputs` order) into the input buffers."""
        self.set_inputs([np.reshape(s, spec.shape) for s, spec in zip(sample, self.inputs)])

    def store_outputs(self, results: list[np.ndarray], row: int) -> None:
        """Copy the raw outputs of the last `invoke` into `results[k][row]`."""
        for slot, out in zip(results, self.get_outputs()):
            slot[row] = out.reshape(slot.shape[1:])

    def prepare(self, batch: np.ndarray, index: int = 0) -> np.ndarray:
        """Quantize a float batch for input `index`, once, outside any timed loop."""
        return quantize(batch, self.inputs[index])

    def run_prepared(self, prepared: np.ndarray, progress=None, chunk: int = 256) -> list[np.ndarray]:
        """Raw outputs (N, ...) for prepared samples (N, ...), one sample per `invoke`.

        Outputs go into arrays allocated once; `progress.update` is called every `chunk` samples.
        """
        n = len(prepared)
        results = [np.empty((n, *spec.shape[1:]), dtype=spec.dtype) for spec in self.outputs]
        write, invoke, store = self.write_input, self.invoke, self.store_outputs
        for i in range(n):
            write(prepared[i])
            invoke()
            store(results, i)
            if progress is not None and (i + 1) % chunk == 0:
                progress.update(chunk)
        if progress is not None and n % chunk:
            progress.update(n % chunk)
        return results

    def input_arrays(self, batch) -> list[np.ndarray]:
        """A batch (N, ...) for a single-input model, or arrays keyed by input name, in input order."""
        from edgeact.data.arrays import match_input_names

        arrays = getattr(batch, "arrays", batch)  # edgeact.data.samples.Samples carries its arrays by name
        if isinstance(arrays, Mapping):
            match_input_names(arrays, [s.name for s in self.inputs], f"the data for {self.path.name}")
            return [np.asarray(arrays[s.name]) for s in self.inputs]
        if len(self.inputs) != 1:
            raise InputError(f"{self.path.name} has {len(self.inputs)} inputs "
                             f"({', '.join(s.name for s in self.inputs)}); give arrays keyed by input name")
        return [np.asarray(arrays)]

    def predict(self, batch) -> dict[str, np.ndarray]:
        """Run a float batch one sample at a time; float outputs keyed by output name.

        Args:
            batch: (N, ...) for a single-input model, or `{input_name: (N, ...)}`.
        """
        arrays = self.input_arrays(batch)
        if len(arrays) == 1:
            raw = self.run_prepared(self.prepare(arrays[0]))
        else:
            raw = self._run_inputs([self.prepare(a, i) for i, a in enumerate(arrays)])
        return {spec.name: dequantize(r, spec) for r, spec in zip(raw, self.outputs)}

    def _run_inputs(self, prepared: list[np.ndarray]) -> list[np.ndarray]:
        """Raw outputs for a multi-input model, one sample at a time (not the profiler's timed path)."""
        n = len(prepared[0])
        results = [np.empty((n, *spec.shape[1:]), dtype=spec.dtype) for spec in self.outputs]
        for i in range(n):
            self.set_inputs([np.reshape(p[i], spec.shape) for p, spec in zip(prepared, self.inputs)])
            self.invoke()
            self.store_outputs(results, i)
        return results

    def describe(self) -> dict:
        return {
            "format": self.format, "runtime": self.runtime, "runtime_version": self.runtime_version,
            "delegate": self.delegate,
            "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
        }
