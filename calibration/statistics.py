"""Activation statistics from the float model on the samples it is given (calibration or held-out).

Per ReLU/ReLU6 (a ReLU layer, an Activation layer, or a layer's own relu activation):
the fraction of outputs that are zero (activation sparsity) and the channels that are zero
on every calibration sample ("dead" channels). A dying ReLU wastes compute and hurts
accuracy; a tool that sees the activations anyway should say so.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from converters.activations import FUSABLE_PRODUCERS, classify, own_activation


@dataclass
class ActivationStats:
    layer: str
    kind: str  # relu or relu6
    channels: int
    sparsity: float  # fraction of zero outputs over all samples, positions and channels
    dead_channels: int  # channels that are zero on every sample and position

    def to_dict(self) -> dict:
        return asdict(self)


def relu_layers(model) -> list[tuple[object, str]]:
    """(layer, 'relu'|'relu6') for every layer whose output is a ReLU/ReLU6, in model order."""
    found = []
    for layer in model.layers:
        config = layer.get_config()
        kind, _ = classify(type(layer).__name__, config)
        if kind is None and type(layer).__name__ in FUSABLE_PRODUCERS and own_activation(config) in ("relu", "relu6"):
            kind = own_activation(config)
        if kind is not None:
            found.append((layer, kind))
    return found


def activation_statistics(model, samples: np.ndarray, batch_size: int = 16) -> list[ActivationStats]:
    """Sparsity and dead channels of every ReLU/ReLU6 output, accumulated batch by batch."""
    return float_pass(model, samples, batch_size)[0]


def float_pass(model, samples: np.ndarray, batch_size: int = 16) -> tuple[list[ActivationStats], list[np.ndarray]]:
    """One compiled pass of the float model: ReLU statistics and the model's own outputs.

    The reduction (positive values per channel) runs inside the same `tf.function` as the
    model, so one short vector per layer and batch leaves TensorFlow: copying every ReLU map
    out and reducing it in numpy, eagerly, took longer than the conversion itself
    (MobileNetV2: 36 maps, about 7 million values per sample). The batch is small because
    every map of a batch may be alive at once until its reduction runs (MobileNetV2: about
    45 MB per sample). The outputs come for free and can serve as the float reference.

    Returns:
        (statistics per ReLU layer in model order, one array of outputs per model output)
    """
    import keras
    import tensorflow as tf

    from converters.forward import compile_forward, run_batches

    layers = relu_layers(model)
    outputs = list(model.outputs)
    probe = keras.Model(model.inputs[0], [layer.output for layer, _ in layers] + outputs)

    def reduce(batch):
        values = probe(batch, training=False)
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        maps, results = values[:len(layers)], values[len(layers):]
        # Counts per channel stay exact in float32 up to 2**24 values per channel and batch.
        positive = [tf.reduce_sum(tf.cast(m > 0, tf.float32), axis=tf.range(tf.rank(m) - 1)) for m in maps]
        return positive + results

    batches = run_batches(compile_forward(reduce, tuple(model.inputs[0].shape[1:])), samples, batch_size)
    n = len(layers)
    stats = []
    for i, (layer, kind) in enumerate(layers):
        positive = np.sum([b[i].astype(np.int64) for b in batches], axis=0)
        values = int(np.prod(layer.output.shape[1:])) * len(samples)
        zeros = values - int(positive.sum())
        stats.append(ActivationStats(layer.name, kind, int(positive.size), zeros / values, int(np.sum(positive == 0))))
    model_outputs = [np.concatenate([b[n + j] for b in batches]) for j in range(len(outputs))]
    return stats, model_outputs
