"""Calibration sources: one small protocol for image folders, .npy/.npz files and iterables.

Like ONNX Runtime's `CalibrationDataReader`, a source is an iterator of
`{input_name: array}` with a batch of one; `calibration.adapters` turns any source into
TFLite's `representative_dataset` and ORT's reader, so both formats see the same samples.

Which values are pixels and which are model inputs follows `edgeact.data.arrays` (the rules
profile's evaluation data follows too): uint8 arrays and images are pixels and get the
preprocessing; float arrays and Python iterables are model inputs, fed as they are.

Several inputs: an .npz with one array per input name, a dict of arrays, or an iterable of
dicts keyed by input name. An image folder feeds a model with one image input.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Protocol

import numpy as np

from edgeact.data.arrays import fit_samples, match_input_names, same_length
from edgeact.data.images import decode_images, list_files
from edgeact.data.preprocess import Preprocessing
from edgeact.errors import CalibrationError


@dataclass(frozen=True)
class ModelInput:
    """A model input calibration samples must fit: its name and shape without batch."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3 and self.shape[-1] in (1, 3)


class CalibrationSource(Protocol):
    """An iterable of `{input_name: float32 array of shape (1, *input.shape)}`."""

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]: ...

    def summary(self) -> dict: ...


class SampleSet:
    """Model inputs in memory: one float32 array (N, *shape) per input name, in the model's input order."""

    def __init__(self, arrays: Mapping[str, np.ndarray], summary: dict | None = None) -> None:
        self.arrays = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in arrays.items()}
        self._length = same_length(self.arrays, "calibration data", CalibrationError)
        self._summary = dict(summary or {})

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self._length):
            yield {name: a[i:i + 1] for name, a in self.arrays.items()}

    def array(self, name: str | None = None) -> np.ndarray:
        """The samples of input `name`, or of the only input (ValueError for several and no name)."""
        if name is None:
            if len(self.arrays) != 1:
                raise ValueError(f"several inputs ({', '.join(self.arrays)}): name the one you want")
            return next(iter(self.arrays.values()))
        return self.arrays[name]

    def take(self, index) -> "SampleSet":
        """The samples at `index` (a slice or an index array), as a new set."""
        return SampleSet({name: a[index] for name, a in self.arrays.items()}, self._summary)

    def head(self, n: int) -> "SampleSet":
        return self.take(slice(0, n))

    def summary(self) -> dict:
        return dict(self._summary)


def sample_set(arrays: Mapping[str, np.ndarray], inputs: list[ModelInput], preprocessing: Preprocessing,
               origin: str, extra: dict | None = None) -> SampleSet:
    """Validated model inputs from raw arrays keyed by input name (pixels preprocessed)."""
    match_input_names(arrays, [i.name for i in inputs], origin, CalibrationError)
    fitted, pixels = {}, []
    for model_input in inputs:
        where = origin if len(inputs) == 1 else f"{origin} ['{model_input.name}']"
        array = fit_samples(arrays[model_input.name], model_input.shape, where, model_input.name, CalibrationError)
        is_pixels = array.dtype == np.uint8
        pixels.append(is_pixels)
        fitted[model_input.name] = preprocessing.apply(array) if is_pixels else array.astype(np.float32)
    values = ("pixels, preprocessed" if all(pixels) else "model inputs, fed as is" if not any(pixels)
              else "pixels (uint8 inputs, preprocessed) and model inputs (float inputs, as is)")
    return SampleSet(fitted, {"source": origin, "available": len(next(iter(fitted.values()))), "values": values,
                              **(extra or {})})


def image_folder_source(folder: Path, inputs: list[ModelInput], preprocessing: Preprocessing,
                        limit: int, seed: int, progress=None) -> SampleSet:
    """Up to `limit` images from a folder (recursive), in a seeded random order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder '{folder}' does not exist; check the path")
    if len(inputs) != 1:
        raise CalibrationError(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                               "an image folder feeds one; give an .npz with one array per input name")
    model_input = inputs[0]
    if not model_input.is_image:
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
    return sample_set({model_input.name: decoded.pixels}, inputs, preprocessing, f"image folder {folder}",
                      extra={"files_seen": len(files), "skipped": decoded.skipped})


def array_file_source(path: Path, inputs: list[ModelInput], preprocessing: Preprocessing) -> SampleSet:
    """A .npy array (one input), or an .npz: one array per input name ('x' or the only array for one input)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file '{path}' does not exist; check the path")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CalibrationError(f"cannot read calibration file '{path}': {exc}; save it with numpy.save/savez") from None
    names = [i.name for i in inputs]
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if len(inputs) == 1:
                key = next((k for k in (names[0], "x") if k in keys), keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise CalibrationError(f"{path} holds arrays {keys}; name the samples 'x' or '{names[0]}'")
                arrays = {names[0]: loaded[key]}
            else:
                match_input_names(dict.fromkeys(keys), names, str(path.name), CalibrationError)
                arrays = {k: loaded[k] for k in keys}
    else:
        if len(inputs) != 1:
            raise CalibrationError(f"{path} holds one array but the model has {len(inputs)} inputs; "
                                   f"save an .npz with one array per input ({', '.join(names)})")
        arrays = {names[0]: loaded}
    return sample_set(arrays, inputs, preprocessing, f"{path.name}")


def iterable_source(items: Iterable, inputs: list[ModelInput], preprocessing: Preprocessing,
                    limit: int) -> SampleSet:
    """Any Python iterable of arrays (one input) or of `{input_name: array}`, with or without a batch axis."""
    names = [i.name for i in inputs]
    collected: dict[str, list[np.ndarray]] = {name: [] for name in names}
    count = 0
    for item in items:
        if not isinstance(item, Mapping):
            if len(inputs) != 1:
                raise CalibrationError(f"the model has {len(inputs)} inputs; yield dicts keyed by input name "
                                       f"({', '.join(names)})")
            item = {names[0]: item}
        elif len(inputs) == 1 and names[0] not in item and len(item) == 1:
            item = {names[0]: next(iter(item.values()))}
        match_input_names(item, names, "a calibration sample", CalibrationError)
        batched = None
        for model_input in inputs:
            array = np.asarray(item[model_input.name])
            parts = list(array) if array.ndim == len(model_input.shape) + 1 else [array]
            batched = len(parts) if batched is None else batched
            collected[model_input.name].extend(parts)
        count += batched or 0
        if count >= limit:
            break
    if not count:
        raise CalibrationError("the calibration iterable yielded no samples")
    arrays = {}
    for name, parts in collected.items():
        shapes = {np.shape(p) for p in parts}
        if len(shapes) != 1:
            raise CalibrationError(f"calibration samples for '{name}' have different shapes {sorted(shapes)}; "
                                   "make them equal")
        arrays[name] = np.stack(parts[:limit])
    return sample_set(arrays, inputs, preprocessing, "python iterable")


def random_source(inputs: list[ModelInput], preprocessing: Preprocessing, count: int, seed: int) -> SampleSet:
    """Uniform random pixels, preprocessed: only for conversion smoke tests, never for accuracy."""
    rng = np.random.default_rng(seed)
    arrays = {i.name: rng.integers(0, 256, size=(count, *i.shape), dtype=np.uint8) for i in inputs}
    return sample_set(arrays, inputs, preprocessing, "random")
