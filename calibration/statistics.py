"""Activation statistics from the float model on calibration samples.

Per ReLU/ReLU6 (a ReLU layer, an Activation layer, or a layer's own relu activation):
the fraction of outputs that are zero (activation sparsity) and the channels that are zero
on every calibration sample ("dead" channels). A dying ReLU wastes compute and hurts
accuracy; a tool that sees the activations anyway should say so.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np



@dataclass
class ActivationStats:
    layer: str
    kind: str  # relu or relu6
    channels: int
    sparsity: float  # fraction of zero outputs over all samples, positions and channels
    dead_channels: int  # channels that are zero on every sample and position

    def to_dict(self) -> dict:
        return asdict(self)


def activation_statistics(model, samples, layers: list[tuple[object, str]],
                          batch_size: int = 32) -> list[ActivationStats]:
    """Sparsity and dead channels of the given ReLU/ReLU6 layers' outputs, accumulated batch by batch.

    Args:
        samples: a calibration.SampleSet (model inputs keyed by input name).
        layers: (layer, "relu" | "relu6") pairs; converters.activations.relu_layers finds them.
    """
    import keras

    if not layers:
        return []
    probe = keras.Model(model.inputs if len(model.inputs) > 1 else model.inputs[0], [layer.output for layer, _ in layers])
    names = [t.name for t in model.inputs]
    zeros = np.zeros(len(layers))
    counts = np.zeros(len(layers))
    alive: list[np.ndarray | None] = [None] * len(layers)
    for start in range(0, len(samples), batch_size):
        batch = [samples.arrays[n][start:start + batch_size] for n in names]
        outputs = probe(batch if len(batch) > 1 else batch[0], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for i, out in enumerate(outputs):
            out = np.asarray(out)
            zero = out <= 0
            zeros[i] += zero.sum()
            counts[i] += zero.size
            channel_alive = ~np.all(zero.reshape(-1, out.shape[-1]), axis=0)
            alive[i] = channel_alive if alive[i] is None else (alive[i] | channel_alive)
    return [
        ActivationStats(layer.name, kind, int(alive[i].size), float(zeros[i] / counts[i]),
                        int(np.sum(~alive[i])))
        for i, (layer, kind) in enumerate(layers)
    ]
