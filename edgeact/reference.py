"""The float model every profile row is compared with: Keras (host only), or a float .tflite/.onnx."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .errors import InputError, RuntimeUnavailableError
from .profiler import fit_inputs
from .runtime import dequantize, open_runner


class Reference:
    """The float model every row is compared with: Keras (host only), or a float .tflite/.onnx."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"--reference {self.path} does not exist; check the path")
        suffix = self.path.suffix.lower()
        self.kind = suffix[1:] if suffix in (".tflite", ".onnx") else "keras"
        if self.kind == "keras" and importlib.util.find_spec("tensorflow") is None:
            raise RuntimeUnavailableError(f"--reference {self.path} is a Keras model, which needs TensorFlow; "
                                          "pip install 'edgeact[convert]', or give a float .tflite/.onnx")
        self._runner = open_runner(self.path) if self.kind != "keras" else None
        self._model = None

    def predict(self, inputs: np.ndarray, bars=None) -> np.ndarray:
        """The first output for NHWC float inputs."""
        if self._runner is not None:
            fitted = fit_inputs(inputs, self._runner.inputs[0], "the data")
            bar = bars(f"reference {self.path.name}", len(fitted)) if bars else None
            try:
                prepared = self._runner.prepare(fitted)
                raw = self._runner.run_prepared(prepared, bar)[0]
            finally:
                if bar is not None:
                    bar.close()
            return dequantize(raw, self._runner.outputs[0])
        from converters.verify import predict_keras

        if self._model is None:
            self._model = _load_keras(self.path)
        try:
            return predict_keras(self._model, inputs)[0]
        except (ValueError, TypeError) as exc:  # Keras: the data does not fit the model
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise InputError(f"--reference {self.path} cannot run on the data: {detail}; give the float model "
                             "these models were converted from") from None

    def describe(self) -> dict:
        return {"path": str(self.path), "kind": self.kind}


def _load_keras(path: Path):
    try:
        from converters.keras_loader import load_model
    except ImportError:
        raise RuntimeUnavailableError(f"--reference {path} is a Keras model, which needs TensorFlow; "
                                      "pip install 'edgeact[convert]', or give a float .tflite/.onnx") from None
    try:
        loaded = load_model(path)
    except ImportError:
        raise RuntimeUnavailableError(f"--reference {path} needs TensorFlow; pip install 'edgeact[convert]', "
                                      "or give a float .tflite/.onnx as reference") from None
    return loaded.keras_model if loaded.keras_model is not None else loaded.saved_model_fn


