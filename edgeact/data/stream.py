"""Sample data in chunks: bounded memory, decoded in parallel with whoever consumes the chunks.

    for chunk in iter_chunks(source, inputs, preprocessing, chunk_size=64):
        run(chunk.arrays); keep(chunk.labels)

A `DataSource` of any size is read one chunk at a time, in a deterministic order (index
ranges `[k * chunk_size, (k + 1) * chunk_size)`), so memory depends on the chunk and the
model, never on the number of samples. Image folders are decoded by a thread pool (Pillow
releases the GIL while it decodes and resizes) up to `prefetch` chunks ahead of the consumer:
while chunk k runs through a model, chunks k+1.. are being decoded. Arrays (.npy, an
uncompressed .npz: memory-mapped by `edgeact.data.source`) are sliced per chunk.

`chunks` picks which chunk indices to read (a shard of a device, or the chunks a resumed run
has not finished); `fingerprint` says what the data is (file names and sizes, labels,
preprocessing), for a resumed run to refuse other data.
"""
from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from .preprocess import Preprocessing
from .samples import ModelInput

if TYPE_CHECKING:
    from .source import DataSource

# 64 ImageNet-sized images are 38 MB as float32: a few chunks in flight fit a Raspberry Pi.
DEFAULT_CHUNK = 64


@dataclass
class Chunk:
    """Samples `[start, start + len)` of a source: float32 model inputs by input name, and labels."""

    index: int
    start: int
    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def array(self) -> np.ndarray:
        """The samples of the only input."""
        (array,) = self.arrays.values()
        return array


def chunk_ranges(total: int, chunk_size: int) -> list[tuple[int, int]]:
    """`(start, stop)` of every chunk of `total` samples, in order."""
    size = max(1, int(chunk_size))
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def decode_workers() -> int:
    """Decoding threads: the cores there are (Pillow decodes without the GIL), at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def iter_chunks(source: "DataSource", inputs: list[ModelInput], preprocessing: Preprocessing | None,
                chunk_size: int = DEFAULT_CHUNK, *, chunks: Iterable[int] | None = None, workers: int | None = None,
                prefetch: int = 2) -> Iterator[Chunk]:
    """The source's samples as model inputs, one chunk at a time, in index order.

    Args:
        chunks: the chunk indices to read (ascending); None: all of them.
        workers: decoding threads for image folders (default `decode_workers()`).
        prefetch: chunks decoded ahead of the one being consumed.
    Raises:
        the source's error (InputError or a subclass) for data that cannot feed the inputs, an
        unreadable image (a skipped image would shift the labels), or pixels without preprocessing.
    """
    source.check(inputs)
    if source.pixels and preprocessing is None:
        raise source.error(f"{source.where} holds pixels but no preprocessing is known for the model; pass "
                           "--preprocess (and --mean/--std) as used in training and calibration")
    ranges = chunk_ranges(len(source), chunk_size)
    wanted = list(range(len(ranges))) if chunks is None else [int(k) for k in chunks]
    if source.is_folder:
        shape = source._image_input(inputs).shape
        name = inputs[0].name
        pool = ThreadPoolExecutor(max_workers=workers or decode_workers(), thread_name_prefix="edgeact-decode")

        def submit(k):
            start, stop = ranges[k]
            return [pool.submit(_decode_one, source, i, shape) for i in range(start, stop)]

        def finish(k, futures):
            pixels = np.stack([f.result() for f in futures])
            return {name: preprocessing.apply(pixels)}
    else:
        fitted = source._fitted(inputs)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeact-slice")

        def submit(k):
            start, stop = ranges[k]
            return pool.submit(_slice, fitted, start, stop, preprocessing)

        def finish(k, future):
            return future.result()
    pending: deque = deque()
    queue = iter(wanted)
    try:
        for k in queue:
            pending.append((k, submit(k)))
            if len(pending) > prefetch:
                break
        while pending:
            k, work = pending.popleft()
            following = next(queue, None)
            if following is not None:
                pending.append((following, submit(following)))
            start, stop = ranges[k]
            labels = None if source.labels is None else np.asarray(source.labels[start:stop])
            yield Chunk(k, start, finish(k, work), labels)
    finally:
        for _, work in pending:
            for future in (work if isinstance(work, list) else [work]):
                future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _decode_one(source: "DataSource", i: int, shape: tuple[int, ...]) -> np.ndarray:
    from .images import decode_image

    path = source.files[i]
    try:
        return decode_image(path, *shape)
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, DecompressionBombError ...
        raise source.error(f"{source.where}: image {path} could not be decoded ({type(exc).__name__}); "
                           "remove it or convert it to JPEG/PNG") from None


def _slice(fitted: dict[str, np.ndarray], start: int, stop: int,
           preprocessing: Preprocessing | None) -> dict[str, np.ndarray]:
    out = {}
    for name, array in fitted.items():
        part = np.asarray(array[start:stop])  # reads only these rows of a memory-mapped file
        out[name] = preprocessing.apply(part) if part.dtype == np.uint8 else np.ascontiguousarray(part, np.float32)
    return out


def fingerprint(source: "DataSource", preprocessing: Preprocessing | None = None) -> str:
    """A digest of what the data is: its files' names and sizes (or the arrays' bytes), labels, preprocessing."""
    digest = hashlib.sha256()
    digest.update(f"{source.origin}\n{len(source)}\n".encode())
    if source.is_folder:
        root = _common_root(source.files)
        for path in source.files:
            digest.update(f"{path.relative_to(root) if root else path}\t{path.stat().st_size}\n".encode())
    elif source.file is not None:  # memory-mapped: the file's name, size and time, not 30 GB of reading
        stat = source.file.stat()
        digest.update(f"{source.file.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    else:
        for key in sorted(source.arrays, key=str):
            array = source.arrays[key]
            digest.update(f"{key}\t{array.dtype}\t{array.shape}\n".encode())
            step = max(1, (1 << 24) // max(1, array[:1].nbytes))
            for start in range(0, len(array), step):
                digest.update(np.ascontiguousarray(array[start:start + step]).tobytes())
    if source.labels is not None:
        digest.update(np.ascontiguousarray(source.labels, dtype=np.int64).tobytes())
    if preprocessing is not None:
        digest.update(repr(preprocessing.to_dict() | {"description": ""}).encode())
    return digest.hexdigest()


def _common_root(files: list[Path]) -> Path | None:
    try:
        return Path(os.path.commonpath([str(p.parent) for p in files])) if files else None
    except ValueError:
        return None
