"""Activation statistics of the float model: what the numbers mean, computed from counts.

Per ReLU/ReLU6 (a ReLU layer, an Activation layer, or a layer's own relu activation): the
fraction of outputs that are zero (activation sparsity) and the channels that are zero on
every sample ("dead" channels). A dying ReLU wastes compute and hurts accuracy; a tool that
sees the activations anyway should say so. The counts come from the one compiled pass of
the float model that also gives the float reference (converters.keras.forward.float_pass).
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


def statistics_from_counts(layer: str, kind: str, positive: np.ndarray, values: int) -> ActivationStats:
    """Statistics of one ReLU output from its count of positive values per channel.

    Args:
        positive: per channel, how many of its values were above zero over all samples.
        values: how many values the output had in all (samples x positions x channels).
    """
    positive = np.asarray(positive, dtype=np.int64)
    zeros = values - int(positive.sum())
    return ActivationStats(layer, kind, int(positive.size), zeros / values if values else 0.0,
                           int(np.sum(positive == 0)))
