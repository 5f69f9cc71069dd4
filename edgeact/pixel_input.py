"""Pixel-in models (`convert --io uint8`) on the device: which models take raw pixels, and the
pixels that preprocess to a given float input.

A pixel-in model's contract (`edgeact.model_metadata`) carries `input.pixel_in`; such a model
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
