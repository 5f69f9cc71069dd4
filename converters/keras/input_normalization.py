"""Models that normalise their own input: detected from the layers right after each input.

Keras 3's MobileNetV3, EfficientNet and ConvNeXt start with `Rescaling` and/or
`Normalization` layers and take raw 0..255 pixels. Feeding them `--preprocess unit` scales
twice (the model sees [-1, -0.992] instead of [-1, 1]) and no parity check can notice,
because Keras is fed the same wrong input. So: such a model's default preprocessing is the
identity, the report says the model takes raw pixels, and an explicit preset that would
normalise again is warned about, naming the layer.
"""
from __future__ import annotations

import warnings

import numpy as np

from edgeact.data.preprocess import Preprocessing, Preset, make_preprocessing
from edgeact.errors import EdgeactWarning

NORMALISING_LAYERS = ("Rescaling", "Normalization")
# Layers that pass pixels through unchanged on their way to the normalising layer.
_TRANSPARENT = ("InputLayer", "ZeroPadding2D", "Reshape", "Permute", "Identity", "Cropping2D")


def input_normalization(model) -> list[dict]:
    """The normalising layers that sit directly on a model input (through pass-through layers only)."""
    found = []
    for tensor in model.inputs:
        layer = _first_layer_after(model, tensor)
        while layer is not None and type(layer).__name__ in NORMALISING_LAYERS:
            found.append({"input": tensor.name, "layer": layer.name, "class": type(layer).__name__,
                          "effect": _effect(layer)})
            layer = _single_consumer(model, layer)
    return found


def _first_layer_after(model, tensor):
    layer = _single_consumer_of_tensor(model, tensor)
    while layer is not None and type(layer).__name__ in _TRANSPARENT:
        layer = _single_consumer(model, layer)
    return layer


def _single_consumer_of_tensor(model, tensor):
    users = [layer for layer in model.layers
             if type(layer).__name__ != "InputLayer" and any(t is tensor for t in _inputs_of(layer))]
    return users[0] if len(users) == 1 else None


def _single_consumer(model, layer):
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return None
    return _single_consumer_of_tensor(model, output)


def _inputs_of(layer) -> list:
    try:
        value = layer.input
    except (AttributeError, ValueError):
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _effect(layer) -> str:
    config = layer.get_config()
    if type(layer).__name__ == "Rescaling":
        scale, offset = config.get("scale"), config.get("offset")
        return f"x * {_short(scale)} + {_short(offset)}"
    mean = getattr(layer, "mean", None)
    variance = getattr(layer, "variance", None)
    if mean is not None and variance is not None:
        return f"(x - {_short(np.asarray(mean).ravel())}) / sqrt({_short(np.asarray(variance).ravel())})"
    return "(x - mean) / std"


def _short(value) -> str:
    array = np.asarray(value, dtype=np.float64).ravel()
    if array.size == 1:
        return f"{array[0]:.6g}"
    return "[" + ", ".join(f"{v:.4g}" for v in array[:4]) + (", ...]" if array.size > 4 else "]")


def choose_preprocessing(given: Preprocessing | None, normalization: list[dict]) -> Preprocessing:
    """The preprocessing to calibrate with: the user's, else the identity for a self-normalising model."""
    if given is None:
        return make_preprocessing(Preset.NONE if normalization else Preset.UNIT)
    if normalization and _normalises(given):
        first = normalization[0]
        warnings.warn(
            f"the model normalises its own input in layer '{first['layer']}' ({first['class']}: {first['effect']}); "
            f"--preprocess {given.preset} normalises it again; use --preprocess none to feed raw pixels",
            EdgeactWarning, stacklevel=2)
    return given


def _normalises(preprocessing: Preprocessing) -> bool:
    return (preprocessing.scale != 1.0 or any(m != 0 for m in preprocessing.mean)
            or any(s != 1 for s in preprocessing.std))
