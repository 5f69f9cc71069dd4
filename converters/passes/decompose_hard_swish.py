"""decompose_hard_swish: spell hard-swish as a multiply by a clipped line, which INT8 XNNPACK runs.

    Activation('hard_swish' | 'hard_silu')(x)
becomes
    s = Rescaling(scale=1/6, offset=0.5)(x)        # x/6 + 1/2
    h = ReLU(max_value=1)(s)                        # hard-sigmoid: clip(x/6 + 1/2, 0, 1)
    Multiply()([x, h])                              # keeps the activation's name

When every consumer of the activation is a convolution or dense layer (directly, or through
ZeroPadding2D, Dropout or GlobalAveragePooling2D, which commute with a scale), the 1/6 goes
into their kernels instead and the Rescaling(1/6) is left out:
    Multiply()([x, ReLU6(x + 3)]) -> Conv2D(kernel / 6)
one elementwise op less per activation, which INT8 feels most (these ops are memory-bound).

Why: the TFLite converter turns hard-swish into one HARD_SWISH op, and LiteRT 2.3's XNNPACK
delegate takes HARD_SWISH in float only. In an INT8 model every HARD_SWISH stays on the
reference kernel and cuts the delegated graph in two (MobileNetV3Small: 19 HARD_SWISH, 20
XNNPACK partitions, INT8 ~3x slower than FP32). The form above converts to MUL/ADD by
constants, RELU_0_TO_1 and a MUL, all of which XNNPACK runs in INT8, and which the
converter does not fold back into HARD_SWISH (its pattern wants relu6(x + 3) / 6).
It is the same function: clip(x/6 + 1/2, 0, 1) == relu6(x + 3) / 6.

Guards (the activation stays, with the reason in the result):
- only Activation layers whose activation is hard_swish / hard_silu;
- the layer is called once (a shared activation would need one copy per call);
- the 1/6 moves into a kernel only when every path from the activation ends in a
  Conv1D/Conv2D/DepthwiseConv2D/SeparableConv2D/Dense called once, reached once; a model
  output, a Multiply (squeeze-excite) or any other consumer keeps the Rescaling(1/6).
"""
from __future__ import annotations

import copy

from converters.keras.graph import KerasGraph

from .registry import PassResult, register_pass

HARD_SWISH_NAMES = ("hard_swish", "hard_silu")
LINEAR_SINKS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")
SCALE_COMMUTING = ("ZeroPadding2D", "Dropout", "GlobalAveragePooling2D")


def _linear_sinks(graph: KerasGraph, name: str) -> list[str] | None:
    """The kernels that can absorb a scale of `name`'s output, or None if any path reaches something else."""
    sinks: list[str] = []
    frontier = [name]
    while frontier:
        for consumer in graph.consumers_of(frontier.pop()):
            if consumer == "<output>" or graph.call_count(consumer) != 1 or consumer in sinks:
                return None
            kind = graph.class_name(consumer)
            if kind in SCALE_COMMUTING and len(graph.inputs_of(consumer)) == 1:
                frontier.append(consumer)
            elif kind in LINEAR_SINKS and graph.weights.get(consumer):
                sinks.append(consumer)
            else:
                return None
    return sinks


def _is_hard_swish(entry: dict) -> bool:
    if entry["class_name"] != "Activation":
        return False
    activation = entry["config"].get("activation")
    if isinstance(activation, dict):
        activation = activation.get("config", activation.get("class_name"))
    return activation in HARD_SWISH_NAMES


def _unique(graph: KerasGraph, base: str) -> str:
    taken = {e["name"] for e in graph.layers}
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def _tensor(history: list, like: dict) -> dict:
    """A serialized KerasTensor reference to `history` ([layer, node, index]) shaped like `like`."""
    ref = copy.deepcopy(like)
    ref["config"]["keras_history"] = list(history)
    return ref


def _layer_entry(class_name: str, name: str, config: dict, dtype, args: list) -> dict:
    return {
        "module": "keras.layers", "class_name": class_name, "registered_name": None, "name": name,
        "config": {"name": name, "trainable": True, "dtype": copy.deepcopy(dtype), **config},
        "inbound_nodes": [{"args": args, "kwargs": {}}],
    }


@register_pass("decompose_hard_swish")
def decompose_hard_swish(graph: KerasGraph) -> PassResult:
    result = PassResult("decompose_hard_swish")
    for entry in list(graph.layers):
        if not _is_hard_swish(entry):
            continue
        name = entry["name"]
        if graph.call_count(name) != 1:
            result.skipped.append({"layer": name, "reason": "a shared activation layer (called "
                                   f"{graph.call_count(name)} times) is left as it is"})
            continue
        source = entry["inbound_nodes"][0]["args"][0]  # the serialized input KerasTensor
        dtype = entry["config"].get("dtype")
        shift_name = _unique(graph, f"{name}_hsw_shift")
        clip_name = _unique(graph, f"{name}_hsw_relu6")
        shift = _layer_entry("Rescaling", shift_name, {"scale": 1.0, "offset": 3.0}, dtype, [copy.deepcopy(source)])
        clip = _layer_entry("ReLU", clip_name, {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0},
                            dtype, [_tensor([shift_name, 0, 0], source)])
        sinks = _linear_sinks(graph, name)
        if sinks:  # the consumers' kernels take the 1/6 (the kernel is their first weight)
            for sink in sinks:
                graph.weights[sink][0] = graph.weights[sink][0] / 6.0
            added = [shift, clip]
            first = copy.deepcopy(source)
        else:
            sixth_name = _unique(graph, f"{name}_hsw_sixth")
            added = [shift, clip, _layer_entry("Rescaling", sixth_name, {"scale": 1.0 / 6.0, "offset": 0.0},
                                               dtype, [copy.deepcopy(source)])]
            first = _tensor([sixth_name, 0, 0], source)
        multiply = _layer_entry("Multiply", name, {}, dtype, [[first, _tensor([clip_name, 0, 0], source)]])
        position = graph.layers.index(entry)
        graph.layers[position:position + 1] = [*added, multiply]
        graph.weights.pop(name, None)
        # output_factor: the rewritten layer's output over the float one's (x6 where the 1/6 moved on),
        # what the per-layer error pairs them by (ConvertJob.int8_rewrites).
        result.changed.append({"layer": name, "into": ", ".join(e["name"] for e in [*added, multiply]),
                               "into_type": f"x * ReLU6(x+3), 1/6 folded into {', '.join(sinks)}" if sinks
                               else "(x/6) * ReLU6(x+3)", "output_factor": 6.0 if sinks else 1.0})
    return result
