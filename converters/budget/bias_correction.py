"""Bias correction: shift each output channel's bias by the mean error INT8 rounding puts there.

NNCF's fast bias correction, on the folded Keras model: for each convolution or dense layer,
on calibration data,

    y  = W x + b                        the float pre-activation
    y' = Q(W) Q(x) + b                  its kernel rounded to int8 per output channel (as
                                        both converters round it), its input rounded to an
                                        INT8 min/max grid of the float input
    b <- b + mean(y - y')               per output channel, over samples and positions

Rounding errors that do not average out (many weights of a channel rounded the same way,
an input grid that shifts every value) become a constant offset per channel; the new bias
removes it. Each layer is corrected on the float model's inputs to it (not the rounded model's), in
batches, so memory stays bounded.
Returns a new model; the user's is left as it is.

Not a graph pass: it needs calibration data, and is kept only when the measured INT8 metric
improves (`converters.budget.tflite`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converters.layer_error.keras import minmax_grid, quantized_weights

_CORRECTED = {"Conv2D", "DepthwiseConv2D", "Dense", "Conv1D"}
BATCH = 16


@dataclass
class BiasShift:
    layer: str
    max_abs_shift: float
    mean_abs_shift: float  # the mean error per channel it removes, averaged over channels

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _pre_activation(layer, x: np.ndarray) -> np.ndarray:
    """The layer's output before its own activation."""
    from keras import activations, ops

    saved = layer.activation
    layer.activation = activations.linear
    try:
        return ops.convert_to_numpy(layer(x, training=False))
    finally:
        layer.activation = saved


def correct_biases(keras_model, samples: np.ndarray) -> tuple[object, list[BiasShift]]:
    """A copy of the model with corrected biases, and what changed per layer."""
    import keras

    model = keras.models.clone_model(keras_model)
    model.set_weights(keras_model.get_weights())
    targets = [layer for layer in model.layers if type(layer).__name__ in _CORRECTED
               and getattr(layer, "use_bias", False) and len(layer._inbound_nodes) == 1]
    if not targets:
        return model, []
    tap = keras.Model(model.inputs, [layer.input for layer in targets])
    sums = [None] * len(targets)  # per layer: summed error per output channel
    counts = [0] * len(targets)
    originals = [layer.get_weights() for layer in targets]
    rounded = [quantized_weights(layer) for layer in targets]
    for start in range(0, len(samples), BATCH):  # batches: a MobileNet's activations for 200 images need GBs
        inputs = tap([samples[start:start + BATCH]], training=False)
        inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        for i, (layer, x) in enumerate(zip(targets, inputs)):
            x = keras.ops.convert_to_numpy(x)
            float_out = _pre_activation(layer, x)
            layer.set_weights(rounded[i])
            rounded_out = _pre_activation(layer, minmax_grid(x).fake_quantize(x).astype(np.float32))
            layer.set_weights(originals[i])
            error = (float_out - rounded_out).reshape(-1, float_out.shape[-1]).sum(axis=0)
            sums[i] = error if sums[i] is None else sums[i] + error
            counts[i] += float_out.size // float_out.shape[-1]
    shifts = []
    for i, layer in enumerate(targets):
        shift = sums[i] / counts[i]
        weights = list(originals[i])
        bias_index = next(j for j, w in enumerate(layer.weights) if w.name == "bias")
        weights[bias_index] = (weights[bias_index] + shift).astype(np.float32)
        layer.set_weights(weights)
        shifts.append(BiasShift(layer.name, float(np.abs(shift).max()), float(np.abs(shift).mean())))
    return model, shifts


__all__ = ["BiasShift", "correct_biases"]
