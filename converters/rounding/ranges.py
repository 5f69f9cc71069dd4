"""Per-tensor activation ranges chosen by the error they cause: the candidate both exporters build
from values sampled in their calibration pass, and judge like a weight step.

    values = SampledValues()                    # filled by the format's calibration pass
    chosen = shrunk_ranges(values)              # {tensor: (low, high)}, only ranges that moved enough

Each tensor's range is its min/max shrunk by the factor (1 down to 0.3) with the least INT8
rounding + clipping error on its sampled values (`mse_ranges`), kept where that range is at most
MIN_SHRINK of the min/max width: a few % narrower moves the grid less than the judge samples
resolve, and each candidate costs a quantization and a judge run.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

VALUES_PER_SAMPLE = 128  # per tensor and sample, drawn at random: what per-tensor ranges are chosen on
MIN_SHRINK = 0.9  # a range is changed only where its best width is at most this share of min/max's
PER_TENSOR = "per-tensor ranges"  # the activation-range step's name in the report


class SampledValues(dict):
    """{tensor: a uniform random subset of its values}, and `ends`: {tensor: (min, max)} over all of
    them (a subset rarely holds the extremes, and adding them to it would weigh each as if it were 1
    in the subset's size instead of 1 in the tensor's)."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: dict = {}


def mse_ranges(values: Mapping, steps: int = 20, ends: Mapping | None = None) -> dict:
    """The min/max range shrunk by the factor (1.0 down to 0.3) giving the least INT8 rounding+clipping MSE;
    `ends`: each tensor's exact (min, max) where `values` are a random subset of its values. The grid
    spans 255 steps, so an asymmetric uint8 grid (ONNX) has the same error as the int8 one."""
    from converters.layer_error.measure import QuantGrid

    ranges = {}
    for name, v in values.items():
        if not v.size:
            continue
        low, high = (float(v.min()), float(v.max())) if ends is None or name not in ends else ends[name]
        low, high = min(low, 0.0), max(high, 0.0)
        best = None
        for factor in np.linspace(1.0, 0.3, steps):
            lo, hi = low * factor, high * factor
            scale = (hi - lo) / 255.0
            if scale <= 0:
                break
            grid = QuantGrid(scale, int(round(-128 - lo / scale)))
            error = float(np.mean((grid.fake_quantize(v) - v) ** 2))
            if best is None or error < best[0]:
                best = (error, lo, hi)
        if best is not None:
            ranges[name] = (best[1], best[2])
    return ranges


def shrunk_ranges(values: SampledValues) -> dict:
    """{tensor: (low, high)} of `mse_ranges` on `values`, only where it is MIN_SHRINK of the min/max
    width or narrower."""
    shrunk = {}
    for name, (low, high) in mse_ranges(values, ends=values.ends).items():
        end_low, end_high = values.ends[name]
        if high - low <= MIN_SHRINK * (max(end_high, 0.0) - min(end_low, 0.0)):
            shrunk[name] = (low, high)
    return shrunk


__all__ = ["MIN_SHRINK", "PER_TENSOR", "VALUES_PER_SAMPLE", "SampledValues", "mse_ranges", "shrunk_ranges"]
