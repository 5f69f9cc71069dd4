"""Evaluation data for `profile`: a folder of class subfolders, or an .npz with `x` (and `y`).

The same pixel rule as calibration: images and uint8 arrays are pixels (0..255) and get
the model's preprocessing; float arrays are model inputs and are fed as they are.
The data path is vectorised: images are decoded by a thread pool in chunks, preprocessed
as one array, and (in the profiler) quantized once.

Class order: the labels stored in the model's report when there are some (folder names
must be among them), else the sorted folder names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeact.errors import InputError

from .arrays import fit_samples
from .images import IMAGE_SUFFIXES, decode_images, list_files
from .preprocess import Preprocessing


@dataclass
class EvalData:
    """Samples and (optionally) integer labels, decoded lazily for each input size."""

    source: str
    labels: np.ndarray | None  # (N,) int64, in the order of `class_names` (or the model's outputs)
    class_names: list[str] | None
    pixels: bool  # True: 0..255 values that need preprocessing; False: model inputs
    _array: np.ndarray | None = None  # .npz/.npy data (N, ...)
    _named: dict | None = None  # .npz data for a model with several inputs: one array per input name
    _files: list[Path] = field(default_factory=list)  # image folders: one file per sample
    _decoded: dict = field(default_factory=dict)
    skipped: dict = field(default_factory=dict)

    @property
    def is_folder(self) -> bool:
        """Images decoded from files (resized to each model), rather than arrays of a fixed shape."""
        return bool(self._files)

    def __len__(self) -> int:
        if self._named is not None:
            return len(next(iter(self._named.values())))
        return len(self._files) if self._files else len(self._array)

    def named_inputs(self, shapes: dict[str, tuple[int, ...]], preprocessing: Preprocessing | None) -> dict:
        """Float32 model inputs by input name for a several-input model (uint8 arrays preprocessed)."""
        from .arrays import match_input_names

        if self._named is None:
            raise InputError(f"the model has {len(shapes)} inputs ({', '.join(shapes)}) but {self.source} holds one "
                             "array; save an .npz with one array per input name (and y)")
        match_input_names(self._named, list(shapes), self.source)
        fitted = {}
        for name, shape in shapes.items():
            array = fit_samples(self._named[name], shape, f"{self.source} ['{name}']", name)
            if array.dtype == np.uint8:
                if preprocessing is None:
                    raise InputError(f"{self.source} ['{name}'] holds pixels but no preprocessing is known; "
                                     "pass --preprocess as used in training")
                fitted[name] = preprocessing.apply(array)
            else:
                fitted[name] = np.ascontiguousarray(array, dtype=np.float32)
        return fitted

    def samples(self, shape: tuple[int, ...], progress=None) -> np.ndarray:
        """The raw samples (N, *shape): decoded at `shape` for folders, checked against it for arrays."""
        shape = tuple(int(d) for d in shape)
        if self._files:
            if shape not in self._decoded:
                self._decoded[shape] = self._decode(shape, progress)
            return self._decoded[shape]
        if self._array is None:
            raise InputError(f"{self.source} holds one array per input name ({', '.join(self._named or {})}), but "
                             "the model takes one input; give x (and y)")
        return fit_samples(self._array, shape, self.source)

    def model_inputs(self, shape: tuple[int, ...], preprocessing: Preprocessing | None, progress=None) -> np.ndarray:
        """Float32 model inputs (N, *shape): pixels preprocessed as one array, floats as they are."""
        raw = self.samples(shape, progress)
        if not self.pixels:
            return np.ascontiguousarray(raw, dtype=np.float32)
        if preprocessing is None:
            raise InputError(f"{self.source} holds pixels but no preprocessing is known for the model; "
                             "pass --preprocess (and --mean/--std), as used for training and calibration")
        return preprocessing.apply(raw)

    def _decode(self, shape: tuple[int, ...], progress) -> np.ndarray:
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise InputError(f"the model takes input of shape {shape}, not an image (H, W, 1 or 3); "
                             "give --data as an .npz with x of that shape")
        decoded = decode_images(self._files, *shape, progress=progress)
        if len(decoded.pixels) != len(self._files):
            raise InputError(f"{self.source}: {decoded.skipped_text()} of {len(self._files)} image files could "
                             "not be decoded; remove them or convert them to JPEG/PNG")
        return decoded.pixels

    def check_classes(self, num_classes: int, model: str) -> None:
        """Labels must index the model's class-score output."""
        if self.labels is None:
            return
        if self.class_names is not None and len(self.class_names) != num_classes:
            raise InputError(
                f"{self.source} has {len(self.class_names)} class folders but {model} outputs {num_classes} "
                "classes; give one subfolder per class (named like the model's labels)")
        if len(self.labels) and int(self.labels.max()) >= num_classes:
            raise InputError(f"{self.source} has label {int(self.labels.max())} but {model} outputs "
                             f"{num_classes} classes (labels 0..{num_classes - 1})")

    def summary(self) -> dict:
        return {"source": self.source, "samples": len(self), "labelled": self.labels is not None,
                "classes": self.class_names, "values": "pixels, preprocessed" if self.pixels else
                "model inputs, fed as is", "skipped": self.skipped}


def read_eval_data(source: str | Path, labels: list[str] | None = None, limit: int | None = None,
                   seed: int = 0) -> EvalData:
    """An .npz/.npy file or a folder (of class subfolders, or of unlabelled images).

    Args:
        labels: the model's class labels (from its report), which fix the class order.
        limit: use at most this many samples, chosen at random with `seed` when fewer.
    """
    path = Path(source)
    if path.is_dir():
        return _read_folder(path, labels, limit, seed)
    if path.is_file() and path.suffix.lower() in (".npz", ".npy"):
        return _read_arrays(path, limit, seed)
    if not path.exists():
        raise InputError(f"--data {path} does not exist; give a folder of class subfolders or an .npz with x and y")
    raise InputError(f"--data {path} is neither a folder nor an .npz/.npy file")


def _subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _read_arrays(path: Path, limit: int | None, seed: int) -> EvalData:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read --data {path}: {exc}; save it with numpy.savez(path, x=..., y=...)") from None
    y = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            inputs = [k for k in loaded.files if k != "y"]
            y = loaded["y"] if "y" in loaded.files else None
            if "x" not in loaded.files and len(inputs) > 1:
                return _read_named(path, {k: loaded[k] for k in inputs}, y, limit, seed)
            if "x" not in loaded.files:
                raise InputError(f"{path} holds arrays {loaded.files}; name the samples 'x' and the labels 'y' "
                                 "(or one array per input name for a model with several inputs)")
            x = loaded["x"]
    else:
        x = loaded
    if x.ndim < 2 or len(x) == 0:
        raise InputError(f"{path}: x has shape {x.shape}; give samples as (N, H, W, C)")
    if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
        raise InputError(f"{path}: x has dtype {x.dtype}; give uint8 pixels or float32 model inputs")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise InputError(f"{path}: x contains NaN or infinite values; clean the data first")
    if y is not None:
        y = _integer_labels(y, len(x), path)
    keep = _subset(len(x), limit, seed)
    return EvalData(source=path.name, labels=None if y is None else y[keep], class_names=None,
                    pixels=x.dtype == np.uint8, _array=x[keep])


def _read_named(path: Path, arrays: dict, y, limit: int | None, seed: int) -> EvalData:
    from .arrays import check_dtype, check_finite, same_length

    n = same_length(arrays, str(path))
    for name, array in arrays.items():
        check_dtype(array, f"{path} ['{name}']")
        check_finite(array, f"{path} ['{name}']")
    if y is not None:
        y = _integer_labels(y, n, path)
    keep = _subset(n, limit, seed)
    return EvalData(source=path.name, labels=None if y is None else y[keep], class_names=None,
                    pixels=any(a.dtype == np.uint8 for a in arrays.values()),
                    _named={k: a[keep] for k, a in arrays.items()})


def _integer_labels(y: np.ndarray, n: int, path: Path) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = np.argmax(y, axis=1)
    y = y.reshape(-1)
    if len(y) != n:
        raise InputError(f"{path}: y has {len(y)} labels for {n} samples; give one label per sample")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise InputError(f"{path}: y must hold class indices 0..K-1 (got dtype {y.dtype}); "
                         "convert class names to indices")
    return y.astype(np.int64)


def _read_folder(folder: Path, labels: list[str] | None, limit: int | None, seed: int) -> EvalData:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    skipped: dict[str, int] = {}
    if not classes:
        files = _images(list_files(folder, recursive=False), skipped)
        if not files:
            raise InputError(f"--data folder {folder} holds no images; give one subfolder of images per class")
        keep = _subset(len(files), limit, seed)
        return EvalData(source=f"folder {folder}", labels=None, class_names=None, pixels=True,
                        _files=[files[i] for i in keep], skipped=skipped)
    if labels:
        unknown = [c for c in classes if c not in labels]
        if unknown:
            raise InputError(f"class folders {unknown[:5]} in {folder} are not among the model's labels "
                             f"{labels[:10]}; name the folders like the labels in the model's report")
        order = list(labels)
    else:
        order = classes
    files, targets = [], []
    for name in classes:
        found = _images(list_files(folder / name), skipped)
        files.extend(found)
        targets.extend([order.index(name)] * len(found))
    if not files:
        raise InputError(f"the class folders in {folder} hold no images; add JPEG or PNG images to them")
    keep = _subset(len(files), limit, seed)
    return EvalData(source=f"folder {folder}", labels=np.asarray(targets, dtype=np.int64)[keep],
                    class_names=order, pixels=True, _files=[files[i] for i in keep], skipped=skipped)


def _images(files: list[Path], skipped: dict[str, int]) -> list[Path]:
    """Files with an image suffix; the others are counted as skipped, not decoded."""
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    if len(images) < len(files):
        skipped["not an image"] = skipped.get("not an image", 0) + len(files) - len(images)
    return images
