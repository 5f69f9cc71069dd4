"""Host-side calibration: the split of the user's data into calibration and held-out samples,
the adapters that feed them to each converter, and activation statistics from the float model.

The data is read by `edgeact.data.source`, the one reader calibration, profile and budget data
share; the samples are `edgeact.data.samples.Samples`.

May import: edgeact's core, `edgeact.formats`, `edgeact.data`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeact.data.preprocess import Preprocessing
from edgeact.data.samples import ModelInput, Samples
from edgeact.data.source import read_source
from edgeact.errors import CalibrationError, EdgeactWarning

__all__ = ["CalibrationSet", "ModelInput", "Samples", "open_calibration", "read_calibration", "RANDOM"]

RANDOM = "random"
DEFAULT_SAMPLES = 200
DEFAULT_HOLDOUT = 100
OPTION = "--calibration"


@dataclass
class CalibrationSet:
    """Samples to calibrate on, held-out samples to verify on, and a summary for the report."""

    calibration: Samples
    holdout: Samples
    summary: dict = field(default_factory=dict)


def open_calibration(spec: Any) -> Any:
    """A folder or .npy/.npz path opened (listed, not decoded) so that a missing, empty or unreadable
    one is refused before the model loads; other specs are returned as they are."""
    if isinstance(spec, (str, Path)) and str(spec) != RANDOM:
        return read_source(spec, OPTION, classes=False, error=CalibrationError)
    return spec


def _read(spec: Any, inputs: list[ModelInput], preprocessing: Preprocessing, limit: int, seed: int,
          progress=None) -> Samples:
    """Up to `limit` samples of the calibration data, read by `edgeact.data.source` (the one reader)."""
    if isinstance(spec, (str, Path)) and str(spec) == RANDOM:
        warnings.warn("calibrating on random data: INT8 accuracy will be poor; use real images for a real model",
                      EdgeactWarning, stacklevel=3)
        rng = np.random.default_rng(seed)
        spec = {i.name: rng.integers(0, 256, size=(limit, *i.shape), dtype=np.uint8) for i in inputs}
        origin = RANDOM
    else:
        origin = None
    source = read_source(spec, OPTION, classes=False, limit=limit, inputs=inputs, error=CalibrationError)
    if origin is not None:
        source.origin = origin
    shuffled = False
    if source.is_folder:  # decoded in a seeded order until `limit` images read, unreadable ones skipped
        source = source.take(np.random.default_rng(seed).permutation(len(source)))
    elif len(source) > limit:
        # Only the samples the split below would pick are read (a memory-mapped .npy stays on disk):
        # the first `limit` of the very permutation read_calibration draws, in its order.
        source = source.take(np.random.default_rng(seed).permutation(len(source))[:limit])
        shuffled = True
    samples = source.samples(inputs, preprocessing, count=limit if source.is_folder else None,
                             skip_unreadable=True, progress=progress)
    summary = {"source": source.origin, "available": len(samples), "values": source.summary()["values"],
               "shuffled": shuffled}
    if source.is_folder:
        summary.update(files_seen=source.files_seen, skipped=dict(source.skipped))
    return Samples(samples.arrays, None, summary, CalibrationError)


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
    source = _read(spec, inputs, preprocessing, samples + holdout, seed, progress)
    # A seeded shuffle, so that the held-out samples are not just the tail of a sorted file
    # (already drawn by _read when it read only the samples picked from a larger array).
    data = source if source.summary().get("shuffled") else \
        source.take(np.random.default_rng(seed).permutation(len(source)))
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
        **{k: v for k, v in source.summary().items() if k != "shuffled"},
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
