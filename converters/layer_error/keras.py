"""Own error of each layer: only that layer quantized, everything before it float.

For the Keras layers C one quantized tensor computes (a chain such as Conv2D ->
BatchNormalization -> ReLU, which the converters fold into one op), on the same samples:

    float:     y  = C(x)                            x: C's input in the float model
    simulated: y' = Q_out(C_q(Q_in(x)))             C_q: C with its kernels rounded to int8,
                                                    symmetric, per output channel
    own_sqnr_db = SQNR(y, y')

Q_out is the grid the converted model gives the tensor (the row's scale and zero point), Q_in
the grid of the tensor C reads in that format (the row of the layer feeding it; for the model
input an INT8 min/max grid of the float input, as both converters calibrate). Kernels are
rounded as each format's model rounds them (int8 per output channel, symmetric: -127..127 for
TFLite, the ONNX file's range, -64..64 with edgeact's 7-bit default); biases
stay float (int32 in the converted models, a rounding far below the activations'). This is a
simulation in Keras, not a run of the INT8 kernel: integer requantization can differ from it
by a rounding step, and the tests hold it to 0.5 dB of the real kernel.

The error a layer brings with it, not what it inherits: a layer with a low accumulated but a
high own SQNR is a victim; a low own SQNR names the culprit.
"""
from __future__ import annotations

import numpy as np

from edgeact.report.layer_errors import LayerErrorReport

from .measure import QuantGrid, sqnr_db

BATCH = 4  # MobileNetV2, 8 samples: as fast as 8 a batch, 120 MB less peak memory of convert (1437 vs 1555 MB)
# Layer type -> {weight name: axis of its output channels}, for the layers the converters
# quantize per channel; their other weights (biases, BatchNorm statistics) stay float.
_KERNELS = {
    "Conv1D": {"kernel": -1}, "Conv2D": {"kernel": -1}, "Dense": {"kernel": -1},
    "DepthwiseConv2D": {"kernel": 2}, "SeparableConv2D": {"depthwise_kernel": 2, "pointwise_kernel": -1},
}


def quantize_kernel(kernel: np.ndarray, axis: int | None, levels: int = 127) -> np.ndarray:
    """Symmetric int8 ([-levels, levels]: 127, or 64 for ONNX's 7-bit weights) per channel along
    `axis` (per tensor when None), dequantized. In float32, as the converters round."""
    kernel = np.asarray(kernel, np.float32)
    if axis is None:
        peak = np.max(np.abs(kernel))
    else:
        axis = axis % kernel.ndim
        reduce = tuple(i for i in range(kernel.ndim) if i != axis)
        peak = np.max(np.abs(kernel), axis=reduce, keepdims=True)
    scale = np.where(peak > 0, peak / np.float32(levels), np.float32(1)).astype(np.float32)
    q = np.rint(kernel / scale)
    np.clip(q, -levels, levels, out=q)
    q *= scale
    return q


def minmax_grid(x: np.ndarray) -> QuantGrid:
    """The asymmetric int8 grid a min/max calibration gives x (zero always representable)."""
    low, high = min(float(np.min(x)), 0.0), max(float(np.max(x)), 0.0)
    scale = (high - low) / 255.0 or 1.0
    return QuantGrid(scale, int(round(-128 - low / scale)), -128, 127)


def quantized_weights(layer, levels: int = 127, replaced: dict | None = None) -> list[np.ndarray]:
    """The layer's weights with its kernels rounded as the converters round them.

    `replaced`: weight name -> the values the exporter wrote instead (a weight step's snapped
    kernel or corrected bias, converters.rounding), rounded the same way: round-to-nearest of a
    snapped kernel gives the integers the step chose.
    A BatchNorm folded into the kernel before rounding changes nothing here: per-channel
    symmetric rounding commutes with scaling a channel.
    """
    axes = _KERNELS.get(type(layer).__name__, {})
    replaced = replaced or {}
    values = [(w.name, replaced[w.name] if w.name in replaced else w.numpy()) for w in layer.weights]
    return [quantize_kernel(v, axes[name], levels) if name in axes else np.asarray(v, np.float32)
            for name, v in values]


def replaced_weights(changes) -> dict[str, dict[str, np.ndarray]]:
    """layer name -> {weight name: new values} of a weight step's KernelChanges (converters.rounding)."""
    found: dict[str, dict[str, np.ndarray]] = {}
    for change in changes or ():
        by_name = found.setdefault(change.layer, {})
        by_name[change.weight] = change.new_kernel
        if change.new_bias is not None:
            by_name["bias"] = change.new_bias
    return found


def _single_input_layer(layer):
    """The layer feeding `layer` when it has one input and is used once; None otherwise.

    None too when either is an operation written as arithmetic (`x + 3.0` in MobileNetV3's
    hard-sigmoid is a Keras Operation, not a Layer): its constant operand is not an input the
    chain could feed it again, so a chain meeting one ends there, like one meeting an Add layer.
    """
    if not _is_layer(layer) or len(getattr(layer, "_inbound_nodes", [])) != 1 \
            or isinstance(layer.input, (list, tuple)):
        return None
    history = getattr(layer.input, "_keras_history", None)
    return history[0] if history and _is_layer(history[0]) else None


def _is_layer(operation) -> bool:
    return hasattr(operation, "set_weights")


# Layers the converters fold into the op before them (BatchNorm into the kernel, activations
# into the op's output range), so that one quantized tensor computes several Keras layers.
_ABSORBED = {"BatchNormalization", "ReLU", "Activation", "LeakyReLU"}


def _consumers(layer) -> list:
    return [node.operation for node in getattr(layer, "_outbound_nodes", [])]


def forward_chain(layer) -> list:
    """`layer` and the BatchNorm/activation layers after it that its converted op absorbs."""
    chain = [layer]
    while True:
        consumers = _consumers(chain[-1])
        if len(consumers) != 1 or type(consumers[0]).__name__ not in _ABSORBED \
                or _single_input_layer(consumers[0]) is not chain[-1]:
            return chain
        chain.append(consumers[0])


def layer_chains(keras_model, rows: list) -> list[tuple]:
    """(row, Keras layers its tensor computes, row of the quantized tensor they read or None).

    A row's chain runs from its layer forward through what the converter folds into it
    (Conv2D -> BatchNormalization -> ReLU is one TFLite op), and backward through
    single-input layers until the end of another row's chain or the model input. Rows whose
    chain meets a layer with several inputs (Add, Concatenate) get none: their error is
    their inputs'.
    """
    by_name = {layer.name: layer for layer in keras_model.layers}
    last = {}
    for row in rows:
        if row.layer in by_name:
            last[row.layer] = row  # a layer's last tensor is its output (a separable conv's pointwise)
    forward = {name: forward_chain(by_name[name]) for name in last}
    ends = {chain[-1].name: last[name] for name, chain in forward.items()}
    found = []
    for name, row in last.items():
        chain = list(forward[name])
        while True:
            previous = _single_input_layer(chain[0])
            if previous is None:
                break
            if type(previous).__name__ == "InputLayer":
                found.append((row, chain, None))
                break
            if previous.name in ends:
                found.append((row, chain, ends[previous.name]))
                break
            chain.insert(0, previous)
    return found


def _tap_model(keras_model, chains):
    """One model returning each distinct tensor a chain reads or writes, and each chain's (input, output)
    positions among them (a chain's input is mostly the output of the chain before it: computed once)."""
    import keras

    tensors, position, pairs = [], {}, []
    for chain in chains:
        pair = []
        for tensor in (chain[0].input, chain[-1].output):
            if id(tensor) not in position:
                position[id(tensor)] = len(tensors)
                tensors.append(tensor)
            pair.append(position[id(tensor)])
        pairs.append(tuple(pair))
    return keras.Model(keras_model.inputs, tensors), pairs


def _fake_quantize(x, grid: QuantGrid):
    """x rounded to the grid and clipped, in TensorFlow (float32, rounding half to even as numpy)."""
    import tensorflow as tf

    q = tf.clip_by_value(tf.round(x / grid.scale), grid.qmin - grid.zero_point, grid.qmax - grid.zero_point)
    return q * grid.scale


def _run_chain(chain, x, rounded: dict):
    """The chain on x, each layer with a kernel computing with its rounded weights (`rounded`:
    layer name -> values in the order of `layer.weights`) through Keras' `stateless_call`, which
    leaves the model's variables alone (assigning VGG16's 553 MB there and back with set_weights
    took three times the simulation)."""
    y = x
    for layer in chain:
        if layer.name not in rounded:
            y = layer(y, training=False)
            continue
        by_variable = {id(v): value for v, value in zip(layer.weights, rounded[layer.name])}
        y, _ = layer.stateless_call([by_variable[id(v)] for v in layer.trainable_variables],
                                    [by_variable[id(v)] for v in layer.non_trainable_variables], y)
    return y


def _simulate(chains: list, pairs: list[tuple[int, int]], grids: list[tuple[QuantGrid, QuantGrid]],
              values: list, rounded: dict) -> np.ndarray:
    """[signal, noise, low, high] of each chain's float output against its simulation, on one batch
    of taps, the layers' kernels rounded as `rounded` gives them."""
    import tensorflow as tf

    found = []
    for chain, (x_at, y_at), (in_grid, out_grid) in zip(chains, pairs, grids):
        y = values[y_at]
        simulated = _fake_quantize(_run_chain(chain, _fake_quantize(values[x_at], in_grid), rounded), out_grid)
        found.append(tf.stack([tf.reduce_sum(tf.square(y)), tf.reduce_sum(tf.square(y - simulated)),
                               tf.reduce_min(y), tf.reduce_max(y)]))
    return tf.stack(found).numpy().astype(np.float64)


def add_own_errors(report: LayerErrorReport, keras_model, samples: np.ndarray, batch: int = BATCH,
                   weight_levels: dict[str, int] | None = None, weight_changes: dict[str, list] | None = None) -> None:
    """Fill `own_sqnr_db` of the last row of each Keras layer that ends a chain, per format.

    `weight_levels`: each format's symmetric weight range (127 unless given; 64 for an ONNX model
    with 7-bit weights), so each format's kernels are rounded as its model rounds them.
    `weight_changes`: each format's kept weight step (its KernelChanges, converters.rounding), so
    a layer's own error is that of the integers and bias its file holds, not round-to-nearest's.

    Eagerly, a batch at a time, the simulation in TensorFlow: only four numbers per chain and
    batch come back to numpy (copying every tap out and rounding it in numpy cost three times
    the simulation on MobileNetV2), and for the few batches a convert report measures, tracing
    a compiled function would cost more than it saves.
    """
    # One rounding per format that rounds its weights its own way (a weight range, a weight step).
    kinds = {fmt: (fmt if (weight_changes or {}).get(fmt) else "", (weight_levels or {}).get(fmt, 127))
             for fmt in report.formats()}
    tagged = [(kinds[fmt], job) for fmt in report.formats()
              for job in layer_chains(keras_model, report.of_format(fmt))]
    jobs = [job for _, job in tagged]
    if not jobs:
        return
    tap, pairs = _tap_model(keras_model, [chain for _, chain, _ in jobs])
    import tensorflow as tf

    groups = {kind: [i for i, (k, _) in enumerate(tagged) if k == kind] for kind, _ in tagged}
    rounded = {}
    for (fmt, levels), members in groups.items():
        replaced = replaced_weights((weight_changes or {}).get(fmt)) if fmt else {}
        with_kernels = dict.fromkeys(layer for i in members for layer in jobs[i][1]
                                     if type(layer).__name__ in _KERNELS)
        rounded[(fmt, levels)] = {
            layer.name: [tf.convert_to_tensor(w) for w in quantized_weights(layer, levels, replaced.get(layer.name))]
            for layer in with_kernels}
    # The model input's grid: min/max over the samples, as both converters calibrate it.
    input_grid = minmax_grid(samples)
    grids = [(_grid(boundary) if boundary else input_grid, _grid(row)) for row, _, boundary in jobs]
    totals = np.zeros((len(jobs), 4))  # signal, noise, then the float range: low, high
    totals[:, 2], totals[:, 3] = np.inf, -np.inf
    for start in range(0, len(samples), batch):
        values = tap([samples[start:start + batch]], training=False)  # the structure of model.inputs
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        for levels, members in groups.items():
            found = _simulate([jobs[i][1] for i in members], [pairs[i] for i in members],
                              [grids[i] for i in members], values, rounded[levels])
            totals[members, :2] += found[:, :2]
            totals[members, 2] = np.minimum(totals[members, 2], found[:, 2])
            totals[members, 3] = np.maximum(totals[members, 3], found[:, 3])
    for (row, _, _), (signal, noise, low, high) in zip(jobs, totals):
        if _same_range(low, high, row):
            row.own_sqnr_db = round(sqnr_db(signal, noise), 3)


def _grid(row) -> QuantGrid:
    """A row's grid; its integer range recovered from its representable range."""
    qmin = int(round(row.range_min / row.scale + row.zero_point))
    return QuantGrid(row.scale, row.zero_point, qmin, qmin + 255)


def _same_range(low: float, high: float, row) -> bool:
    """Whether the Keras layer's output is the row's tensor: the same float range on the same samples.

    Not so when the format keeps the layer's activation apart and in float (ONNX's final
    Softmax): the last quantized tensor of the layer is then its pre-activation.
    """
    tolerance = 1e-3 * max(high - low, row.float_max - row.float_min) + 1e-5
    return abs(low - row.float_min) <= tolerance and abs(high - row.float_max) <= tolerance
