"""The one container of sample data: model inputs by input name, optional labels, a summary.

Calibration samples, held-out samples, profile's evaluation data and an accuracy budget's
evaluation data are the same thing read for different purposes, so they are one class.
`edgeact.data.source` reads any user data into it; the adapters of each consumer
(`calibration.adapters` for TFLite's `representative_dataset` and ORT's reader, the runners'
`predict`, the profiler) read it by input name, never by position.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np

from edgeact.errors import InputError

from .arrays import same_length


@dataclass(frozen=True)
class ModelInput:
    """A model input samples must fit: its name and shape without the batch axis."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3 and self.shape[-1] in (1, 3)


class Samples:
    """Model inputs in memory: one float32 array (N, *shape) per input name, in the model's input
    order, with integer labels (N,) when the data has them, and a summary for reports.

    Iterating gives one sample at a time as `{input_name: (1, *shape) array}`, the protocol
    ONNX Runtime's `CalibrationDataReader` and TFLite's `representative_dataset` share.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], labels: np.ndarray | None = None,
                 summary: dict | None = None, error: type[InputError] = InputError) -> None:
        if not arrays:
            raise error("no model inputs given; give one array per input name")
        self.arrays = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in arrays.items()}
        self._length = same_length(self.arrays, "the samples", error)
        if labels is not None:
            labels = np.asarray(labels, dtype=np.int64).reshape(-1)
            if len(labels) != self._length:
                raise error(f"{len(labels)} labels for {self._length} samples; give one label per sample")
        self.labels = labels
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

    def take(self, index) -> "Samples":
        """The samples at `index` (a slice or an index array), labels with them, as a new set."""
        labels = None if self.labels is None else self.labels[index]
        return Samples({name: a[index] for name, a in self.arrays.items()}, labels, self._summary)

    def head(self, n: int) -> "Samples":
        return self.take(slice(0, n))

    def batches(self, size: int) -> Iterator["Samples"]:
        """Consecutive chunks of at most `size` samples (views, no copies)."""
        for start in range(0, self._length, max(1, int(size))):
            yield self.take(slice(start, start + size))

    def summary(self) -> dict:
        return dict(self._summary)
