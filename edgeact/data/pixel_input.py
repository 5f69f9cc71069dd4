"""Pixel-in models (`convert --io uint8`) on the device: which models take raw pixels, and the
pixels that preprocess to a given float input.

A pixel-in model's contract (`edgeact.formats.metadata`) carries `input.pixel_in`; such a model
is fed uint8 pixels as they are. Code that holds preprocessed floats (held-out samples,
profile's evaluation data) turns them back into pixels with `to_pixels`: exact for data that
came from images, rounded to the nearest pixel otherwise.
"""
from __future__ import annotations

import numpy as np

from .preprocess import Preprocessing


def takes_pixels(contract: dict | None) -> bool:
    """Whether a model with this contract takes raw uint8 pixels."""
    return bool(contract and (contract.get("input") or {}).get("pixel_in"))


def to_pixels(pre: Preprocessing, batch: np.ndarray) -> np.ndarray:
    """The uint8 pixels that preprocess to `batch` (rounded; exact for data read from images)."""
    x = np.asarray(batch, dtype=np.float64)
    channels = x.shape[-1]
    mean = np.asarray(pre._per_channel(pre.mean, channels, "mean"), np.float64)
    std = np.asarray(pre._per_channel(pre.std, channels, "std"), np.float64)
    pixels = (x * std + mean) / pre.scale
    if pre.bgr and channels == 3:
        pixels = pixels[..., ::-1]
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def feed_pixels(path, inputs: np.ndarray) -> np.ndarray:
    """Preprocessed float inputs as the uint8 pixels a pixel-in .tflite takes; anything else unchanged.

    Quantizing the floats with the uint8 input's scale would be right for a folded preset (unit,
    mobilenet) but not for a per-channel one, whose input scale is 1: its pixels go through a
    normalisation op inside the model. Without a flatbuffer schema (tflite-runtime) the
    metadata cannot be read and the inputs go on unchanged.
    """
    from pathlib import Path

    from edgeact.errors import RuntimeUnavailableError
    from edgeact.formats.metadata import read_contract

    inputs = np.asarray(inputs)
    if Path(path).suffix.lower() != ".tflite" or inputs.dtype == np.uint8:
        return inputs
    try:
        contract = read_contract(path)
    except RuntimeUnavailableError:
        return inputs
    if not takes_pixels(contract):
        return inputs
    return to_pixels(Preprocessing.from_dict(contract["input"]["preprocessing"]), inputs)
