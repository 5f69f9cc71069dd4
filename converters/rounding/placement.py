"""Where a Keras kernel sits in an exported file: the one float tensor holding it, transposed.

Both exporters write each kernel with its float values unchanged, in their own axis order
(TFLite OHWI, a depthwise 1HWC; ONNX OIHW, a depthwise C1HW; Conv1D with a unit axis added).
`find_transposed` finds the one array equal to the kernel under some order of its non-unit
axes; `arrange` writes another kernel of the same shape in that order.
"""
from __future__ import annotations

import itertools

import numpy as np


def core(array: np.ndarray) -> np.ndarray:
    """The array without its unit axes."""
    return array.reshape([d for d in array.shape if d != 1])


def find_transposed(kernel: np.ndarray, arrays: dict) -> tuple[object, tuple[int, ...]] | None:
    """(key, axis order) of the one array in `arrays` equal to `kernel` transposed; None for none or several."""
    kernel_core = core(kernel)
    found = []
    for key, value in arrays.items():
        if value.size != kernel.size or value.dtype != np.float32:
            continue
        target = core(value)
        for order in itertools.permutations(range(kernel_core.ndim)):
            if tuple(kernel_core.shape[i] for i in order) == target.shape and \
                    np.array_equal(kernel_core.transpose(order), target):
                found.append((key, order))
                break
    return found[0] if len(found) == 1 else None


def placed(changes: list, arrays: dict, unmatched: list):
    """(change, key, axis order) for each change whose kernel `find_transposed` finds in `arrays`;
    the layers of the others are appended to `unmatched`."""
    for change in changes:
        place = find_transposed(change.kernel, arrays)
        if place is None:
            unmatched.append(change.layer)
        else:
            yield change, place[0], place[1]


def arrange(kernel: np.ndarray, order: tuple[int, ...], shape) -> np.ndarray:
    """`kernel` in the file's axis order and shape (what `find_transposed` found for its original)."""
    return core(kernel).transpose(order).reshape(shape).astype(np.float32)


__all__ = ["arrange", "core", "find_transposed", "placed"]
