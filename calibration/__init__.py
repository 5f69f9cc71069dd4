"""Host-side calibration: data sources, the split into calibration and held-out samples,
and activation statistics gathered from the float model."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeact.errors import CalibrationError, EdgeactWarning
from edgeact.preprocess import Preprocessing

from .sources import (ArraySource, CalibrationSource, ModelInput, array_file_source,
                      image_folder_source, iterable_source, random_source)

__all__ = ["CalibrationSet", "CalibrationSource", "ModelInput", "read_calibration", "RANDOM"]

RANDOM = "random"
DEFAULT_SAMPLES = 200
DEFAULT_HOLDOUT = 100


@dataclass
class CalibrationSet:
    """Samples to calibrate on, held-out samples to verify on, and a summary for the report."""

    calibration: ArraySource
    holdout: np.ndarray
    summary: dict = field(default_factory=dict)


def _open_source(spec: Any, model_input: ModelInput, preprocessing: Preprocessing, limit: int,
                 seed: int, progress=None) -> ArraySource:
    if isinstance(spec, (str, Path)):
        if str(spec) == RANDOM:
            warnings.warn("calibrating on random data: INT8 accuracy will be poor; use real images for a real model",
                          EdgeactWarning, stacklevel=3)
            return random_source(model_input, preprocessing, limit, seed)
        path = Path(spec)
        if path.is_dir():
            return image_folder_source(path, model_input, preprocessing, limit, seed, progress)
        if path.suffix.lower() in (".npy", ".npz"):
            return array_file_source(path, model_input, preprocessing)
        if not path.exists():
            raise CalibrationError(f"calibration data '{path}' does not exist; give an image folder, .npy or .npz")
        raise CalibrationError(f"calibration data '{path}' is neither a folder nor a .npy/.npz file")
    if isinstance(spec, np.ndarray):
        return ArraySource(spec, model_input, preprocessing)
    try:
        iterator = iter(spec)
    except TypeError:
        raise CalibrationError(f"calibration data of type {type(spec).__name__} is not iterable") from None
    return iterable_source(iterator, model_input, preprocessing, limit)


def read_calibration(spec: Any, model_input: ModelInput, preprocessing: Preprocessing,
                     samples: int = DEFAULT_SAMPLES, holdout: int = DEFAULT_HOLDOUT, seed: int = 0,
                     progress=None) -> CalibrationSet:
    """Read calibration data and split it into calibration and held-out samples.

    Args:
        spec: an image folder, a .npy/.npz path, "random", an array, or an iterable of samples.
        samples: how many samples calibrate the model.
        holdout: how many further samples verify the converted model; when the data holds
            fewer than `samples + holdout`, a fifth of it is held out instead.
    Raises:
        CalibrationError: the data cannot be read, is empty, or does not fit the model.
    """
    if samples < 1:
        raise CalibrationError("--samples must be at least 1")
    source = _open_source(spec, model_input, preprocessing, samples + holdout, seed, progress)
    # A seeded shuffle, so that the held-out samples are not just the tail of a sorted file.
    data = source.samples[np.random.default_rng(seed).permutation(len(source.samples))]
    available = len(data)
    if available >= samples + holdout:
        n_cal, n_hold = samples, holdout
    elif available >= 5:
        n_hold = max(1, min(holdout, available // 5))
        n_cal = min(samples, available - n_hold)
    else:
        n_cal, n_hold = available, 0
    calibration = ArraySource(data[:n_cal], model_input, _IDENTITY, origin=source.summary()["source"])
    held_out = data[n_cal:n_cal + n_hold] if n_hold else data[:n_cal]
    summary = {
        **source.summary(),
        "calibration_samples": n_cal,
        "holdout_samples": n_hold,
        "verified_on": "held-out samples" if n_hold else "calibration samples (too few to hold any out)",
        "seed": seed,
        "preprocessing": preprocessing.to_dict(),
        "input_min": float(data.min()),
        "input_max": float(data.max()),
    }
    return CalibrationSet(calibration, held_out, summary)


# Samples inside a CalibrationSet are model inputs already.
_IDENTITY = Preprocessing("none")
