"""Compiled forward passes of a Keras model over batches of samples.

Calling a Keras model eagerly runs every layer op by op: on MobileNetV2 about five times
slower per sample than the same model inside one `tf.function`, where TensorFlow's graph
optimiser fuses bias and activation into the convolutions. `model.predict` compiles too,
but builds a data pipeline and a new function per call; for the few fixed-size batches
edgeact runs, one traced function with an open batch dimension is the cheapest.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

BATCH = 32


def compile_forward(fn: Callable[[Any], Any], input_shape: tuple[int, ...]):
    """`fn` (a Keras model or any callable on a float batch) as one `tf.function`.

    The batch dimension is left open so that a last, smaller batch does not trace again.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((None, *input_shape), tf.float32)
    return tf.function(fn, input_signature=[spec], reduce_retracing=True)


def model_forward(model):
    """A compiled inference-mode call of a single-input Keras model, returning a list of outputs."""
    shape = tuple(model.inputs[0].shape[1:])

    def call(batch):
        out = model(batch, training=False)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    return compile_forward(call, shape)


def run_batches(forward, samples: np.ndarray, batch_size: int = BATCH) -> list[list[np.ndarray]]:
    """`forward` on consecutive batches of `samples`; one list of numpy results per batch."""
    results = []
    for start in range(0, len(samples), batch_size):
        out = forward(np.ascontiguousarray(samples[start:start + batch_size], dtype=np.float32))
        results.append([np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])])
    return results


def predict(model, samples: np.ndarray, batch_size: int = BATCH) -> list[np.ndarray]:
    """The model's outputs on `samples` (one array per output), through one compiled function."""
    batches = run_batches(model_forward(model), samples, batch_size)
    return [np.concatenate(parts) for parts in zip(*batches)]
