"""leaky_relu_to_maximum: spell LeakyReLU as a maximum, which the Edge TPU maps (Edge TPU targets only).

    LeakyReLU(negative_slope=a)(x)
becomes
    s = Rescaling(scale=a)(x)                 # a * x
    Maximum()([x, s])                         # keeps the activation's name

Why: TFLite writes one LEAKY_RELU op, which is not in the Edge TPU's supported operations
(coral.ai/docs/edgetpu/models-intro), so the compiler leaves it on the CPU and, with one Edge
TPU subgraph only, everything after it too (edgeact.fastpath.edgetpu). MUL and MAXIMUM are in
the table, and TFLiteConverter keeps them as two ops (checked here: it does not fold
max(x, a*x) back into LEAKY_RELU). XNNPACK runs LEAKY_RELU in INT8 itself, so the CPU targets
keep the one op; convert adds this pass for `--target coral-usb|coral-devboard` only.
It is the same function for 0 <= a <= 1: max(x, a*x) is x where x >= 0 and a*x where x < 0.

Guards (the activation stays, with the reason in the result):
- only LeakyReLU layers (Keras 3 `negative_slope`, Keras 2 `alpha`), called once;
- 0 <= a <= 1 (above 1 the maximum picks the other branch).
"""
from __future__ import annotations

import copy

from converters.keras.graph import KerasGraph

from .decompose_hard_swish import _layer_entry, _tensor, _unique
from .registry import PassResult, register_pass


@register_pass("leaky_relu_to_maximum")
def leaky_relu_to_maximum(graph: KerasGraph) -> PassResult:
    result = PassResult("leaky_relu_to_maximum")
    for entry in list(graph.layers):
        if entry["class_name"] != "LeakyReLU":
            continue
        name = entry["name"]
        config = entry["config"]
        slope = float(config.get("negative_slope", config.get("alpha", 0.3)))
        if graph.call_count(name) != 1:
            result.skipped.append({"layer": name, "reason": f"a shared activation layer (called "
                                   f"{graph.call_count(name)} times) is left as it is"})
            continue
        if not 0.0 <= slope <= 1.0:
            result.skipped.append({"layer": name, "reason": f"negative_slope {slope:g} is outside 0..1, where "
                                   "max(x, a*x) is not LeakyReLU"})
            continue
        source = entry["inbound_nodes"][0]["args"][0]
        dtype = config.get("dtype")
        scaled_name = _unique(graph, f"{name}_slope")
        scaled = _layer_entry("Rescaling", scaled_name, {"scale": slope, "offset": 0.0}, dtype,
                              [copy.deepcopy(source)])
        maximum = _layer_entry("Maximum", name, {}, dtype,
                               [[copy.deepcopy(source), _tensor([scaled_name, 0, 0], source)]])
        position = graph.layers.index(entry)
        graph.layers[position:position + 1] = [scaled, maximum]
        result.changed.append({"layer": name, "into": f"{scaled_name}, {name}", "into_type": f"max(x, {slope:g} * x)"})
    return result
