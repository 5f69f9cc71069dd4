"""Pixel-in models (`--io uint8`) and the metadata every .tflite carries.

Equivalence: uint8 pixels through the pixel-in model against float preprocessing through
the INT8 model with an int8 interface (the same body, calibrated on the same samples): same
top-1 and outputs within one output quantization step, for a folded preset (unit,
mobilenet) and a per-channel one (--mean/--std, caffe's BGR).
"""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from converters.tflite.pixel_in import plan_pixel_in
from edgeact.data.pixel_input import to_pixels
from edgeact.data.preprocess import make_preprocessing
from tests.helpers import only

LABELS = ["cat", "dog", "bird", "fish"]
CUSTOM = {"mean": (123.0, 117.0, 104.0), "std": (58.0, 57.0, 57.5)}


def _preprocessing(name: str):
    return make_preprocessing(**CUSTOM) if name == "custom" else make_preprocessing(name)


@pytest.mark.parametrize("name, method, scale, zero_point", [
    ("unit", "folded", 1 / 255, 0), ("mobilenet", "folded", 1 / 127.5, 128), ("none", "folded", 1.0, 0),
    ("torch", "normalisation_op", 1.0, 0), ("caffe", "normalisation_op", 1.0, 0),
    ("custom", "normalisation_op", 1.0, 0)])
def test_plan_folds_single_scale_presets_only(name, method, scale, zero_point):
    plan = plan_pixel_in(_preprocessing(name), 3)
    assert (plan.method, plan.zero_point) == (method, zero_point)
    assert plan.scale == pytest.approx(scale, rel=1e-12)


def test_folded_quantization_reproduces_the_preset():
    pixels = np.arange(256, dtype=np.float64)
    for name, offset in (("unit", 0.0), ("mobilenet", 0.5 / 127.5)):
        pre, plan = _preprocessing(name), plan_pixel_in(_preprocessing(name), 1)
        dequantized = (pixels - plan.zero_point) * plan.scale
        floats = pre.apply(pixels.reshape(-1, 1)).ravel()
        assert np.max(np.abs(dequantized - floats)) == pytest.approx(offset, abs=1e-6)
        assert plan.max_input_offset == pytest.approx(offset, abs=1e-9)


@pytest.mark.parametrize("name", ["unit", "torch", "caffe"])
def test_to_pixels_inverts_preprocessing(name):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (5, 4, 4, 3)).astype(np.uint8)
    assert np.array_equal(to_pixels(_preprocessing(name), _preprocessing(name).apply(pixels)), pixels)


def _convert(model, data, out, pre, io_type):
    from converters import ConvertOptions, convert
    from edgeact.config import IOType

    return convert(model, str(data), out, ConvertOptions(io_type=IOType(io_type), preprocessing=pre, labels=LABELS,
                                                        samples=60, holdout=20))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unit", "mobilenet", "custom", "caffe"])
def test_pixel_in_model_matches_float_preprocessing(name, small_cnn, pixels_npy, tmp_path):
    from edgeact.runtime.tflite import TFLiteRunner

    pre = _preprocessing(name)
    pixel_report = _convert(small_cnn, pixels_npy, tmp_path / "px", pre, "uint8")
    _convert(small_cnn, pixels_npy, tmp_path / "int8", pre, "int8")
    pixel_in = TFLiteRunner(tmp_path / "px" / "small_cnn_int8.tflite")
    int8 = TFLiteRunner(tmp_path / "int8" / "small_cnn_int8.tflite")
    assert pixel_in.inputs[0].dtype == np.uint8
    assert pixel_report.formats["tflite"].details["pixel_in"]["method"] == plan_pixel_in(pre, 3).method

    pixels = np.load(pixels_npy)
    ours = only(pixel_in.predict(pixels))  # raw uint8 pixels, no preprocessing on our side
    reference = only(int8.predict(pre.apply(pixels)))
    step = pixel_in.outputs[0].scale
    assert step == pytest.approx(int8.outputs[0].scale)
    assert np.max(np.abs(ours - reference)) <= step * 1.0001
    margin = np.sort(reference, axis=1)
    clear = margin[:, -1] - margin[:, -2] > step  # where no one-step wobble can swap the top two
    assert clear.mean() > 0.8
    assert np.array_equal(ours.argmax(1)[clear], reference.argmax(1)[clear])


@pytest.mark.slow
def test_metadata_round_trip(small_cnn, pixels_npy, tmp_path):
    """Both models of a pixel-in conversion, read back with edgeact's own reader (MediaPipe's generated
    module reads every field in tests/test_tflite_metadata.py)."""
    from edgeact.formats.metadata import read_metadata

    pre = _preprocessing("mobilenet")
    _convert(small_cnn, pixels_npy, tmp_path, pre, "uint8")
    for kind, dtype in (("int8", "uint8"), ("fp32", "float")):
        path = tmp_path / f"small_cnn_{kind}.tflite"
        meta = read_metadata(path)
        assert meta.problems == []
        assert meta.contract["input"]["dtype"] == dtype and meta.contract["labels"] == LABELS
        assert meta.contract["input"]["color_space"] == "RGB" and meta.contract["input"]["name"] == "image"
        assert [t["name"] for t in meta.standard["inputs"]] == ["image"]  # Keras names, not TFLite tensor names
        assert [t["name"] for t in meta.standard["outputs"]] == meta.contract["outputs"] == small_cnn.output_names
        assert meta.standard["name"] == "small_cnn" and meta.standard["author"].startswith("edgeact ")
        (image,) = meta.standard["inputs"]
        assert image["color_space"] == "RGB" and image["content"] == "ImageProperties"
        (labels,) = meta.standard["outputs"][0]["associated_files"]
        assert labels["type"] == "TENSOR_AXIS_LABELS"
        with zipfile.ZipFile(path) as archive:  # the label file, read by the standard library
            assert archive.read(labels["name"]).decode().splitlines() == LABELS
        if dtype == "float":  # (x - 127.5) / 127.5 in pixel units, and the range that gives on 0..255
            assert image["normalization"] == {"mean": [127.5] * 3, "std": [127.5] * 3}
            assert image["stats"] == {"min": [-1.0] * 3, "max": [1.0] * 3}
        else:
            assert image["process_units"] == [] and "stats" not in image  # raw pixels: in the input quantization
        assert meta.labels == LABELS
    contract = json.loads(json.dumps(meta.contract))
    assert contract["input"]["pixel_in"] is None  # the fp32 model takes preprocessed floats


@pytest.mark.slow
def test_inspect_prints_metadata_of_edgeact_and_other_models(small_cnn, pixels_npy, tmp_path):
    import tensorflow as tf
    from click.testing import CliRunner

    from edgeact.cli import cli

    _convert(small_cnn, pixels_npy, tmp_path, _preprocessing("torch"), "uint8")
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "small_cnn_int8.tflite")])
    assert result.exit_code == 0, result.output
    assert "input expects: uint8 pixels 0..255, torch preprocessing" in result.output
    assert "TENSOR_AXIS_LABELS labels.txt" in result.output and "labels (4): cat, dog, bird, fish" in result.output
    plain = tmp_path / "plain.tflite"  # not edgeact's: straight from TFLiteConverter, no metadata
    plain.write_bytes(tf.lite.TFLiteConverter.from_keras_model(small_cnn).convert())
    result = CliRunner().invoke(cli, ["inspect", str(plain)])
    assert result.exit_code == 0 and "metadata: no TFLite Model Metadata" in result.output


@pytest.mark.slow
def test_onnx_models_carry_the_same_contract(small_cnn, pixels_npy, tmp_path):
    import onnx

    from converters import ConvertOptions, convert
    from edgeact.config import Format, OnnxLayout

    pre = _preprocessing("custom")
    convert(small_cnn, str(pixels_npy), tmp_path, ConvertOptions(
        formats=(Format.ONNX,), preprocessing=pre, labels=LABELS, samples=60, holdout=20,
        onnx_layout=OnnxLayout.NCHW))
    for kind in ("fp32", "int8"):
        props = {p.key: p.value for p in onnx.load(str(tmp_path / f"small_cnn_{kind}.onnx")).metadata_props}
        assert props["labels"].splitlines() == LABELS
        assert props["input_layout"] == "NCHW"
        assert json.loads(props["preprocessing"]) == json.loads(json.dumps(pre.to_dict()))
        contract = json.loads(props["edgeact.contract"])
        assert contract["input"]["layout"] == "NCHW" and contract["input"]["dtype"] == "float"
        assert contract["input"]["normalization"]["mean"] == list(CUSTOM["mean"])
        assert contract["outputs"] and contract["labels"] == LABELS
