"""Compiled forward passes of a Keras model over batches of samples, one or several inputs.

Calling a Keras model eagerly runs every layer op by op: on MobileNetV2 about five times
slower per sample than the same model inside one `tf.function`, where TensorFlow's graph
optimiser fuses bias and activation into the convolutions. `model.predict` compiles too,
but builds a data pipeline and a new function per call; for the few fixed-size batches
edgeact runs, one traced function with an open batch dimension is the cheapest.

Samples are an array (a single-input model) or anything with `.arrays` keyed by input name
(edgeact.data.samples.Samples); the model's inputs are fed in its own input order.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from calibration.statistics import ActivationStats, statistics_from_counts

from .activations import relu_layers

BATCH = 32


def compile_forward(fn: Callable[..., Any], input_shapes: list[tuple[int, ...]]):
    """`fn(*inputs)` (a float batch per input) as one `tf.function` with an open batch dimension."""
    import tensorflow as tf

    specs = [tf.TensorSpec((None, *shape), tf.float32) for shape in input_shapes]
    return tf.function(fn, input_signature=specs, reduce_retracing=True)


def _call(model, args):
    out = model(list(args) if len(args) > 1 else args[0], training=False)
    if isinstance(out, dict):
        return [out[name] for name in model.output_names]
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _shapes(model) -> list[tuple[int, ...]]:
    return [tuple(t.shape[1:]) for t in model.inputs]


def model_forward(model):
    """A compiled inference-mode call of a Keras model, returning a list of outputs."""
    return compile_forward(lambda *args: _call(model, args), _shapes(model))


def _arrays(model, samples) -> list[np.ndarray]:
    by_name = getattr(samples, "arrays", None)
    if by_name is not None:
        return [by_name[t.name] for t in model.inputs]
    return [np.asarray(samples)]


def run_batches(forward, model, samples, batch_size: int = BATCH) -> list[list[np.ndarray]]:
    """`forward` on consecutive batches of `samples`; one list of numpy results per batch."""
    arrays = _arrays(model, samples)
    results = []
    for start in range(0, len(arrays[0]), batch_size):
        batch = [np.ascontiguousarray(a[start:start + batch_size], dtype=np.float32) for a in arrays]
        out = forward(*batch)
        results.append([np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])])
    return results


def predict(model, samples, batch_size: int = BATCH) -> list[np.ndarray]:
    """The model's outputs on `samples` (one array per output, in model order), through one compiled function."""
    batches = run_batches(model_forward(model), model, samples, batch_size)
    return [np.concatenate(parts) for parts in zip(*batches)]


def float_pass(model, samples, batch_size: int = 16) -> tuple[list[ActivationStats], list[np.ndarray]]:
    """One compiled pass of the float model: ReLU statistics and the model's own outputs.

    The reduction (positive values per channel) runs inside the same `tf.function` as the
    model, so one short vector per layer and batch leaves TensorFlow: copying every ReLU map
    out and reducing it in numpy, eagerly, took longer than the conversion itself
    (MobileNetV2: 36 maps, about 7 million values per sample). The batch is small because
    every map of a batch may be alive at once until its reduction runs (MobileNetV2: about
    45 MB per sample). The outputs come for free and serve as the float reference.

    Returns:
        (statistics per ReLU layer in model order, one array of outputs per model output)
    """
    import keras
    import tensorflow as tf

    layers = relu_layers(model)
    outputs = _call_outputs(model)
    probe = keras.Model(model.inputs if len(model.inputs) > 1 else model.inputs[0],
                        [layer.output for layer, _ in layers] + outputs)

    def reduce(*args):
        values = probe(list(args) if len(args) > 1 else args[0], training=False)
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        maps, results = values[:len(layers)], values[len(layers):]
        # Counts per channel stay exact in float32 up to 2**24 values per channel and batch.
        positive = [tf.reduce_sum(tf.cast(m > 0, tf.float32), axis=tf.range(tf.rank(m) - 1)) for m in maps]
        return positive + results

    batches = run_batches(compile_forward(reduce, _shapes(model)), model, samples, batch_size)
    count = len(_arrays(model, samples)[0])
    stats = []
    for i, (layer, kind) in enumerate(layers):
        positive = np.sum([b[i].astype(np.int64) for b in batches], axis=0)
        values = int(np.prod(layer.output.shape[1:])) * count
        stats.append(statistics_from_counts(layer.name, kind, positive, values))
    n = len(layers)
    return stats, [np.concatenate([b[n + j] for b in batches]) for j in range(len(outputs))]


def _call_outputs(model) -> list:
    outputs = model.outputs
    if isinstance(outputs, dict):
        return [outputs[name] for name in model.output_names]
    return list(outputs)
