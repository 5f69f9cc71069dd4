"""Host-side calibration: data sources, the split into calibration and held-out samples,
and activation statistics gathered from the float model."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeact.data.preprocess import Preprocessing
from edgeact.errors import CalibrationError, EdgeactWarning

from .sources import (
    CalibrationSource,
    ModelInput,
    SampleSet,
    array_file_source,
    image_folder_source,
    iterable_source,
    random_source,
    sample_set,
)

__all__ = ["CalibrationSet", "CalibrationSource", "ModelInput", "read_calibration", "RANDOM"]

RANDOM = "random"
DEFAULT_SAMPLES = 200
DEFAULT_HOLDOUT = 100


@dataclass
class CalibrationSet:
    """Samples to calibrate on, held-out samples to verify on, and a summary for the report."""

    calibration: SampleSet
    holdout: SampleSet
    summary: dict = field(default_factory=dict)


def _open_source(spec: Any, inputs: list[ModelInput], preprocessing: Preprocessing, limit: int,
                 seed: int, progress=None) -> SampleSet:
    if isinstance(spec, (str, Path)):
        if str(spec) == RANDOM:
            warnings.warn("calibrating on random data: INT8 accuracy will be poor; use real images for a real model",
                          EdgeactWarning, stacklevel=3)
            return random_source(inputs, preprocessing, limit, seed)
        path = Path(spec)
        if path.is_dir():
            return image_folder_source(path, inputs, preprocessing, limit, seed, progress)
        if path.suffix.lower() in (".npy", ".npz"):
            return array_file_source(path, inputs, preprocessing)
        if not path.exists():
            raise CalibrationError(f"calibration data '{path}' does not exist; give an image folder, .npy or .npz")
        raise CalibrationError(f"calibration data '{path}' is neither a folder nor a .npy/.npz file")
    if isinstance(spec, np.ndarray):
        if len(inputs) != 1:
            raise CalibrationError(f"one array given but the model has {len(inputs)} inputs; "
                                   "give a dict of arrays keyed by input name")
        return sample_set({inputs[0].name: spec}, inputs, preprocessing, "array")
    if isinstance(spec, dict) and spec and all(isinstance(v, np.ndarray) for v in spec.values()):
        return sample_set(spec, inputs, preprocessing, "arrays")
    try:
        iterator = iter(spec)
    except TypeError:
        raise CalibrationError(f"calibration data of type {type(spec).__name__} is not iterable") from None
    return iterable_source(iterator, inputs, preprocessing, limit)


def read_calibration(spec: Any, inputs: ModelInput | list[ModelInput], preprocessing: Preprocessing,
                     samples: int = DEFAULT_SAMPLES, holdout: int = DEFAULT_HOLDOUT, seed: int = 0,
                     progress=None) -> CalibrationSet:
    """Read calibration data and split it into calibration and held-out samples.

    Args:
        spec: an image folder, a .npy/.npz path, "random", an array, a dict of arrays keyed by
            input name, or an iterable of samples (arrays, or dicts keyed by input name).
        inputs: the model's inputs (one ModelInput for a single-input model).
        samples: how many samples calibrate the model.
        holdout: how many further samples verify the converted model; when the data holds
            fewer than `samples + holdout`, a fifth of it is held out instead.
    Raises:
        CalibrationError: the data cannot be read, is empty, or does not fit the model.
    """
    if samples < 1:
        raise CalibrationError("--samples must be at least 1")
    inputs = [inputs] if isinstance(inputs, ModelInput) else list(inputs)
    source = _open_source(spec, inputs, preprocessing, samples + holdout, seed, progress)
    # A seeded shuffle, so that the held-out samples are not just the tail of a sorted file.
    data = source.take(np.random.default_rng(seed).permutation(len(source)))
    available = len(data)
    if available >= samples + holdout:
        n_cal, n_hold = samples, holdout
    elif available >= 5:
        n_hold = max(1, min(holdout, available // 5))
        n_cal = min(samples, available - n_hold)
    else:
        n_cal, n_hold = available, 0
    calibration = data.take(slice(0, n_cal))
    held_out = data.take(slice(n_cal, n_cal + n_hold)) if n_hold else calibration
    values = np.concatenate([a.reshape(-1) for a in data.arrays.values()])
    summary = {
        **source.summary(),
        "calibration_samples": n_cal,
        "holdout_samples": n_hold,
        "verified_on": "held-out samples" if n_hold else "calibration samples (too few to hold any out)",
        "seed": seed,
        "preprocessing": preprocessing.to_dict(),
        "input_min": float(values.min()),
        "input_max": float(values.max()),
        "input_range": {name: [float(a.min()), float(a.max())] for name, a in data.arrays.items()},
    }
    return CalibrationSet(calibration, held_out, summary)
