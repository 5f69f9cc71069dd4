"""A real client: MediaPipe Tasks' ImageClassifier runs edgeact's models from the file alone.

MediaPipe's ImageClassifier takes RGB models only ("Only RGB color space is supported"), so
the test puts a 1x1 RGB-to-gray convolution in front of the bundled MNIST CNN and converts
that; the 500 bundled test digits are fed as RGB. MediaPipe gets nothing but the .tflite:
labels, colour space and (for float input) NormalizationOptions come from its metadata.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EXAMPLE_CALIBRATION, EXAMPLE_MODEL, EXAMPLE_TEST_IMAGES
from tests.helpers import only

mp = pytest.importorskip("mediapipe", reason="pip install 'edgeact[mediapipe]' for the MediaPipe client test")

pytestmark = pytest.mark.slow
LABELS = [f"digit {d}" for d in range(10)]


def _rgb(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    files = sorted(folder.rglob("*.png"))
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    digits = np.array([int(f.parent.name) if f.parent.name.isdigit() else -1 for f in files])
    return pixels, digits


@pytest.fixture(scope="module")
def rgb_mnist(keras, tmp_path_factory):
    """(output folder, convert report): the MNIST CNN behind an RGB input, --io uint8 with labels."""
    from converters import ConvertOptions, convert
    from edgeact.config import IOType
    from edgeact.data.preprocess import make_preprocessing

    digits_model = keras.models.load_model(EXAMPLE_MODEL)
    image = keras.Input((28, 28, 3), name="image")
    to_gray = keras.layers.Conv2D(1, 1, use_bias=False, name="to_gray")
    gray = to_gray(image)
    to_gray.set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])
    model = keras.Model(image, digits_model(gray), name="rgb_mnist")
    tmp = tmp_path_factory.mktemp("mediapipe")
    np.save(tmp / "calibration.npy", _rgb(EXAMPLE_CALIBRATION)[0])
    report = convert(model, str(tmp / "calibration.npy"), tmp / "out", ConvertOptions(
        io_type=IOType.UINT8, preprocessing=make_preprocessing("unit"), labels=LABELS, samples=200, holdout=100))
    convert(model, str(tmp / "calibration.npy"), tmp / "float_io", ConvertOptions(
        io_type=IOType.FLOAT, preprocessing=make_preprocessing("unit"), labels=LABELS, samples=200, holdout=100))
    return tmp / "out", report


def _mediapipe_scores(model_path: Path, pixels: np.ndarray) -> list[dict[str, tuple[int, float]]]:
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model_path)),
                                            max_results=10)
    results = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for frame in pixels:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
            categories = classifier.classify(image).classifications[0].categories
            results.append({c.category_name: (c.index, c.score) for c in categories})
    return results


def _check_agreement(mp_results, ours: np.ndarray, tolerance: float) -> None:
    assert len(mp_results) == len(ours)
    for i, (theirs, scores) in enumerate(zip(mp_results, ours)):
        top_name = max(theirs, key=lambda name: theirs[name][1])
        index, score = theirs[top_name]
        assert top_name == LABELS[index], "category names must come from the label file"
        # Same top-1 (a tie between equal quantized scores may be ordered either way).
        assert scores[index] >= scores.max() - 1e-6, f"image {i}: MediaPipe top-1 {top_name}, ours {scores.argmax()}"
        for name, (k, s) in theirs.items():
            assert abs(s - scores[k]) <= tolerance, f"image {i} class {name}: {s} vs {scores[k]}"


def test_mediapipe_classifies_the_pixel_in_model_like_edgeact(rgb_mnist):
    from edgeact.runtime.tflite import TFLiteRunner

    out, report = rgb_mnist
    model = out / "rgb_mnist_int8.tflite"
    pixels, digits = _rgb(EXAMPLE_TEST_IMAGES)
    runner = TFLiteRunner(model)
    (spec,) = runner.outputs
    assert runner.inputs[0].dtype == np.uint8 and report.formats["tflite"].details["pixel_in"]["method"] == "folded"
    ours = only(runner.predict(pixels))  # uint8 pixels go in as they are
    theirs = _mediapipe_scores(model, pixels)
    _check_agreement(theirs, ours, tolerance=spec.scale * 1.0001)  # one output quantization step
    accuracy = np.mean([LABELS.index(max(t, key=lambda n: t[n][1])) == d for t, d in zip(theirs, digits)])
    assert accuracy > 0.9  # the bundled CNN reaches ~0.99 on these digits; the gray conv is exact


@pytest.mark.parametrize("model_file, tolerance", [
    ("out/rgb_mnist_fp32.tflite", 1e-4),  # float32 throughout: float rounding only
    # INT8 body, float interface: MediaPipe's (x - 0) / 255 and our x * (1/255) may differ by an
    # ulp and round to the neighbouring input step; the int8 softmax output's step is 1/256.
    ("float_io/rgb_mnist_int8.tflite", 1 / 256 * 1.0001)])
def test_mediapipe_runs_float_models_from_their_normalization_options(rgb_mnist, model_file, tolerance):
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.runtime.tflite import TFLiteRunner

    out, _ = rgb_mnist
    model = out.parent / model_file
    pixels, _ = _rgb(EXAMPLE_TEST_IMAGES)
    runner = TFLiteRunner(model)
    assert runner.inputs[0].dtype == np.float32
    ours = only(runner.predict(make_preprocessing("unit").apply(pixels)))
    _check_agreement(_mediapipe_scores(model, pixels), ours, tolerance=tolerance)
