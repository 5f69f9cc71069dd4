"""The one reader of sample data: image folders, .npy/.npz files, arrays and Python iterables.

    source = read_source("photos/", "--data", labels=report.labels)
    samples = source.samples([ModelInput("image", (224, 224, 3))], preprocessing)

Calibration data (`convert -c`), evaluation data (`profile --data`) and an accuracy budget's
data (`convert --eval-data`) are read here, and nowhere else. A `DataSource` is the data as the
user gave it: image files or arrays, labels, what was skipped. `samples()` turns it into the
model inputs of one model (`edgeact.data.samples.Samples`): decoded at the model's input size
(cached per size, so several models share one folder), fitted and checked by the rules of
`edgeact.data.arrays`, pixels preprocessed. Every message names the caller's option.

Folders: with `classes` (evaluation data), each subfolder is a class (images found recursively
inside it) and the labels are the class indices, in the order of the model's labels when it has
some (every folder name must be one of them), else the sorted folder names; a folder without
subfolders holds unlabelled images. Without `classes` (calibration), every image below the folder
is a sample. Arrays: an .npy (one input), or an .npz with `x` (or one array per input name) and
optionally `y`, the labels (class indices or one-hot).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from edgeact.errors import InputError

from .arrays import check_dtype, check_finite, fit_samples, match_input_names, same_length
from .images import IMAGE_SUFFIXES, decode_images, list_files
from .preprocess import Preprocessing
from .samples import ModelInput, Samples

LABELS_KEY = "y"
SAMPLES_KEY = "x"


@dataclass
class DataSource:
    """Sample data as the user gave it: image files or arrays, and their labels.

    `arrays` is keyed by input name; the key None holds the samples of a model's only input
    (an .npy, a plain array, an .npz's `x`).
    """

    option: str  # the caller's option, for messages ("--data", "--eval-data", "--calibration")
    origin: str  # what the data is, for messages and reports ("image folder photos", "eval.npz")
    files: list[Path] = field(default_factory=list)
    arrays: dict[str | None, np.ndarray] | None = None
    labels: np.ndarray | None = None  # (N,) int64
    class_names: list[str] | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    files_seen: int | None = None
    error: type[InputError] = InputError
    file: Path | None = None  # the .npy/.npz the arrays are memory-mapped from, if any
    _decoded: dict = field(default_factory=dict, repr=False)

    @property
    def is_folder(self) -> bool:
        return self.arrays is None

    @property
    def pixels(self) -> bool:
        """Whether some of the values are 0..255 pixels that need the model's preprocessing."""
        return self.is_folder or any(a.dtype == np.uint8 for a in self.arrays.values())

    @property
    def where(self) -> str:
        return f"{self.option} {self.origin}"

    def __len__(self) -> int:
        if self.is_folder:
            return len(self.files)
        return len(next(iter(self.arrays.values())))

    def take(self, index) -> "DataSource":
        """The samples at `index` (an index array or slice), labels with them."""
        labels = None if self.labels is None else self.labels[index]
        if self.is_folder:
            picked = np.arange(len(self.files))[index]
            return replace(self, files=[self.files[i] for i in picked], labels=labels, _decoded={})
        return replace(self, arrays={k: a[index] for k, a in self.arrays.items()}, labels=labels, _decoded={},
                       file=None)

    def iter_chunks(self, inputs: list[ModelInput], preprocessing: Preprocessing | None,
                    chunk_size: int = 256, **kwargs):
        """The model inputs in chunks of `chunk_size`, in index order, in bounded memory
        (`edgeact.data.stream.iter_chunks`)."""
        from .stream import iter_chunks

        return iter_chunks(self, inputs, preprocessing, chunk_size, **kwargs)

    def subset(self, limit: int | None, seed: int = 0) -> "DataSource":
        """At most `limit` samples, chosen at random with `seed`, kept in their order."""
        if limit is None or limit >= len(self):
            return self
        return self.take(np.sort(np.random.default_rng(seed).choice(len(self), size=limit, replace=False)))

    def check(self, inputs: list[ModelInput], decode: bool = False) -> None:
        """Refuse, before anything is measured, data that cannot feed these inputs (array shapes and
        names; with `decode`, a folder's images are decoded now, at the model's size, and kept)."""
        if self.is_folder:
            shape = self._image_input(inputs).shape
            if decode:
                self._decode(shape, None, False, None)
        else:
            self._fitted(inputs)

    def samples(self, inputs: list[ModelInput], preprocessing: Preprocessing | None, *, count: int | None = None,
                skip_unreadable: bool = False, progress=None) -> Samples:
        """The model inputs (float32, by input name) and labels for a model with these inputs.

        Args:
            count: at most this many samples (the first ones).
            skip_unreadable: images Pillow cannot read are skipped and counted (calibration);
                otherwise they are an error (evaluation: a skipped image would shift the labels).
        """
        self.check(inputs)
        if self.pixels and preprocessing is None:
            raise self.error(f"{self.where} holds pixels but no preprocessing is known for the model; pass "
                             "--preprocess (and --mean/--std) as used in training and calibration")
        if self.is_folder:
            decoded, used = self._decode(self._image_input(inputs).shape, count, skip_unreadable, progress)
            raw = {inputs[0].name: decoded}
            labels = None if self.labels is None else self.labels[used]
        else:
            raw = {name: a[:count] for name, a in self._fitted(inputs).items()}
            labels = None if self.labels is None else self.labels[:count]
        arrays = {}
        for model_input in inputs:
            array = raw[model_input.name]
            arrays[model_input.name] = preprocessing.apply(array) if array.dtype == np.uint8 else array
        summary = {**self.summary(), "samples": len(next(iter(arrays.values())))}
        return Samples(arrays, labels, summary, self.error)

    def check_classes(self, num_classes: int, model: str) -> None:
        """Labels must index the model's class-score output."""
        if self.labels is None:
            return
        if self.class_names is not None and len(self.class_names) != num_classes:
            raise self.error(
                f"{self.where} has {len(self.class_names)} class folders but {model} outputs {num_classes} "
                "classes; give one subfolder per class (named like the model's labels)")
        if len(self.labels) and int(self.labels.max()) >= num_classes:
            raise self.error(f"{self.where} has label {int(self.labels.max())} but {model} outputs "
                             f"{num_classes} classes (labels 0..{num_classes - 1})")

    def summary(self) -> dict:
        kinds = [True] if self.is_folder else [a.dtype == np.uint8 for a in self.arrays.values()]
        values = ("pixels, preprocessed" if all(kinds) else "model inputs, fed as is" if not any(kinds)
                  else "pixels (uint8 inputs, preprocessed) and model inputs (float inputs, as is)")
        out = {"source": self.origin, "samples": len(self), "labelled": self.labels is not None,
               "classes": self.class_names, "values": values, "skipped": dict(self.skipped)}
        if self.files_seen is not None:
            out["files_seen"] = self.files_seen
        return out

    # -- helpers ------------------------------------------------------------------------------
    def _image_input(self, inputs: list[ModelInput]) -> ModelInput:
        return image_input(inputs, self.option, self.where, self.error)

    def _fitted(self, inputs: list[ModelInput]) -> dict[str, np.ndarray]:
        """The arrays bound to the model's input names, each (N, *shape), checked."""
        names = [i.name for i in inputs]
        arrays = self.arrays
        if len(inputs) == 1:
            key = next((k for k in (names[0], None, SAMPLES_KEY) if k in arrays),
                       next(iter(arrays)) if len(arrays) == 1 else "")
            if key == "":
                raise self.error(f"{self.where} holds arrays {sorted(arrays)}; name the samples "
                                 f"'{SAMPLES_KEY}' or '{names[0]}'")
            bound = {names[0]: arrays[key]}
        else:
            if None in arrays or (SAMPLES_KEY in arrays and SAMPLES_KEY not in names):
                raise self.error(f"the model has {len(inputs)} inputs ({', '.join(names)}) but {self.where} holds "
                                 "one array; save an .npz with one array per input name (and y for labels)")
            match_input_names(arrays, names, self.where, self.error)
            bound = {name: arrays[name] for name in names}
        fitted = {}
        for model_input in inputs:
            where = self.where if len(inputs) == 1 else f"{self.where} ['{model_input.name}']"
            # Values were checked when the arrays were read (_arrays_source): no second pass over a big file.
            fitted[model_input.name] = fit_samples(bound[model_input.name], model_input.shape, where,
                                                   model_input.name, self.error, check_values=False)
        return fitted

    def _decode(self, shape: tuple[int, ...], count: int | None, skip_unreadable: bool, progress):
        key = (tuple(shape), count, skip_unreadable)
        if key not in self._decoded:
            decoded = decode_images(self.files, *shape, limit=count, progress=progress)
            if not skip_unreadable and len(decoded.pixels) < min(len(self.files), count or len(self.files)):
                raise self.error(f"{self.where}: {decoded.skipped_text()} of {len(self.files)} image files could "
                                 "not be decoded; remove them or convert them to JPEG/PNG")
            if len(decoded.pixels) == 0:
                skipped = dict(self.skipped)
                for why, n in decoded.skipped.items():
                    skipped[why] = skipped.get(why, 0) + n
                raise self.error(f"{self.where} holds no readable images ({self.files_seen or len(self.files)} "
                                 f"files, skipped: {_skipped_text(skipped)}); add JPEG or PNG images")
            index = {path: i for i, path in enumerate(self.files)}
            used = np.asarray([index[p] for p in decoded.files], dtype=np.int64)
            for why, n in decoded.skipped.items():
                self.skipped[why] = self.skipped.get(why, 0) + n
            self._decoded[key] = (decoded.pixels, used)
        return self._decoded[key]


def image_input(inputs: list[ModelInput], option: str, where: str, error: type[InputError]) -> ModelInput:
    """The one image input an image folder can feed; `error` for several inputs or a non-image one."""
    if len(inputs) != 1:
        raise error(f"the model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); an image folder "
                    f"feeds one ({where}); give an .npz with one array per input name")
    if not inputs[0].is_image:
        raise error(f"model input '{inputs[0].name}' has shape {inputs[0].shape}, not an image (H, W, 1 or 3); "
                    f"give {option} as an .npy/.npz of that shape")
    return inputs[0]


def read_source(spec: Any, option: str, *, labels: list[str] | None = None, classes: bool = True,
                limit: int | None = None, inputs: list[ModelInput] | None = None,
                error: type[InputError] = InputError) -> DataSource:
    """Open sample data the user gave as `option`.

    Args:
        spec: a folder, an .npy/.npz path, a DataSource opened before, an array, a dict of arrays
            keyed by input name (and `y`), or an iterable of samples (arrays, or dicts keyed by input name).
        labels: the model's class labels, which fix the class order of class folders.
        classes: subfolders are classes (evaluation); else every image below is a sample.
        limit: read at most this many samples of an iterable.
        inputs: the model's inputs, when known: an iterable's items with one axis more are batches.
        error: the InputError subclass raised (CalibrationError for calibration data).
    """
    if isinstance(spec, DataSource):  # opened earlier (before the model loaded): check it fits now
        if spec.is_folder and inputs is not None:
            image_input(inputs, option, spec.where, error)
        return spec
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if path.is_dir():
            if inputs is not None:  # the model cannot take a folder: say so before listing it
                image_input(inputs, option, f"{option} {path}", error)
            return _read_folder(path, option, labels, classes, error)
        hint = "a folder of class subfolders or an .npz with x and y" if classes else "an image folder, .npy or .npz"
        if not path.exists():
            raise error(f"{option} {path} does not exist; give {hint}")
        if path.suffix.lower() in (".npy", ".npz"):
            return _read_array_file(path, option, error)
        raise error(f"{option} {path} is neither a folder nor an .npy/.npz file; give {hint}")
    if isinstance(spec, np.ndarray):
        return _arrays_source({None: spec}, None, option, "array", error)
    if isinstance(spec, Mapping) and spec and all(isinstance(v, np.ndarray) for v in spec.values()):
        arrays = {k: v for k, v in spec.items() if k != LABELS_KEY}
        return _arrays_source(arrays, spec.get(LABELS_KEY), option, "arrays", error)
    try:
        iterator = iter(spec)
    except TypeError:
        raise error(f"{option}: data of type {type(spec).__name__} is not a folder, file, array or "
                    "iterable") from None
    return _read_iterable(iterator, option, limit, inputs, error)


def _read_folder(folder: Path, option: str, labels: list[str] | None, classes: bool,
                 error: type[InputError]) -> DataSource:
    subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    skipped: dict[str, int] = {}
    origin = f"image folder {folder}"
    if not classes or not subfolders:
        seen = list_files(folder, recursive=not classes)
        files = _images(seen, skipped)
        if not files:
            raise error(f"{option} {origin} holds no images ({len(seen)} files, skipped: "
                        f"{_skipped_text(skipped)}); add JPEG or PNG images"
                        + ("" if not classes else ", one subfolder of images per class"))
        return DataSource(option, origin, files=files, skipped=skipped, files_seen=len(seen), error=error)
    if labels:
        unknown = [c for c in subfolders if c not in labels]
        if unknown:
            raise error(f"class folders {unknown[:5]} in {folder} are not among the model's labels "
                        f"{list(labels)[:10]}; name the folders like the labels in the model's report")
        order = list(labels)
    else:
        order = subfolders
    outside = _images(list_files(folder, recursive=False), {})
    if outside:
        skipped["outside the class folders"] = len(outside)
    files, targets, seen = [], [], len(outside)
    for name in subfolders:
        listed = list_files(folder / name)
        seen += len(listed)
        found = _images(listed, skipped)
        files.extend(found)
        targets.extend([order.index(name)] * len(found))
    if not files:
        raise error(f"{option} {origin}: the class folders hold no images; add JPEG or PNG images to them")
    return DataSource(option, origin, files=files, labels=np.asarray(targets, dtype=np.int64), class_names=order,
                      skipped=skipped, files_seen=seen, error=error)


def _read_array_file(path: Path, option: str, error: type[InputError]) -> DataSource:
    """An .npy (memory-mapped) or .npz (members stored uncompressed memory-mapped, compressed ones read)."""
    try:
        if path.suffix.lower() == ".npy" or not zipfile.is_zipfile(path):
            loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            loaded = _open_npz(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise error(f"cannot read {option} {path}: {exc}; save it with numpy.save or "
                    "numpy.savez(path, x=..., y=...)") from None
    if isinstance(loaded, dict):
        arrays = {k: v for k, v in loaded.items() if k != LABELS_KEY}
        y = loaded.get(LABELS_KEY)
        if not arrays:
            raise error(f"{option} {path} holds no samples, only {LABELS_KEY}; save the samples as x")
    else:
        arrays, y = {None: loaded}, None
    source = _arrays_source(arrays, None if y is None else np.asarray(y), option, path.name, error)
    source.file = path
    return source


def _open_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz: members numpy.savez stored uncompressed are memory-mapped (read a chunk
    at a time), compressed ones (numpy.savez_compressed) are read whole."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        for info in archive.infolist():
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
                continue
            handle.seek(info.header_offset)
            local = handle.read(30)  # the local file header: its name and extra field lengths at 26 and 28
            name_length, extra_length = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
            handle.seek(info.header_offset + 30 + name_length + extra_length)
            version = np.lib.format.read_magic(handle)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(handle) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(handle))
            if dtype.hasobject:
                raise ValueError(f"array '{name}' holds Python objects")
            if 0 in shape or not shape:
                arrays[name] = np.lib.format.read_array(archive.open(info), allow_pickle=False)
                continue
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=handle.tell(), shape=shape,
                                     order="F" if fortran else "C")
    return arrays


def _arrays_source(arrays: dict, y, option: str, origin: str, error: type[InputError]) -> DataSource:
    where = f"{option} {origin}"
    for key, array in arrays.items():
        part = where if key in (None, SAMPLES_KEY) or len(arrays) == 1 else f"{where} ['{key}']"
        if array.ndim < 1 or len(array) == 0:
            raise error(f"{part} holds no samples (shape {array.shape}); give samples as (N, ...)")
        check_dtype(array, part, error)
        check_finite(array, part, error)
    n = same_length({str(k): a for k, a in arrays.items()}, where, error)
    labels = None if y is None else _integer_labels(np.asarray(y), n, where, error)
    return DataSource(option, origin, arrays=dict(arrays), labels=labels, error=error)


def _read_iterable(items: Iterable, option: str, limit: int | None, inputs: list[ModelInput] | None,
                   error: type[InputError]) -> DataSource:
    """Samples from a Python iterable of arrays or `{input_name: array}`, each one sample or a batch.

    An item is a batch when it has one axis more than the input it feeds (`inputs`, when the
    caller knows the model); `limit` counts samples, not items.
    """
    shapes = {i.name: tuple(i.shape) for i in inputs or []}
    only = next(iter(shapes)) if len(shapes) == 1 else None
    collected: dict[str | None, list[np.ndarray]] = {}
    count = 0
    for item in items:
        item = dict(item) if isinstance(item, Mapping) else {None: item}
        if collected and set(item) != set(collected):
            raise error(f"{option}: a sample has inputs {sorted(map(str, item))} where the first had "
                        f"{sorted(map(str, collected))}; yield the same inputs every time")
        batch = None
        for key, value in item.items():
            array = np.asarray(value)
            shape = shapes.get(key if key in shapes else only)
            parts = list(array) if shape is not None and array.ndim == len(shape) + 1 else [array]
            batch = len(parts) if batch is None else batch
            collected.setdefault(key, []).extend(parts)
        count += batch or 0
        if limit is not None and count >= limit:
            break
    if not count:
        raise error(f"{option}: the iterable yielded no samples")
    arrays = {}
    for key, parts in collected.items():
        sizes = {p.shape for p in parts}
        if len(sizes) != 1:
            raise error(f"{option}: samples for '{key or 'the input'}' have different shapes {sorted(sizes)}; "
                        "make them equal")
        arrays[key] = np.stack(parts[:limit])
    return _arrays_source(arrays, None, option, "python iterable", error)


def _integer_labels(y: np.ndarray, n: int, where: str, error: type[InputError]) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        y = np.argmax(y, axis=1)
    y = y.reshape(-1)
    if len(y) != n:
        raise error(f"{where}: y has {len(y)} labels for {n} samples; give one label per sample")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise error(f"{where}: y must hold class indices 0..K-1 (got dtype {y.dtype}); convert class names to "
                    "indices")
    return y.astype(np.int64)


def _images(files: list[Path], skipped: dict[str, int]) -> list[Path]:
    """Files with an image suffix; the others are counted as skipped, not decoded."""
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    if len(images) < len(files):
        skipped["not an image"] = skipped.get("not an image", 0) + len(files) - len(images)
    return images


def _skipped_text(skipped: dict[str, int]) -> str:
    return ", ".join(f"{n} {why}" for why, n in skipped.items()) or "none"
