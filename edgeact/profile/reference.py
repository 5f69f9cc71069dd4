"""The float model every profile row is compared with: Keras (host only), or a float .tflite/.onnx."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgeact.errors import InputError, RuntimeUnavailableError, first_line
from edgeact.measure.profiler import fit_inputs
from edgeact.runtime import dequantize, open_runner


class Reference:
    """The float model every row is compared with: Keras (host only), or a float .tflite/.onnx."""

    def __init__(self, path: str | Path, code=None) -> None:
        self.path = Path(path)
        self.code = code  # a Keras reference's custom objects / Lambda trust (converters.keras.model_code)
        if not self.path.exists():
            raise InputError(f"--reference {self.path} does not exist; check the path")
        suffix = self.path.suffix.lower()
        self.kind = suffix[1:] if suffix in (".tflite", ".onnx") else "keras"
        if self.kind == "keras" and importlib.util.find_spec("tensorflow") is None:
            raise RuntimeUnavailableError(f"--reference {self.path} is a Keras model, which needs TensorFlow; "
                                          "pip install 'edgeact[convert]', or give a float .tflite/.onnx")
        self._runner = open_runner(self.path) if self.kind != "keras" else None
        self._model = None

    def predict(self, inputs, bars=None) -> dict[str, np.ndarray]:
        """Every output, by name, for NHWC float inputs (an array, or arrays keyed by input name)."""
        if self._runner is not None and isinstance(inputs, dict):
            by_name = {s.name: s for s in self._runner.inputs}
            missing = [n for n in inputs if n not in by_name]
            if missing:
                raise InputError(f"the reference {self.path.name} has no input '{missing[0]}'; give the float "
                                 "model these models were converted from")
            return self._runner.predict({n: fit_inputs(a, by_name[n], "the data") for n, a in inputs.items()})
        if self._runner is not None:
            fitted = fit_inputs(inputs, self._runner.inputs[0], "the data")
            bar = bars(f"reference {self.path.name}", len(fitted)) if bars else None
            try:
                prepared = self._runner.prepare(fitted)
                raw = self._runner.run_prepared(prepared, bar)
            finally:
                if bar is not None:
                    bar.close()
            return {spec.name: dequantize(r, spec) for r, spec in zip(raw, self._runner.outputs)}
        if self._model is None:
            self._model = _load_keras(self.path, self.code)
        try:
            return _predict_keras(self._model, inputs)
        except (ValueError, TypeError) as exc:  # Keras: the data does not fit the model
            raise InputError(f"--reference {self.path} cannot run on the data: {first_line(exc, 200)}; give the "
                             "float model these models were converted from") from None

    def describe(self) -> dict:
        return {"path": str(self.path), "kind": self.kind}


def _load_keras(path: Path, code=None):
    try:
        from converters.keras.loader import load_model
    except ImportError:
        raise RuntimeUnavailableError(f"--reference {path} is a Keras model, which needs TensorFlow; "
                                      "pip install 'edgeact[convert]', or give a float .tflite/.onnx") from None
    try:
        loaded = load_model(path, code)
    except ImportError:
        raise RuntimeUnavailableError(f"--reference {path} needs TensorFlow; pip install 'edgeact[convert]', "
                                      "or give a float .tflite/.onnx as reference") from None
    if loaded.keras_model is None:
        return loaded.saved_model_fn
    from converters.keras.signature import functional

    return functional(loaded.keras_model)




def _predict_keras(model, inputs: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """A Keras model's (or SavedModel signature's) outputs by name, batch by batch."""
    parts: dict[str, list[np.ndarray]] = {}
    named = isinstance(inputs, dict)
    count = len(next(iter(inputs.values()))) if named else len(inputs)
    for start in range(0, count, batch_size):
        if named:
            batch = {n: a[start:start + batch_size] for n, a in inputs.items()}
        else:
            batch = inputs[start:start + batch_size]
        if hasattr(model, "output_names"):
            if named:
                batch = [batch[t.name] for t in model.inputs]
            outputs = model(batch, training=False)
            if not isinstance(outputs, dict):
                outputs = dict(zip(model.output_names, outputs if isinstance(outputs, (list, tuple)) else [outputs]))
        else:
            if named:
                outputs = model(**batch)
            else:
                (name,) = model.structured_input_signature[1]
                outputs = model(**{name: batch})
        for key, value in outputs.items():
            parts.setdefault(str(key), []).append(np.asarray(value))
    return {key: np.concatenate(values) for key, values in parts.items()}
