"""equalize: cross-layer equalization of two convolutions joined by a ReLU (DFQ, Nagel et al. 2019).

    conv1(W1, b1, activation relu|linear) -> [between] -> conv2(W2)        becomes
    conv1(W1 / s, b1 / s)                 -> [between] -> conv2(W2 * s)    per channel i

where [between] is nothing or a chain of layers that commute with a positive per-channel
scale (max or average pooling, zero padding, dropout, plain ReLU), each used once,
with s_i = sqrt(r1_i / r2_i), r1_i the largest |weight| of conv1's output channel i and r2_i
that of conv2's input channel i. ReLU(x / s) = ReLU(x) / s for s > 0, so the float model
computes the same; afterwards both ranges are sqrt(r1_i * r2_i): an output channel that
conv1 blew up (and conv2 scaled back down) no longer stretches the per-tensor activation
grid and conv1's weights over the other channels.

Not in the default pipeline: run it after fold_batchnorm and fuse_activation, e.g.
`run_pipeline(model, ["fold_batchnorm", "fuse_activation", "equalize"], samples)`, and keep it
only if the measured INT8 metric improves.

Guards (the pair stays, with the reason in the result):
- conv1 is a Conv2D, a DepthwiseConv2D with depth_multiplier 1, or a Dense; conv2 a Conv2D
  with groups 1, a DepthwiseConv2D with depth_multiplier 1, or a Dense after a Dense;
- conv1's activation is relu or linear: ReLU6 clips at 6, which scaling would move;
  ReLU with max_value, threshold or slope likewise;
- conv1 and the layers between are called once and feed the next layer only; conv2 is
  called once;
- a channel whose weights are all zero on either side keeps s = 1.
"""
from __future__ import annotations

import numpy as np

from converters.keras.graph import KerasGraph

from .registry import PassResult, register_pass

_FIRST = {"Conv2D", "DepthwiseConv2D", "Dense"}
_SECOND = {"Conv2D", "DepthwiseConv2D", "Dense"}


def _output_axis(kind: str) -> int:
    return 2 if kind == "DepthwiseConv2D" else -1  # depthwise kernels are (kh, kw, in, multiplier)


def _input_axis(kind: str) -> int:
    return 0 if kind == "Dense" else 2


def _channel_peaks(kernel: np.ndarray, axis: int) -> np.ndarray:
    axis = axis % kernel.ndim
    return np.max(np.abs(kernel), axis=tuple(i for i in range(kernel.ndim) if i != axis))


# Layers f with f(s * x) = s * f(x) per channel for s > 0: scaling passes through them.
_COMMUTING = {"MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D", "ZeroPadding2D", "Dropout"}


def _commutes(graph: KerasGraph, name: str) -> bool:
    kind = graph.class_name(name)
    if kind == "ReLU":
        config = graph.layer_config(name)
        return not config.get("max_value") and not config.get("threshold") and not config.get("negative_slope")
    return kind in _COMMUTING


def _find_first(graph: KerasGraph, second: str) -> tuple[str, list[str]] | None:
    """conv1 and the commuting layers between it and `second`, walking back single inputs."""
    between: list[str] = []
    producers = graph.inputs_of(second)
    while len(producers) == 1:
        name = producers[0]
        if graph.class_name(name) in _FIRST:
            return name, list(reversed(between))
        if not _commutes(graph, name):
            return None
        between.append(name)
        producers = graph.inputs_of(name)
    return None


def _why_not(graph: KerasGraph, first: str, second: str, between: list[str] = ()) -> str | None:
    kind1, kind2 = graph.class_name(first), graph.class_name(second)
    config1, config2 = graph.layer_config(first), graph.layer_config(second)
    if kind1 not in _FIRST or kind2 not in _SECOND:
        return f"{kind1} -> {kind2} is not a convolution/dense pair"
    if (kind1 == "Dense") != (kind2 == "Dense"):
        return f"{kind1} -> {kind2}: the channels do not correspond one to one"
    if any(graph.class_name(n) == "DepthwiseConv2D" and graph.layer_config(n).get("depth_multiplier", 1) != 1
           for n in (first, second)):
        return "a depthwise convolution with depth_multiplier > 1"
    if kind2 == "Conv2D" and config2.get("groups", 1) != 1:
        return f"'{second}' is a grouped convolution"
    activation = config1.get("activation", "linear")
    if activation not in ("relu", "linear"):
        return f"'{first}' applies '{activation}', which is not positive-homogeneous (ReLU6 clips at 6)"
    if graph.call_count(first) != 1 or graph.call_count(second) != 1:
        return "a shared layer"
    chain = [first, *between, second]
    for layer, following in zip(chain, chain[1:]):
        if graph.consumers_of(layer) != [following]:
            others = ", ".join(c for c in graph.consumers_of(layer) if c != following)
            return f"the output of '{layer}' also feeds {others}"
        if graph.call_count(layer) != 1:
            return f"'{layer}' is a shared layer"
    return None


def equalize_pair(w1: list[np.ndarray], w2: list[np.ndarray], kind1: str, kind2: str) -> tuple[list, list, np.ndarray]:
    """New weights of both layers, and the per-channel scales s (W1 / s, b1 / s, W2 * s)."""
    k1, k2 = np.asarray(w1[0], np.float64), np.asarray(w2[0], np.float64)
    r1 = _channel_peaks(k1, _output_axis(kind1))
    r2 = _channel_peaks(k2, _input_axis(kind2))
    scale = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1.0)), 1.0)
    shape1 = [1] * k1.ndim
    shape1[_output_axis(kind1) % k1.ndim] = -1
    shape2 = [1] * k2.ndim
    shape2[_input_axis(kind2) % k2.ndim] = -1
    new1 = [(k1 / scale.reshape(shape1)).astype(np.float32)] + \
           [(np.asarray(b, np.float64) / scale).astype(np.float32) for b in w1[1:2]] + list(w1[2:])
    new2 = [(k2 * scale.reshape(shape2)).astype(np.float32)] + list(w2[1:])  # conv2's output, bias, unchanged
    return new1, new2, scale


@register_pass("equalize")
def equalize(graph: KerasGraph) -> PassResult:
    result = PassResult("equalize")
    for entry in list(graph.layers):
        second = entry["name"]
        if entry["class_name"] not in _SECOND:
            continue
        found = _find_first(graph, second)
        if found is None:
            continue
        first, between = found
        reason = _why_not(graph, first, second, between)
        if reason:
            result.skipped.append({"layer": f"{first} -> {second}", "reason": reason})
            continue
        new1, new2, scale = equalize_pair(graph.weights[first], graph.weights[second],
                                          graph.class_name(first), graph.class_name(second))
        graph.weights[first], graph.weights[second] = new1, new2
        result.changed.append({"layer": first, "into": second, "through": between, "max_scale": float(scale.max()),
                               "min_scale": float(scale.min())})
    return result
