"""Calibration sources: one small protocol for image folders, .npy/.npz files and iterables.

Like ONNX Runtime's `CalibrationDataReader`, a source is an iterator of
`{input_name: array}` with a batch of one; `calibration.adapters` turns any source into
TFLite's `representative_dataset` and ORT's reader, so both formats see the same samples.

Which values are pixels and which are model inputs, for every source alike:
- images and uint8 arrays are pixels (0..255): the preprocessing preset is applied;
- float arrays and Python iterables are model inputs already: they are fed as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Protocol

import numpy as np

from edgeact.errors import CalibrationError
from edgeact.images import decode_images, list_files
from edgeact.preprocess import Preprocessing


@dataclass(frozen=True)
class ModelInput:
    """The model input calibration samples must fit: name and (H, W, C) without batch."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


class CalibrationSource(Protocol):
    """An iterable of `{input_name: float32 array of shape (1, *input.shape)}`."""

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]: ...

    def summary(self) -> dict: ...


def _check_finite(array: np.ndarray, where: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise CalibrationError(f"{where} contains {bad} NaN or infinite value(s); clean the data first")


class ArraySource:
    """Samples already in memory, (N, *shape): pixels if uint8, model inputs if float."""

    def __init__(self, array: np.ndarray, model_input: ModelInput, preprocessing: Preprocessing,
                 origin: str = "array", extra: dict | None = None) -> None:
        array = np.asarray(array)
        shape = tuple(model_input.shape)
        if array.shape == shape:
            array = array[None]
        if array.ndim == len(shape) and shape[-1] == 1 and array.shape[1:] == shape[:-1]:
            array = array[..., None]  # (N, H, W) grayscale for an (H, W, 1) input
        if array.ndim != len(shape) + 1 or tuple(array.shape[1:]) != shape:
            raise CalibrationError(
                f"{origin} has shape {tuple(array.shape)} but the model input '{model_input.name}' takes "
                f"(N, {', '.join(map(str, shape))}); reshape or resize the data"
            )
        if len(array) == 0:
            raise CalibrationError(f"{origin} holds no samples; give at least one")
        if not (array.dtype == np.uint8 or np.issubdtype(array.dtype, np.floating)):
            raise CalibrationError(f"{origin} has dtype {array.dtype}; give uint8 pixels or float model inputs")
        _check_finite(array, origin)
        self.pixels = array.dtype == np.uint8
        self.samples = preprocessing.apply(array) if self.pixels else array.astype(np.float32)
        self.model_input = model_input
        self._summary = {"source": origin, "available": int(len(array)),
                         "values": "pixels, preprocessed" if self.pixels else "model inputs, fed as is",
                         **(extra or {})}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for sample in self.samples:
            yield {self.model_input.name: sample[None]}

    def __len__(self) -> int:
        return len(self.samples)

    def summary(self) -> dict:
        return dict(self._summary)


def image_folder_source(folder: Path, model_input: ModelInput, preprocessing: Preprocessing,
                        limit: int, seed: int, progress=None) -> ArraySource:
    """Up to `limit` images from a folder (recursive), in a seeded random order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder '{folder}' does not exist; check the path")
    if len(model_input.shape) != 3 or model_input.shape[-1] not in (1, 3):
        raise CalibrationError(
            f"model input '{model_input.name}' has shape {model_input.shape}, not an image (H, W, 1 or 3); "
            "give calibration data as .npy/.npz"
        )
    files = list_files(folder)
    order = np.random.default_rng(seed).permutation(len(files))
    height, width, channels = model_input.shape
    decoded = decode_images([files[i] for i in order], height, width, channels, limit=limit, progress=progress)
    if len(decoded.pixels) == 0:
        raise CalibrationError(
            f"calibration folder '{folder}' holds no readable images ({len(files)} files, skipped: "
            f"{decoded.skipped_text()}); add JPEG or PNG images"
        )
    return ArraySource(decoded.pixels, model_input, preprocessing, origin=f"image folder {folder}",
                       extra={"files_seen": len(files), "skipped": decoded.skipped})


def array_file_source(path: Path, model_input: ModelInput, preprocessing: Preprocessing) -> ArraySource:
    """A .npy array, or the array in a .npz named 'x', the input's name, or its only array."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file '{path}' does not exist; check the path")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CalibrationError(f"cannot read calibration file '{path}': {exc}; save it with numpy.save/savez") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            key = next((k for k in ("x", model_input.name) if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise CalibrationError(f"{path} holds arrays {keys}; name the samples 'x'")
            array = loaded[key]
    else:
        array = loaded
    return ArraySource(array, model_input, preprocessing, origin=f"{path.name}")


def iterable_source(items: Iterable, model_input: ModelInput, preprocessing: Preprocessing,
                    limit: int) -> ArraySource:
    """Any Python iterable of arrays (or `{input_name: array}`), with or without a batch axis."""
    samples = []
    for item in items:
        if isinstance(item, dict):
            item = item.get(model_input.name, next(iter(item.values())))
        array = np.asarray(item)
        samples.extend(array if array.ndim == len(model_input.shape) + 1 else [array])
        if len(samples) >= limit:
            break
    if not samples:
        raise CalibrationError("the calibration iterable yielded no samples")
    shapes = {np.shape(s) for s in samples}
    if len(shapes) != 1:
        raise CalibrationError(f"calibration samples have different shapes {sorted(shapes)}; make them equal")
    return ArraySource(np.stack(samples[:limit]), model_input, preprocessing, origin="python iterable")


def random_source(model_input: ModelInput, preprocessing: Preprocessing, count: int, seed: int) -> ArraySource:
    """Uniform random pixels, preprocessed: only for conversion smoke tests, never for accuracy."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(count, *model_input.shape), dtype=np.uint8)
    return ArraySource(pixels, model_input, preprocessing, origin="random")
