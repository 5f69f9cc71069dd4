"""What an activation layer is, and whether a convolution can absorb it.

TFLite's CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED and ADD carry a fused activation
that is one of RELU, RELU6 or RELU_N1_TO_1; ONNX Runtime fuses Relu and Clip(0, 6) into
Conv. Everything else stays a separate op, and the reason is worth telling the user.
"""
from __future__ import annotations

# Layers whose output a fused ReLU/ReLU6 can be folded into.
FUSABLE_PRODUCERS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")

ACTIVATION_LAYERS = ("ReLU", "Activation", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU")

_NO_FUSED_FORM = "has no fused form in TFLite or ONNX Runtime (only ReLU, ReLU6 fuse)"


def _activation_name(value) -> str:
    if isinstance(value, dict):  # a serialized activation function
        return str(value.get("config", value.get("class_name", "unknown")))
    return str(value or "linear")


def classify(class_name: str, config: dict) -> tuple[str | None, str | None]:
    """(fusable kind, reason it is not fusable) of an activation layer.

    Returns ("relu" | "relu6", None) for a layer a convolution can absorb, (None, reason)
    for an activation that cannot fuse, and (None, None) for a layer that is no activation.
    ReLU6 only when max_value == 6, threshold == 0 and negative_slope == 0.
    """
    if class_name == "ReLU":
        max_value = config.get("max_value")
        slope = float(config.get("negative_slope") or 0.0)
        threshold = float(config.get("threshold") or 0.0)
        if slope != 0.0:
            return None, f"ReLU(negative_slope={slope:g}) is a leaky ReLU, which {_NO_FUSED_FORM}"
        if threshold != 0.0:
            return None, f"ReLU(threshold={threshold:g}) {_NO_FUSED_FORM}"
        if max_value is None:
            return "relu", None
        if float(max_value) == 6.0:
            return "relu6", None
        return None, f"ReLU(max_value={float(max_value):g}): only max_value 6 fuses (as RELU6)"
    if class_name == "Activation":
        name = _activation_name(config.get("activation"))
        if name in ("relu", "relu6"):
            return name, None
        if name in ("linear", "softmax", "log_softmax"):
            return None, None
        return None, f"Activation('{name}') {_NO_FUSED_FORM}"
    if class_name in ACTIVATION_LAYERS:
        return None, f"{class_name} {_NO_FUSED_FORM}"
    return None, None


def own_activation(config: dict) -> str:
    """The activation a Conv/Dense layer applies itself ('linear' when none)."""
    return _activation_name(config.get("activation"))


def relu_layers(model) -> list[tuple[object, str]]:
    """(layer, 'relu'|'relu6') for every layer whose output is a ReLU/ReLU6, in model order."""
    found = []
    for layer in model.layers:
        config = layer.get_config()
        kind, _ = classify(type(layer).__name__, config)
        if kind is None and type(layer).__name__ in FUSABLE_PRODUCERS and own_activation(config) in ("relu", "relu6"):
            kind = own_activation(config)
        if kind is not None:
            found.append((layer, kind))
    return found
