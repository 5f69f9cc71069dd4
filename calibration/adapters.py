"""Adapters from samples (`edgeact.data.samples.Samples`, or any iterable of `{input_name: batch}`)
to what each converter expects, so that TFLite and ONNX Runtime calibrate on the same samples,
fed by input name."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from edgeact.data.samples import Samples


def representative_dataset(source: Samples, progress=None) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """TFLite's `representative_dataset`: a callable returning a generator of `{input_name: batch}`.

    Dicts, not lists: TFLite's calibrator then feeds each array to the SignatureDef input of
    that name, whatever order the converter gave the input tensors.
    """

    def generate() -> Iterator[dict[str, np.ndarray]]:
        for sample in source:
            if progress is not None:
                progress.update(1)
            yield {name: np.asarray(v, dtype=np.float32) for name, v in sample.items()}

    return generate


class OrtCalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol (`get_next`, `rewind`) over a source.

    `transform(name, array)` maps each sample to the ONNX model's layout (NHWC to NCHW for
    image inputs) and `rename` maps Keras input names to the ONNX graph's.
    """

    def __init__(self, source: Samples, rename: dict[str, str] | None = None,
                 transform: Callable[[str, np.ndarray], np.ndarray] | None = None, progress=None) -> None:
        self.source = source
        self.rename = rename or {}
        self.transform = transform or (lambda name, x: x)
        self.progress = progress
        self._iterator = iter(source)

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self._iterator, None)
        if sample is None:
            return None
        if self.progress is not None:
            self.progress.update(1)
        return {self.rename.get(k, k): self.transform(k, np.asarray(v, np.float32)) for k, v in sample.items()}

    def rewind(self) -> None:
        self._iterator = iter(self.source)

    def __iter__(self):
        self.rewind()
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item
