"""The frame API: `edgeact.load(path).classify(frame)` on frames of other sizes and in grayscale.

Every expectation is recomputed independently: resize with OpenCV/Pillow, preprocess with
the preset, quantize and run through the plain runner, and compare.
"""
from __future__ import annotations

import numpy as np
import pytest

import edgeact
from edgeact.data.preprocess import make_preprocessing
from edgeact.errors import InputError
from edgeact.frame_api import _resizer, outputs_by_name
from edgeact.runtime.tflite import TFLiteRunner
from tests.conftest import EXAMPLE_CALIBRATION, EXAMPLE_MODEL
from tests.helpers import only

LABELS = ["cat", "dog", "bird", "fish"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def converted(small_cnn, pixels_npy, tmp_path_factory):
    """small_cnn (16x16 RGB) as an int8-IO model and a pixel-in model, torch preprocessing."""
    from converters import ConvertOptions, convert
    from edgeact.config import IOType

    out = {}
    for io in ("int8", "uint8"):
        folder = tmp_path_factory.mktemp(f"frames_{io}")
        convert(small_cnn, str(pixels_npy), folder, ConvertOptions(
            io_type=IOType(io), preprocessing=make_preprocessing("torch"), labels=LABELS, samples=60, holdout=20))
        out[io] = folder / "small_cnn_int8.tflite"
    return out


def _frames(seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (6, 5, 5, 3)).astype(np.uint8)
    return [np.repeat(np.repeat(b, 8, 0), 7, 1) for b in base]  # 40x35: not the model's 16x16


def _reference(model_path, pixels_batch, pre):
    runner = TFLiteRunner(model_path)
    if runner.inputs[0].dtype == np.uint8:
        return only(runner.predict(pixels_batch))
    return only(runner.predict(pre.apply(pixels_batch)))


@pytest.fixture(params=["opencv", "numpy"])
def lookup_library(request, monkeypatch):
    """The pixel table lookup through OpenCV's LUT, and through numpy where OpenCV is missing."""
    if request.param == "numpy":
        monkeypatch.setitem(__import__("sys").modules, "cv2", None)  # import cv2 raises ImportError
    return request.param


@pytest.mark.parametrize("io", ["int8", "uint8"])
def test_classify_resizes_preprocesses_and_labels(converted, io, lookup_library):
    model = edgeact.load(converted[io])
    pre = make_preprocessing("torch")
    frames = _frames()
    resized = np.stack([_resizer()(f, 16, 16) for f in frames])
    expected = _reference(converted[io], resized, pre)
    for frame, scores in zip(frames, expected):
        result = model.classify(frame, top_k=4)
        assert [r.label for r in result] == [LABELS[r.index] for r in result]
        assert [r.index for r in result] == list(np.argsort(-scores, kind="stable"))
        assert np.allclose([r.score for r in result], scores[[r.index for r in result]], atol=1e-7)
    assert len(model.classify(frames[0], top_k=2)) == 2


def test_without_metadata_the_report_says_how_to_feed(converted, monkeypatch):
    """A .tflite without edgeact's contract (stripped, or from an older edgeact): the report beside it says
    how to feed it, pixel-in included."""
    from edgeact.formats import metadata as model_metadata

    monkeypatch.setattr(model_metadata, "read_contract", lambda path: None)
    frame = _frames(2)[0]
    for io in ("int8", "uint8"):
        model = edgeact.load(converted[io])
        assert model.labels == LABELS and model.pixel_in == (io == "uint8")
        expected = _reference(converted[io], _resizer()(frame, 16, 16)[None], make_preprocessing("torch"))[0]
        assert np.allclose(model.run(frame)[0], expected, atol=1e-7)


def test_gray_frame_on_an_rgb_model_is_replicated(converted):
    model = edgeact.load(converted["int8"])
    gray = _frames(1)[0][:, :, 0]
    expected = _reference(converted["int8"], np.repeat(_resizer()(gray, 16, 16)[None, :, :, None], 3, 3),
                          make_preprocessing("torch"))[0]
    assert np.allclose(model.run(gray)[0], expected, atol=1e-7)


@pytest.mark.parametrize("io", ["int8", "uint8"])
def test_rgb_frame_on_a_gray_model_and_named_outputs(tmp_path, io, lookup_library):
    from PIL import Image

    from converters import ConvertOptions, convert
    from edgeact.config import IOType

    convert(EXAMPLE_MODEL, EXAMPLE_CALIBRATION, tmp_path, ConvertOptions(
        io_type=IOType(io), labels=[str(d) for d in range(10)], samples=50, holdout=20))
    path = tmp_path / "mnist_cnn_int8.tflite"
    model = edgeact.load(path)
    unit = make_preprocessing("unit")
    files = sorted(EXAMPLE_CALIBRATION.glob("*.png"))[:10]
    for f in files:
        image = Image.open(f)
        rgb = np.asarray(image.convert("RGB").resize((56, 42)))  # another size and RGB
        gray = np.asarray(Image.fromarray(rgb).convert("L"))
        expected = _reference(path, _resizer()(gray, 28, 28)[None, :, :, None], unit)[0]
        assert np.allclose(model.run(rgb)[0], expected, atol=1e-7)
        assert model.classify(rgb, top_k=1)[0].label == str(int(np.argmax(expected)))
    named = model.predict(np.zeros((2, 28, 28, 1), np.float32))
    assert list(named) == ["digits"] and named["digits"].shape == (2, 10)


def test_bad_frames_are_refused(converted):
    model = edgeact.load(converted["uint8"])
    for bad in (np.zeros((16, 16, 3), np.float32), np.zeros((16, 16, 4), np.uint8), np.zeros(16, np.uint8)):
        with pytest.raises(InputError, match="uint8 HxWx3"):
            model.classify(bad)


def test_outputs_by_name_takes_a_list_or_a_dict():
    a, b = np.zeros(2), np.ones(3)
    assert outputs_by_name([a, b], ["x", "y"])["y"] is b
    assert outputs_by_name({"y": b, "x": a}, ["x", "y"])["x"] is a


FRAME_CHILD = """
import json, sys
import numpy as np
for name in ("tensorflow", "keras", "tf2onnx", "onnx", "converters", "calibration"):
    sys.modules[name] = None  # mediapipe stays importable: the test proves it is not imported
import edgeact
from edgeact.formats.metadata import read_metadata
model = edgeact.load(sys.argv[1])
top = model.classify(np.full((33, 47, 3), 128, np.uint8), top_k=2)
meta = read_metadata(sys.argv[1])
loaded = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in
                ("tensorflow", "keras", "tf2onnx", "onnx", "converters", "calibration", "mediapipe"))
print(json.dumps({"labels": [c.label for c in top], "loaded": loaded, "standard": meta.standard is not None,
                  "contract_labels": meta.labels}))
"""


def test_frame_api_and_metadata_need_neither_tensorflow_nor_mediapipe(converted):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-c", FRAME_CHILD, str(converted["uint8"])], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [] and result["contract_labels"] == LABELS
    assert len(result["labels"]) == 2 and set(result["labels"]) <= set(LABELS)
    assert result["standard"]  # decoded from the schema file alone, MediaPipe's package never imported


def test_profile_feeds_a_per_channel_pixel_in_model_pixels(converted):
    """profile hands models preprocessed floats; a torch pixel-in model must get them back as pixels."""
    from edgeact.measure.profiler import LoopSettings, profile_model

    pixels = np.stack(_frames(3))[:, :16, :16]
    floats = make_preprocessing("torch").apply(pixels)
    settings = LoopSettings(runs=2, warmup=0)
    pixel_in = only(profile_model(converted["uint8"], floats, settings).outputs)
    int8 = only(profile_model(converted["int8"], floats, settings).outputs)
    step = TFLiteRunner(converted["uint8"]).outputs[0].scale
    assert np.max(np.abs(pixel_in - int8)) <= step * 1.0001
    assert np.array_equal(pixel_in, _reference(converted["uint8"], pixels, None))


def test_example_pipeline_classifies_photos_and_video_frames(converted, tmp_path):
    import re
    import subprocess
    import sys

    from tests.conftest import EXAMPLE_TEST_IMAGES, ROOT

    script = ROOT / "examples" / "classify_photos.py"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, str(script), str(converted["uint8"]), str(EXAMPLE_TEST_IMAGES),
                           "--top-k", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 501 and re.match(r"500 frames in [\d.]+ s of classify: [\d.]+ frames/s", lines[-1])
    assert all(any(label in line for label in LABELS) for line in lines[:-1])

    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for frame in _frames(4):
        writer.write(cv2.resize(frame, (64, 48)))
    writer.release()
    done = subprocess.run([sys.executable, str(script), str(converted["uint8"]), str(video)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("6 frames in ")
    bad = subprocess.run([sys.executable, str(script), str(converted["uint8"]), str(tmp_path / "missing")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
