"""The one set of rules for sample arrays, shared by calibration data (convert) and evaluation data (profile).

- uint8 arrays are pixels (0..255) and get the model's preprocessing; float arrays are model
  inputs already and are fed as they are; any other dtype is refused.
- (N, *shape) is the form; (N, H, W) is accepted for a one-channel (H, W, 1) input, and a
  single sample of exactly `shape` becomes a batch of one.
- NaN or infinite values are refused, with their count.
- Several inputs: one array per input name, every name present, no unknown name, and the
  same number of samples in each.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from edgeact.errors import InputError


def fit_samples(array: np.ndarray, shape: tuple[int, ...], origin: str, input_name: str | None = None,
                error: type[InputError] = InputError, check_values: bool = True) -> np.ndarray:
    """`array` as (N, *shape); `error` naming the shape the model takes otherwise.

    `check_values=False` skips the NaN/inf pass, for arrays checked when they were read.
    """
    array = np.asarray(array)
    shape = tuple(int(d) for d in shape)
    if array.shape == shape:
        array = array[None]
    if array.ndim == len(shape) and shape and shape[-1] == 1 and array.shape[1:] == shape[:-1]:
        array = array[..., None]  # (N, H, W) grayscale for an (H, W, 1) input
    if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape:
        target = f"the model input '{input_name}'" if input_name else "the model"
        raise error(f"{origin} has samples of shape {tuple(array.shape[1:])} but {target} takes "
                    f"{shape}; resize or reshape the data, or give data made for this model")
    if len(array) == 0:
        raise error(f"{origin} holds no samples; give at least one")
    check_dtype(array, origin, error)
    if check_values:
        check_finite(array, origin, error)
    return array


def check_dtype(array: np.ndarray, origin: str, error: type[InputError] = InputError) -> None:
    if not (array.dtype == np.uint8 or np.issubdtype(array.dtype, np.floating)):
        raise error(f"{origin} has dtype {array.dtype}; give uint8 pixels or float model inputs")


def check_finite(array: np.ndarray, origin: str, error: type[InputError] = InputError) -> None:
    """Refuse NaN or infinite values, read a few MB at a time (a memory-mapped file stays on disk)."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    if array.ndim == 0:
        bad = int(not np.isfinite(array))
    else:
        step = max(1, (1 << 24) // max(1, array[:1].nbytes))
        bad = sum(int(np.count_nonzero(~np.isfinite(array[start:start + step])))
                  for start in range(0, len(array), step))
    if bad:
        raise error(f"{origin} contains {bad} NaN or infinite value(s); clean the data first")


def match_input_names(arrays: Mapping[str, object], names: list[str], origin: str,
                      error: type[InputError] = InputError) -> None:
    """The keys of `arrays` are exactly the model's input names; `error` naming the difference."""
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names]
    if missing:
        raise error(f"{origin} has no array for model input '{missing[0]}' (inputs: {', '.join(names)}); "
                    "give one array per input, keyed by the input's name")
    if extra:
        raise error(f"{origin} has an array '{extra[0]}' that is not a model input (inputs: {', '.join(names)}); "
                    "key the arrays by the model's input names")


def same_length(arrays: Mapping[str, np.ndarray], origin: str, error: type[InputError] = InputError) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k} {v}" for k, v in lengths.items())
        raise error(f"{origin} has different sample counts per input ({detail}); give the same number for each")
    return next(iter(lengths.values()))
