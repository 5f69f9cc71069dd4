"""The pass pipeline: a plain list of pass names, run in order and verified after each pass.

`run_pipeline` rebuilds the model after every pass that changed something and measures how
far its outputs moved on calibration samples, so every pass is verified numerically, not
just trusted. Importing this module imports every pass, which registers it.
"""
from __future__ import annotations

import numpy as np

from converters.keras.forward import predict
from converters.keras.graph import KerasGraph

from . import (  # noqa: F401
    constant_normalization,
    decompose_hard_swish,
    dense_to_pointwise,
    equalize,
    fold_batchnorm,
    fuse_activation,
    grouped_conv_to_depthwise,
    leaky_relu_to_maximum,
)
from .registry import PASSES

# The order matters: BatchNorm must be folded before ReLU can reach the convolution, and a grouped
# convolution must be a DepthwiseConv2D before either can reach it.
# decompose_hard_swish keeps INT8 MobileNetV3-style graphs in one XNNPACK partition. (A global
# average pool stays a MEAN: XNNPACK in LiteRT 2.3 runs INT8 MEAN but not INT8 AVERAGE_POOL_2D.)
# Added for Edge TPU targets (converters.pipeline): ops the Edge TPU compiler maps where TFLite writes one it does not.
EDGETPU_PASSES = ["leaky_relu_to_maximum"]
# Rewrites made for INT8's sake: the INT8 models get them, the float reference does not (it keeps
# the float model's fastest form: LiteRT's float XNNPACK runs HARD_SWISH and LEAKY_RELU as one op
# each, while their rewrites are two or three elementwise ops, 1.55 against 1.29 ms for a float
# MobileNetV3Small, issue 26).
INT8_ONLY_PASSES = ("decompose_hard_swish", "leaky_relu_to_maximum")
DEFAULT_PIPELINE = [
    "constant_normalization", "grouped_conv_to_depthwise", "dense_to_pointwise", "fold_batchnorm", "fuse_activation",
    "decompose_hard_swish",
]


def run_pipeline(model, names: list[str], samples=None, reference: list[np.ndarray] | None = None):
    """Run the named passes on a Keras model; return the new model and one result per pass.

    Args:
        model: a Functional or Sequential Keras model (left unchanged).
        names: pass names, in order.
        samples: inputs to verify each pass on (an array, or a edgeact.data.samples.Samples); None skips the check.
        reference: `model`'s own outputs on `samples`, when the caller has them already
            (`converters.keras.forward.float_pass` computes them); otherwise computed here.
    Returns:
        (rewritten Keras model, list of PassResult)

    Each model in the chain runs once on the samples: the outputs after one pass are the
    "before" of the next, so a pipeline of N passes costs N forward passes, not 2N.
    """
    graph = KerasGraph.from_model(model)
    current = model
    before = reference
    results = []
    nested = [{"layer": e["name"], "reason": "a nested model: its layers are not rewritten (the TFLite converter "
               "still folds and fuses what it can inside)"} for e in graph.layers if graph.is_nested_model(e["name"])]
    for name in names:
        result = PASSES[name](graph)
        result.skipped.extend(nested)
        if result.changed:
            rewritten = graph.to_keras()
            if samples is not None:
                before = before if before is not None else predict(current, samples)
                after = predict(rewritten, samples)
                result.max_abs_diff = _max_diff(before, after)
                before = after
            current = rewritten
        elif samples is not None:
            result.max_abs_diff = 0.0
        results.append(result)
    return current, results


def _max_diff(before: list[np.ndarray], after: list[np.ndarray]) -> float:
    # Positional: a pass keeps the order of the outputs, though it may rename the layer producing one.
    return float(max(np.max(np.abs(np.asarray(x) - np.asarray(y).reshape(np.shape(x))))
                     for x, y in zip(before, after)))
