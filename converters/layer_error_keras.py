"""Own error of each layer: only that layer quantized, everything before it float.

For a Keras layer L with a row in a format's per-layer report, on the same samples:

    float:     y  = L(x)                            x: L's input in the float model
    simulated: y' = Q_out(L_q(Q_in(x)))             L_q: L with its kernel rounded to int8,
                                                    symmetric, per output channel
    own_sqnr_db = SQNR(y, y')

Q_out is the grid the converted model gives L's output (the row's scale and zero point), Q_in
the grid of the tensor L reads in that format (the row of the layer feeding it; for the
model input, or a producer without a row, an INT8 min/max grid of the float input, as both
converters calibrate). The kernel is rounded as TFLite and edgeact's ONNX settings do
(int8 weights, per output channel); biases stay float (int32 in the converted models, a
rounding far below the activations'). This is a simulation in Keras, not a run of the INT8
kernel: integer requantization can differ from it by a rounding step.

The error a layer brings with it, not what it inherits: a layer with a low accumulated but a
high own SQNR is a victim; a low own SQNR names the culprit.
"""
from __future__ import annotations

import numpy as np

from .layer_error import ErrorAccumulator, LayerErrorReport, QuantGrid, sqnr_db

BATCH = 8
# Kernel layout -> axis of output channels, for the layers the converters quantize per channel.
_CHANNEL_AXIS = {"Conv2D": -1, "Conv1D": -1, "Dense": -1, "DepthwiseConv2D": 2, "SeparableConv2D": None}


def quantize_kernel(kernel: np.ndarray, axis: int | None) -> np.ndarray:
    """Symmetric int8 ([-127, 127]) per channel along `axis` (per tensor when None), dequantized."""
    kernel = np.asarray(kernel, np.float64)
    if axis is None:
        peak = np.max(np.abs(kernel))
    else:
        axis = axis % kernel.ndim
        reduce = tuple(i for i in range(kernel.ndim) if i != axis)
        peak = np.max(np.abs(kernel), axis=reduce, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    return (np.clip(np.round(kernel / scale), -127, 127) * scale).astype(np.float32)


def minmax_grid(x: np.ndarray) -> QuantGrid:
    """The asymmetric int8 grid a min/max calibration gives x (zero always representable)."""
    low, high = min(float(np.min(x)), 0.0), max(float(np.max(x)), 0.0)
    scale = (high - low) / 255.0 or 1.0
    return QuantGrid(scale, int(round(-128 - low / scale)), -128, 127)


def _quantized_weights(layer) -> list[np.ndarray] | None:
    weights = layer.get_weights()
    kind = type(layer).__name__
    if not weights:
        return weights
    if kind not in _CHANNEL_AXIS:
        return None  # a layer we cannot say how the converters round: leave its weights float
    kernel_axis = _CHANNEL_AXIS[kind]
    return [quantize_kernel(weights[0], kernel_axis)] + weights[1:]


def _tap_model(keras_model, layers):
    """One model returning each target layer's input and output (inputs first)."""
    import keras

    tensors = []
    for layer in layers:
        tensors += [layer.input, layer.output]
    return keras.Model(keras_model.inputs, tensors)


def add_own_errors(report: LayerErrorReport, keras_model, samples: np.ndarray) -> None:
    """Fill `own_sqnr_db` of the last row of each single-input, single-use Keras layer, per format."""
    from keras import ops

    by_name = {layer.name: layer for layer in keras_model.layers}
    targets = {}  # (format, layer name) -> last row of that layer
    for row in report.layers:
        layer = by_name.get(row.layer)
        if layer is None or type(layer).__name__ == "InputLayer" or len(layer._inbound_nodes) != 1:
            continue
        if not hasattr(layer.input, "shape") or isinstance(layer.input, (list, tuple)):
            continue  # Add, Concatenate: no weights, and their error is their inputs'
        current = targets.get((row.format, row.layer))
        if current is None or row.depth > current.depth:
            targets[(row.format, row.layer)] = row
    if not targets:
        return
    layers = list(dict.fromkeys(by_name[name] for _, name in targets))
    tap = _tap_model(keras_model, layers)
    producer = {id(layer): _producer_name(layer) for layer in layers}
    float_weights = {layer.name: layer.get_weights() for layer in layers}
    rounded = {layer.name: _quantized_weights(layer) for layer in layers}
    accumulators = {key: ErrorAccumulator() for key in targets}
    try:
        for start in range(0, len(samples), BATCH):
            values = tap([samples[start:start + BATCH]], training=False)  # the structure of model.inputs
            values = [ops.convert_to_numpy(v) for v in values]
            for i, layer in enumerate(layers):
                x, y = values[2 * i], values[2 * i + 1]
                if rounded[layer.name] is not None:
                    layer.set_weights(rounded[layer.name])
                for (fmt, name), row in targets.items():
                    if name != layer.name:
                        continue
                    source = targets.get((fmt, producer[id(layer)]))
                    in_grid = QuantGrid(source.scale, source.zero_point, *_qrange(source)) if source else minmax_grid(x)
                    out_grid = QuantGrid(row.scale, row.zero_point, *_qrange(row))
                    simulated = ops.convert_to_numpy(layer(in_grid.fake_quantize(x).astype(np.float32),
                                                           training=False))
                    accumulators[(fmt, name)].add(y, out_grid.fake_quantize(simulated))
                layer.set_weights(float_weights[layer.name])
    finally:
        for layer in layers:
            layer.set_weights(float_weights[layer.name])
    for key, row in targets.items():
        acc = accumulators[key]
        if _same_tensor(acc, row):
            row.own_sqnr_db = round(sqnr_db(acc.signal, acc.noise), 3)


def _same_tensor(acc: ErrorAccumulator, row) -> bool:
    """Whether the Keras layer's output is the row's tensor: the same float range on the same samples.

    Not so when the format keeps the layer's activation apart and in float (ONNX's final
    Softmax): the last quantized tensor of the layer is then its pre-activation.
    """
    tolerance = 1e-3 * max(acc.high - acc.low, row.float_max - row.float_min) + 1e-5
    return abs(acc.low - row.float_min) <= tolerance and abs(acc.high - row.float_max) <= tolerance


def _qrange(row) -> tuple[int, int]:
    """The integer range of a row's grid, recovered from its representable range."""
    qmin = int(round(row.range_min / row.scale + row.zero_point))
    return qmin, qmin + 255


def _producer_name(layer) -> str:
    """The name of the layer whose output this single-input layer reads."""
    history = getattr(layer.input, "_keras_history", None)
    return history[0].name if history else ""
