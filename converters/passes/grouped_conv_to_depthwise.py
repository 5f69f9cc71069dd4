"""grouped_conv_to_depthwise: a Conv2D with one input channel per group becomes the DepthwiseConv2D it is.

    Conv2D(filters=C*m, groups=C) on C channels   becomes   DepthwiseConv2D(depth_multiplier=m)
    kernel (kh, kw, 1, C*m)                                 depthwise_kernel (kh, kw, C, m)

Both compute output channel c*m + j from input channel c alone, with the same taps, so the
kernel is only reshaped and the bias kept.

Why: Keras 3's TensorFlow backend runs a grouped convolution as an XLA-compiled function
(TensorFlow's CPU kernels have no grouped Conv2D). tf2onnx cannot export the call
("op StatefulPartitionedCall in layer ..._depthwise_conv": ConvNeXt's 18 depthwise blocks),
and TFLite lowers it into shape arithmetic and reshapes around a convolution, int32 ops that
leave XNNPACK. DepthwiseConv2D is one native op in TensorFlow, TFLite (DEPTHWISE_CONV_2D) and
ONNX (Conv with group=C), quantized per channel by both converters. The pipeline checks the
outputs did not move.

Guards (the layer stays, with the reason): more than one input channel per group (a true
grouped convolution: no depthwise form), `channels_first`, a layer called more than once.
"""
from __future__ import annotations

from converters.keras.graph import KerasGraph

from .registry import PassResult, register_pass

# Conv2D config keys that DepthwiseConv2D takes under the same name.
_SHARED = ("trainable", "dtype", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
           "activation", "use_bias", "bias_initializer", "bias_regularizer", "activity_regularizer",
           "bias_constraint")


@register_pass("grouped_conv_to_depthwise")
def grouped_conv_to_depthwise(graph: KerasGraph) -> PassResult:
    result = PassResult("grouped_conv_to_depthwise")
    for entry in list(graph.layers):
        if entry["class_name"] != "Conv2D" or int(entry["config"].get("groups", 1) or 1) == 1:
            continue
        name, config = entry["name"], entry["config"]
        weights = graph.weights.get(name) or []
        kernel = weights[0] if weights else None
        groups = int(config["groups"])
        if kernel is None or kernel.ndim != 4:
            result.skipped.append({"layer": name, "reason": "its kernel is not set"})
            continue
        if kernel.shape[2] != 1:
            result.skipped.append({"layer": name, "reason": f"{kernel.shape[2]} input channels per group: a grouped "
                                   "convolution with no depthwise form"})
            continue
        if config.get("data_format") == "channels_first":
            result.skipped.append({"layer": name, "reason": "channels_first"})
            continue
        if graph.call_count(name) != 1:
            result.skipped.append({"layer": name, "reason": "the layer is called more than once"})
            continue
        kh, kw, _, filters = kernel.shape
        multiplier = filters // groups
        graph.retype(entry, "DepthwiseConv2D", {"depth_multiplier": multiplier},
                     [kernel.reshape(kh, kw, groups, multiplier), *weights[1:]], keep=_SHARED)
        result.changed.append({"layer": name, "into": name, "into_type": "DepthwiseConv2D",
                               "channels": groups, "depth_multiplier": multiplier})
    return result
