"""fuse_activation: merge a ReLU / ReLU6 layer into the convolution or dense layer before it.

    Conv2D(activation=None) -> ReLU()                    becomes  Conv2D(activation='relu')
    Conv2D(activation=None) -> ReLU(max_value=6)         becomes  Conv2D(activation='relu6')
    Conv2D(activation=None) -> Activation('relu'|'relu6') likewise

The TFLite converter then emits one CONV_2D with a fused RELU/RELU6, and tf2onnx a Conv
directly followed by Relu/Clip that ONNX Runtime fuses.

Guards (the activation stays, with the reason in the result):
- ReLU6 only when max_value == 6 and threshold == 0 and negative_slope == 0; plain ReLU only
  with no max_value, threshold or slope; LeakyReLU, PReLU, ELU, swish/SiLU, GELU, hard-swish
  have no fused form;
- the producer is a Conv1D/Conv2D/DepthwiseConv2D/SeparableConv2D/Dense with no activation
  of its own, called once, whose output feeds nothing but this activation;
- an activation after Add, pooling or concatenation stays (TFLite fuses ADD+RELU itself;
  the .tflite check confirms it).
"""
from __future__ import annotations

from converters.keras.activations import FUSABLE_PRODUCERS, classify, own_activation
from converters.keras.graph import KerasGraph

from .registry import PassResult, register_pass


def _why_not(graph: KerasGraph, name: str) -> str | None:
    producers = graph.inputs_of(name)
    if graph.call_count(name) != 1 or len(producers) != 1:
        return "the activation layer is shared or has several inputs"
    producer = producers[0]
    kind = graph.class_name(producer)
    if kind not in FUSABLE_PRODUCERS:
        return f"follows {kind} '{producer}', not a convolution or dense layer"
    activation = own_activation(graph.layer_config(producer))
    if activation != "linear":
        return f"'{producer}' already applies activation '{activation}'"
    if graph.call_count(producer) != 1:
        return f"'{producer}' is a shared layer (called {graph.call_count(producer)} times)"
    others = [c for c in graph.consumers_of(producer) if c != name]
    if others:
        return f"the output of '{producer}' also feeds {', '.join(others)} (they need it before the activation)"
    return None


@register_pass("fuse_activation")
def fuse_activation(graph: KerasGraph) -> PassResult:
    result = PassResult("fuse_activation")
    for entry in list(graph.layers):
        name = entry["name"]
        kind, not_fusable = classify(entry["class_name"], entry["config"])
        if not_fusable:
            result.skipped.append({"layer": name, "reason": not_fusable})
            continue
        if kind is None:
            own = own_activation(entry["config"])
            if entry["class_name"] in FUSABLE_PRODUCERS and own not in ("linear", "relu", "relu6", "softmax"):
                result.skipped.append({"layer": name, "reason": f"its own activation '{own}' has no fused form"})
            continue
        reason = _why_not(graph, name)
        if reason:
            result.skipped.append({"layer": name, "reason": reason})
            continue
        producer = graph.inputs_of(name)[0]
        graph.layer_config(producer)["activation"] = kind
        graph.bypass(name)
        result.changed.append({"layer": name, "into": producer, "into_type": graph.class_name(producer),
                               "activation": kind})
    return result
