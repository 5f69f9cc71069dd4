"""How many inputs each window of an average pool covers, for the rewrites that write a pool as a
depthwise convolution (converters.tflite.xnnpack_rewrites, converters.onnx.rewrites): a pool that
does not count its padding divides a border window by this count, not by the window's size.

    window_counts(15, 3, 1, 1, 1)     # [2, 3, 3, ..., 3, 2]
    same_padding(15, 3, 2)            # (1, 1): TensorFlow's SAME padding before and after
"""
from __future__ import annotations

import numpy as np


def window_counts(size: int, window: int, stride: int, before: int, after: int) -> np.ndarray:
    """Inputs covered by each output position along one axis padded by `before` and `after` (no ceil mode)."""
    out = (size + before + after - window) // stride + 1
    start = np.arange(out) * stride - before
    return np.minimum(start + window, size) - np.maximum(start, 0)


def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one axis: ceil(size/stride) outputs, the smaller half first."""
    total = max((-(-size // stride) - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


__all__ = ["same_padding", "window_counts"]
