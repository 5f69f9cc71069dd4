"""constant_normalization: a Normalization layer becomes the Rescaling it computes, with constants.

    Normalization(mean=m, variance=v)          becomes  Rescaling(scale=1/s, offset=-m/s)
                                                        with s = max(sqrt(v), epsilon), per channel

Why: Keras 3 keeps an adapted Normalization's mean and variance as variables; tf2onnx
turns them into graph inputs ('.../Sub/y:0' missing from the input feed) and ONNX Runtime's
quantizer stops (EfficientNet, ConvNeXt). Written as Rescaling constants they are folded
into the graph like any weight, in TFLite and ONNX alike. The pipeline checks the outputs
did not move.

Guards (the layer stays, with the reason):
- `invert=True` (a de-normalization) is left alone;
- mean and variance must be one value, or one per channel of the last axis.
"""
from __future__ import annotations

import numpy as np

from converters.keras.graph import KerasGraph

from .registry import PassResult, register_pass

EPSILON = 1e-7  # keras.backend.epsilon(), the floor Normalization puts under sqrt(variance)


def _statistics(graph: KerasGraph, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    config = graph.layer_config(name)
    if config.get("mean") is not None and config.get("variance") is not None:
        return np.asarray(config["mean"], np.float64), np.asarray(config["variance"], np.float64)
    weights = graph.weights.get(name) or []
    if len(weights) >= 2:
        return np.asarray(weights[0], np.float64), np.asarray(weights[1], np.float64)
    return None


@register_pass("constant_normalization")
def constant_normalization(graph: KerasGraph) -> PassResult:
    result = PassResult("constant_normalization")
    for entry in list(graph.layers):
        if entry["class_name"] != "Normalization":
            continue
        name, config = entry["name"], entry["config"]
        if config.get("invert"):
            result.skipped.append({"layer": name, "reason": "invert=True (de-normalization) is kept as it is"})
            continue
        stats = _statistics(graph, name)
        if stats is None:
            result.skipped.append({"layer": name, "reason": "its mean and variance are not set"})
            continue
        mean, variance = (s.reshape(-1) for s in stats)
        if mean.size != variance.size:
            result.skipped.append({"layer": name, "reason": "mean and variance differ in size"})
            continue
        std = np.maximum(np.sqrt(variance), EPSILON)
        scale, offset = 1.0 / std, -mean / std
        graph.retype(entry, "Rescaling", {"trainable": False, "scale": _value(scale), "offset": _value(offset)}, [],
                     keep=("dtype",))
        result.changed.append({"layer": name, "into": name, "into_type": "Rescaling",
                               "channels": int(mean.size)})
    return result


def _value(array: np.ndarray):
    return float(array[0]) if array.size == 1 else [float(v) for v in array]
