"""dense_to_pointwise: a Dense layer applied to a feature map becomes the 1x1 Conv2D it is.

    Dense(units) on (N, H, W, C)    becomes    Conv2D(units, kernel_size=1)
    kernel (C, units)                          kernel (1, 1, C, units), same bias and activation

Why: Keras computes a Dense on a rank-4 tensor as a tensordot, which the TFLite converter
lowers into RESHAPE ops whose shape is computed at run time (SHAPE, GATHER, REDUCE_PROD,
PACK, CONCATENATION on int32) around a FULLY_CONNECTED: int32 ops XNNPACK never takes, so
each such Dense splits the delegate's graph (ConvNeXt's two per block: 72 shape ops, 102
partitions). A 1x1 CONV_2D is one op that XNNPACK runs in INT8. The pipeline checks the
outputs did not move.

Guards (the layer stays, with the reason): an input that is not rank 4, a layer called more
than once.
"""
from __future__ import annotations

from converters.keras.graph import KerasGraph

from .registry import PassResult, register_pass

# Dense config keys that Conv2D takes under the same name.
_SHARED = ("trainable", "dtype", "activation", "use_bias", "kernel_initializer", "bias_initializer",
           "kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint")


@register_pass("dense_to_pointwise")
def dense_to_pointwise(graph: KerasGraph) -> PassResult:
    result = PassResult("dense_to_pointwise")
    for entry in list(graph.layers):
        if entry["class_name"] != "Dense":
            continue
        name, config = entry["name"], entry["config"]
        shape = (entry.get("build_config") or {}).get("input_shape")
        if shape is None or len(shape) != 4:
            continue  # the common case, a Dense on a vector: nothing to say
        weights = graph.weights.get(name) or []
        if not weights or weights[0].ndim != 2 or config.get("lora_rank"):
            result.skipped.append({"layer": name, "reason": "its kernel is not a plain (in, units) matrix"})
            continue
        if graph.call_count(name) != 1:
            result.skipped.append({"layer": name, "reason": "the layer is called more than once"})
            continue
        graph.retype(entry, "Conv2D", {"filters": config["units"], "kernel_size": (1, 1), "strides": (1, 1),
                                       "padding": "valid", "data_format": "channels_last",
                                       "dilation_rate": (1, 1), "groups": 1},
                     [weights[0][None, None], *weights[1:]], keep=_SHARED)
        result.changed.append({"layer": name, "into": name, "into_type": "Conv2D 1x1"})
    return result
