"""Camera frames in, labelled scores out: `edgeact.load(path).classify(frame)`.

    model = edgeact.load("out/mnist_int8.tflite")
    for label, score in model.classify(frame, top_k=3): ...

How to feed the model comes from the model itself (its `EDGEACT_CONTRACT` metadata) or,
where the runtime ships no flatbuffer schema (tflite-runtime), from the convert report
beside it. numpy and a TFLite runtime only; OpenCV or Pillow only to resize.

Per frame the cost over a bare `invoke()` is one table lookup per pixel: preprocessing and
quantization map each 0..255 pixel value to one input value, so both are folded into a
256-entry table per channel, built once at load (a pixel-in uint8 model needs none).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeact.data.pixel_input import takes_pixels
from edgeact.data.preprocess import Preprocessing
from edgeact.runtime.base import dequantize, quantize

from .errors import InputError, ModelLoadError, RuntimeUnavailableError


@dataclass(frozen=True)
class Classification:
    label: str
    index: int
    score: float


def _contract(path: Path) -> dict:
    """The model's contract: from its metadata, else from the convert report beside it."""
    from edgeact.formats.metadata import read_contract

    contract = read_contract(path)
    if contract:
        return contract
    from edgeact.report.sidecar import find_report

    report = find_report(path)
    if report is None:
        raise ModelLoadError(f"{path} carries no edgeact metadata and has no .edgeact.json report beside it; "
                             "convert it with edgeact convert, or use a TFLite interpreter directly")
    return {"labels": report.labels, "outputs": [],
            "input": {"preprocessing": report.preprocessing.to_dict(), "pixel_in": _report_pixel_in(report, path)}}


def _report_pixel_in(report, path: Path) -> dict | None:
    """The report's pixel-in section, which belongs to its INT8 .tflite only (never the fp32 one)."""
    import json

    if not path.name.endswith("_int8.tflite"):
        return None
    try:
        section = json.loads(report.path.read_text()).get("formats", {}).get("tflite") or {}
        return (section.get("details") or {}).get("pixel_in") or section.get("pixel_in")  # schema 2, schema 1
    except (OSError, ValueError, AttributeError):
        return None


def _resizer():
    """cv2.resize where OpenCV is installed (several times faster), else Pillow."""
    try:
        import cv2

        def resize(frame, h, w):
            return cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)

        resize.library = "OpenCV"
        return resize
    except ImportError:
        pass
    try:
        from PIL import Image
    except ImportError:
        raise RuntimeUnavailableError("resizing frames needs OpenCV or Pillow; pip install pillow") from None

    def resize(frame, h, w):
        return np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))

    resize.library = "Pillow"
    return resize


def _table_lookup(table: np.ndarray):
    """`lookup(pixels, out)`: out[..., c] = table[c][pixels[..., c]], the fastest way installed.

    OpenCV's LUT is SIMD over uint8 and writes into `out` (~40 us for 224x224x3);
    numpy's take first widens the indices to intp (~2-3x slower).
    """
    channels = len(table)
    shared = all(np.array_equal(table[0], t) for t in table)
    try:
        import cv2

        lut = np.ascontiguousarray(table[0].reshape(1, 256) if shared or channels == 1
                                   else table.T.reshape(1, 256, channels))

        def lookup(pixels, out):
            if channels == 1:
                cv2.LUT(pixels[:, :, 0], lut, dst=out[:, :, 0])
            else:
                cv2.LUT(pixels, lut, dst=out)
        return lookup
    except ImportError:
        pass

    def lookup(pixels, out):
        if shared:
            np.take(table[0], pixels, out=out)
        else:
            for c in range(channels):
                np.take(table[c], pixels[:, :, c], out=out[:, :, c])
    return lookup


def outputs_by_name(outputs, names: list[str]) -> dict[str, np.ndarray]:
    """Runner outputs as {name: array}, whether the runner returns a list or already a dict."""
    if isinstance(outputs, dict):
        return dict(outputs)
    return dict(zip(names, outputs))


class FrameModel:
    """A loaded model that classifies uint8 frames of any size (HxWx3 RGB or HxW gray)."""

    def __init__(self, path: str | Path, runtime: str | None = None, threads: int | None = None,
                 delegate: str = "xnnpack") -> None:
        from edgeact.runtime.tflite import TFLiteRunner

        self.path = Path(path)
        if self.path.suffix.lower() != ".tflite":
            raise InputError(f"{self.path} is not a .tflite file; edgeact.load takes converted TFLite models")
        contract = _contract(self.path)
        self.runner = TFLiteRunner(self.path, runtime=runtime, threads=threads, delegate=delegate)
        self.input = self.runner.inputs[0]
        self.height, self.width, self.channels = (int(d) for d in self.input.shape[1:4])
        self.preprocessing = Preprocessing.from_dict(contract["input"]["preprocessing"])
        self.pixel_in = takes_pixels(contract)
        self.labels = contract.get("labels")
        names = contract.get("outputs") or []
        self.output_names = names if len(names) == len(self.runner.outputs) else [s.name for s in self.runner.outputs]
        self._table = None if self.pixel_in else self._pixel_table()
        self._lookup = None if self._table is None else _table_lookup(self._table)
        self._resize = None
        self._input_view = self.runner.interpreter.tensor(self.runner._input_index[0])

    def _pixel_table(self) -> np.ndarray:
        """(channels, 256): the model input value of each pixel value, per channel."""
        levels = np.repeat(np.arange(256, dtype=np.float32)[:, None], self.channels, axis=1)
        return np.ascontiguousarray(quantize(self.preprocessing.apply(levels), self.input).T)

    def _pixels(self, frame: np.ndarray) -> np.ndarray:
        """The frame as uint8 (H, W, C) at the model's size and channel count."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3)):
            raise InputError(f"a frame must be uint8 HxWx3 (RGB) or HxW (gray); got {frame.dtype} {frame.shape}")
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.shape[:2] != (self.height, self.width):
            if self._resize is None:
                self._resize = _resizer()
            frame = self._resize(np.ascontiguousarray(frame), self.height, self.width)
        if self.channels == 1 and frame.ndim == 3:  # ITU-R 601 luma, as Pillow's convert("L")
            frame = np.round(frame @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
        if frame.ndim == 2:
            frame = frame[:, :, None] if self.channels == 1 else np.repeat(frame[:, :, None], self.channels, 2)
        return frame

    def run(self, frame: np.ndarray) -> list[np.ndarray]:
        """Preprocess, quantize, invoke; the dequantized outputs (batch axis dropped)."""
        pixels = self._pixels(frame)
        target = self._input_view()[0]
        if self._table is None:
            np.copyto(target, pixels)
        else:
            self._lookup(pixels, target)
        del target  # the runtime refuses to invoke while a view of its buffer is alive
        self.runner.invoke()
        return [dequantize(out, spec)[0] for out, spec in zip(self.runner.get_outputs(), self.runner.outputs)]

    def classify(self, frame: np.ndarray, top_k: int = 5) -> list[Classification]:
        """The top_k classes of one frame, best first, with dequantized scores."""
        scores = self.run(frame)[0].ravel()
        top = np.argsort(-scores, kind="stable")[:max(1, top_k)]
        labels = self.labels or [str(i) for i in range(len(scores))]
        return [Classification(labels[i] if i < len(labels) else str(i), int(i), float(scores[i])) for i in top]

    def predict(self, array: np.ndarray) -> dict[str, np.ndarray]:
        """Raw inputs (a batch in the model's float terms, or already of its input type) to named outputs."""
        return outputs_by_name(self.runner.predict(np.asarray(array)), self.output_names)


def load(path: str | Path, runtime: str | None = None, threads: int | None = None,
         delegate: str = "xnnpack") -> FrameModel:
    """Load a converted .tflite model for frames; see FrameModel."""
    return FrameModel(path, runtime=runtime, threads=threads, delegate=delegate)
