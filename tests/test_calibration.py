"""Calibration data through the one reader, the held-out split, preprocessing presets, and the two adapters."""
from __future__ import annotations

import numpy as np
import pytest

from calibration import read_calibration
from calibration.adapters import OrtCalibrationReader, representative_dataset
from edgeact.data.preprocess import Preprocessing, make_preprocessing
from edgeact.data.samples import ModelInput
from edgeact.data.source import read_source
from edgeact.errors import CalibrationError, InputError

GRAY = ModelInput("x", (6, 6, 1))
RGB = ModelInput("x", (6, 6, 3))


@pytest.mark.parametrize("preset, pixel, expected", [
    ("unit", 255, 1.0), ("unit", 0, 0.0), ("mobilenet", 0, -1.0), ("mobilenet", 255, 1.0), ("none", 7, 7.0),
])
def test_presets_on_gray_pixels(preset, pixel, expected):
    out = make_preprocessing(preset).apply(np.full((1, 2, 2, 1), pixel, np.uint8))
    assert out.dtype == np.float32 and np.allclose(out, expected)


def test_torch_and_caffe_presets_match_their_formulas():
    rgb = np.array([[[[10, 120, 250]]]], np.uint8)
    torch = make_preprocessing("torch").apply(rgb)[0, 0, 0]
    assert np.allclose(torch, (rgb[0, 0, 0] / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], atol=1e-6)
    caffe = make_preprocessing("caffe").apply(rgb)[0, 0, 0]
    assert np.allclose(caffe, [250 - 103.939, 120 - 116.779, 10 - 123.68], atol=1e-4)
    custom = make_preprocessing(mean=(100.0,), std=(50.0,)).apply(rgb)
    assert np.allclose(custom[0, 0, 0], (rgb[0, 0, 0].astype(float) - 100) / 50)


def test_preprocessing_round_trips_through_the_report():
    pre = make_preprocessing("torch")
    assert Preprocessing.from_dict(pre.to_dict()) == pre


def test_three_channel_mean_on_gray_model_is_an_error():
    with pytest.raises(InputError, match="3-value mean"):
        make_preprocessing("torch").apply(np.zeros((1, 2, 2, 1), np.uint8))
    with pytest.raises(InputError, match="unknown preprocessing preset"):
        make_preprocessing("imagenet")


def _one(array, model_input=GRAY, preprocessing=None):
    return read_source(array, "--calibration").samples([model_input], preprocessing or make_preprocessing())


def test_pixels_are_preprocessed_and_floats_are_not():
    pixels = _one(np.full((3, 6, 6, 1), 255, np.uint8), preprocessing=make_preprocessing("unit"))
    floats = _one(np.full((3, 6, 6, 1), 255, np.float32), preprocessing=make_preprocessing("unit"))
    assert pixels.arrays["x"].max() == 1.0 and floats.arrays["x"].max() == 255.0
    assert _one(np.zeros((4, 6, 6), np.uint8)).arrays["x"].shape == (4, 6, 6, 1)


def test_split_holds_out_samples_and_is_seeded():
    data = np.arange(50 * 36, dtype=np.float32).reshape(50, 6, 6, 1)
    a = read_calibration(data, GRAY, make_preprocessing("none"), samples=30, holdout=10, seed=1)
    b = read_calibration(data, GRAY, make_preprocessing("none"), samples=30, holdout=10, seed=1)
    assert len(a.calibration) == 30 and len(a.holdout) == 10
    assert np.array_equal(a.holdout.arrays["x"], b.holdout.arrays["x"])
    used = {float(s[0, 0, 0]) for s in a.calibration.arrays["x"]} | {float(s[0, 0, 0]) for s in a.holdout.arrays["x"]}
    assert len(used) == 40  # no sample is both calibration and held out
    small = read_calibration(data[:10], GRAY, make_preprocessing("none"), samples=30, holdout=10)
    assert (len(small.calibration), len(small.holdout)) == (8, 2)
    tiny = read_calibration(data[:3], GRAY, make_preprocessing("none"), samples=30, holdout=10)
    assert tiny.summary["holdout_samples"] == 0 and "calibration samples" in tiny.summary["verified_on"]


def test_image_folder_is_resized_and_converted_to_the_model_channels(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((10, 14, 3), 200, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((9, 9), 50, np.uint8)).save(tmp_path / "b.jpg")
    gray = read_calibration(tmp_path, GRAY, make_preprocessing("none"), samples=5, holdout=0)
    assert gray.calibration.arrays["x"].shape == (2, 6, 6, 1)
    rgb = read_calibration(tmp_path, RGB, make_preprocessing("none"), samples=5, holdout=0)
    assert sorted(float(v) for v in rgb.calibration.arrays["x"][:, 0, 0, 0]) == [50.0, 200.0]


def test_image_folder_needs_an_image_input(tmp_path):
    with pytest.raises(CalibrationError, match="not an image"):
        read_calibration(tmp_path, ModelInput("x", (10,)), make_preprocessing(), 5)


def test_iterables_of_dicts_and_batches():
    rng = np.random.default_rng(0)
    dicts = ({"x": rng.uniform(size=(6, 6, 1)).astype("float32")} for _ in range(12))
    data = read_calibration(dicts, GRAY, make_preprocessing(), samples=8, holdout=4)
    assert len(data.calibration) == 8
    with pytest.raises(CalibrationError, match="yielded no samples"):
        read_calibration(iter([]), GRAY, make_preprocessing(), 5)
    with pytest.raises(CalibrationError, match="different shapes"):
        read_calibration([np.zeros((6, 6, 1)), np.zeros((5, 6, 1))], GRAY, make_preprocessing(), 5)


def test_adapters_yield_the_same_samples():
    source = _one(np.random.default_rng(0).uniform(size=(5, 6, 6, 1)).astype("float32"))
    tflite = [batch["x"] for batch in representative_dataset(source)()]
    reader = OrtCalibrationReader(source, rename={"x": "input:0"}, transform=lambda name, a: a.transpose(0, 3, 1, 2))
    ort = []
    while (item := reader.get_next()) is not None:
        ort.append(item["input:0"])
    assert len(tflite) == len(ort) == 5
    for a, b in zip(tflite, ort):
        assert a.shape == (1, 6, 6, 1) and np.array_equal(a.transpose(0, 3, 1, 2), b)
    reader.rewind()
    assert reader.get_next() is not None


IMAGE, META = ModelInput("image", (6, 6, 3)), ModelInput("meta", (4,))


def test_npz_with_one_array_per_input(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "two.npz"
    np.savez(path, image=rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8), meta=rng.normal(size=(20, 4)))
    data = read_calibration(path, [IMAGE, META], make_preprocessing("unit"), samples=15, holdout=5)
    assert data.calibration.names == ["image", "meta"] and len(data.holdout) == 5
    assert data.calibration.arrays["image"].max() <= 1.0  # uint8 pixels preprocessed
    raw = np.load(path)["meta"]
    # float inputs fed as they are: every held-out meta row is one of the file's rows
    assert all(np.isclose(raw, row).all(axis=1).any() for row in data.holdout.arrays["meta"])
    assert data.summary["input_range"]["image"][1] <= 1.0


@pytest.mark.parametrize("arrays, message", [
    ({"image": np.zeros((4, 6, 6, 3), np.uint8)}, "no array for model input 'meta'"),
    ({"image": np.zeros((4, 6, 6, 3), np.uint8), "meta": np.zeros((4, 4)), "extra": np.zeros((4, 1))},
     "'extra' that is not a model input"),
    ({"image": np.zeros((4, 6, 6, 3), np.uint8), "meta": np.zeros((3, 4))}, "different sample counts"),
])
def test_missing_extra_or_uneven_keys_are_one_line_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(CalibrationError, match=message):
        read_calibration(path, [IMAGE, META], make_preprocessing(), samples=4, holdout=0)


def test_iterable_of_dicts_for_two_inputs_and_folders_refused(tmp_path):
    rng = np.random.default_rng(1)
    items = ({"image": rng.uniform(size=(6, 6, 3)), "meta": rng.uniform(size=(4,))} for _ in range(10))
    data = read_calibration(items, [IMAGE, META], make_preprocessing(), samples=8, holdout=2)
    assert data.calibration.arrays["meta"].shape == (8, 4)
    with pytest.raises(CalibrationError, match="an image folder feeds one"):
        read_calibration(tmp_path, [IMAGE, META], make_preprocessing(), samples=4)
