"""fold_batchnorm: merge an inference-mode BatchNormalization into the layer before it.

    Conv2D / DepthwiseConv2D / SeparableConv2D / Conv1D / Dense  ->  BatchNormalization  ->  y
becomes
    the same layer with  kernel' = kernel * g  and  bias' = (bias - mean) * g + beta,
    where g = gamma / sqrt(moving_variance + epsilon), per output channel   ->  y

Guards (the BatchNorm stays, with the reason in the result):
- the producer is one of the layers above, applies no activation of its own, is called once
  (not a shared layer), and uses channels_last;
- the BatchNorm normalizes the last (channel) axis and is called once;
- the producer's output has no other consumer (they would see the folded values);
dilated convolutions fold like any other: the dilation does not touch the channel axis.
"""
from __future__ import annotations

import numpy as np

from converters.keras.activations import FUSABLE_PRODUCERS, own_activation
from converters.keras.graph import KerasGraph

from .registry import PassResult, register_pass


def _channel_axis_ok(config: dict) -> bool:
    axis = config.get("axis", -1)
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    rank = len((config.get("build_config") or {}).get("input_shape") or []) or None
    if len(axes) != 1:
        return False
    return axes[0] == -1 or (rank is not None and axes[0] == rank - 1)


def _why_not(graph: KerasGraph, bn: str) -> str | None:
    producers = graph.inputs_of(bn)
    if graph.call_count(bn) != 1 or len(producers) != 1:
        return "BatchNormalization is shared or has several inputs"
    bn_entry = graph.layer(bn)
    config = dict(bn_entry["config"], build_config=bn_entry.get("build_config"))
    if not _channel_axis_ok(config):
        return f"normalizes axis {config.get('axis')}, not the channel axis"
    producer = producers[0]
    kind = graph.class_name(producer)
    if kind not in FUSABLE_PRODUCERS:
        return f"follows {kind} '{producer}', not a convolution or dense layer"
    pconfig = graph.layer_config(producer)
    if own_activation(pconfig) != "linear":
        return f"'{producer}' applies activation '{own_activation(pconfig)}' before the BatchNorm"
    if graph.call_count(producer) != 1:
        return f"'{producer}' is a shared layer (called {graph.call_count(producer)} times)"
    if pconfig.get("data_format", "channels_last") != "channels_last":
        return f"'{producer}' uses {pconfig.get('data_format')}"
    others = [c for c in graph.consumers_of(producer) if c != bn]
    if others:
        return f"the output of '{producer}' also feeds {', '.join(others)}"
    return None


def _bn_factors(graph: KerasGraph, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (g, shift) so that bn(x) = x * g + shift."""
    config = graph.layer_config(bn)
    weights = list(graph.weights[bn])
    gamma = weights.pop(0) if config.get("scale", True) else None
    beta = weights.pop(0) if config.get("center", True) else None
    mean, variance = weights[0], weights[1]
    g = 1.0 / np.sqrt(variance.astype(np.float64) + float(config.get("epsilon", 1e-3)))
    if gamma is not None:
        g = g * gamma
    shift = -mean * g + (beta if beta is not None else 0.0)
    return g, shift


def _fold(graph: KerasGraph, producer: str, g: np.ndarray, shift: np.ndarray) -> None:
    kind = graph.class_name(producer)
    config = graph.layer_config(producer)
    weights = list(graph.weights[producer])
    has_bias = config.get("use_bias", True)
    bias = weights.pop() if has_bias else np.zeros_like(g)
    if kind == "DepthwiseConv2D":
        kernel = weights[0]  # (kh, kw, in_channels, multiplier); output channel = c * mult + m
        weights[0] = kernel * g.reshape(kernel.shape[2], kernel.shape[3])
    else:  # Conv, Dense: output channels last; SeparableConv2D: its pointwise kernel
        weights[-1] = weights[-1] * g
    weights = [w.astype(np.float32) for w in weights]
    weights.append((bias * g + shift).astype(np.float32))
    config["use_bias"] = True
    graph.weights[producer] = weights


@register_pass("fold_batchnorm")
def fold_batchnorm(graph: KerasGraph) -> PassResult:
    result = PassResult("fold_batchnorm")
    bns = [e["name"] for e in graph.layers if e["class_name"] == "BatchNormalization"]
    for bn in bns:
        reason = _why_not(graph, bn)
        if reason:
            result.skipped.append({"layer": bn, "reason": reason})
            continue
        producer = graph.inputs_of(bn)[0]
        g, shift = _bn_factors(graph, bn)
        _fold(graph, producer, g, shift)
        graph.bypass(bn)
        result.changed.append({"layer": bn, "into": producer, "into_type": graph.class_name(producer)})
    return result
