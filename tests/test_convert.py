"""converters.convert(): INT8 TFLite from a tiny Keras model, the report, and the flatbuffer proof."""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters import ConvertOptions, convert
from converters.tflite.check import check_fusion, check_integer_only
from edgeact.config import IOType
from edgeact.formats.tflite_model import read_tflite
from edgeact.runtime import open_runner


def test_outputs_and_report_are_written(converted_small):
    out, report = converted_small
    assert sorted(p.name for p in out.iterdir()) == [
        "small_cnn.edgeact.json", "small_cnn_fp32.tflite", "small_cnn_int8.tflite"]
    on_disk = json.loads((out / "small_cnn.edgeact.json").read_text())
    assert on_disk["checks_passed"] is True
    assert on_disk["schema_version"] == 2
    assert on_disk["inputs"] == [{"name": "image", "shape": [16, 16, 3]}]
    (output,) = on_disk["outputs"]
    assert output["kind"] == "class_scores" and output["shape"] == [4]
    # the TFLite model carries the Keras output name (SignatureDef), not a tensor name
    assert on_disk["formats"]["tflite"]["outputs"][0]["name"] == output["name"] == report.outputs[0].name
    assert on_disk["preprocessing"]["preset"] == "unit"
    assert len(on_disk["source"]["sha256"]) == 64
    assert on_disk["calibration"]["calibration_samples"] == 60
    assert on_disk["calibration"]["holdout_samples"] == 20
    tflite = on_disk["formats"]["tflite"]
    assert tflite["inputs"][0]["dtype"] == "int8" and tflite["inputs"][0]["scale"] > 0
    assert tflite["outputs"][0]["dtype"] == "int8"


def test_int8_model_is_full_integer(converted_small):
    out, _ = converted_small
    model = read_tflite(out / "small_cnn_int8.tflite")
    check = check_integer_only(model, float_io=False)
    assert check["passed"], check["float_ops"]
    assert "QUANTIZE" not in model.op_counts() and "DEQUANTIZE" not in model.op_counts()
    weights = [model.tensors[op.inputs[1]] for op in model.ops if op.type in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert all(w.dtype == "int8" and len(w.scale) > 1 for w in weights)  # per-channel int8 weights


def test_every_relu_is_fused_in_the_tflite(converted_small):
    out, report = converted_small
    for name in ("small_cnn_fp32.tflite", "small_cnn_int8.tflite"):
        model = read_tflite(out / name)
        assert not {"RELU", "RELU6", "BATCH_NORMALIZATION", "MUL"} & set(model.op_counts()), model.op_counts()
        fusion = check_fusion(model)
        assert fusion["fused"]["CONV_2D"] == {"RELU": 1}
        assert fusion["fused"]["DEPTHWISE_CONV_2D"] == {"RELU6": 1}
        assert fusion["fused"]["ADD"] == {"RELU": 1}
        assert fusion["passed"] and not fusion["unfused"]
    passes = {p["name"]: p for p in report.passes}
    assert len(passes["fold_batchnorm"]["changed"]) == 2
    assert [c["activation"] for c in passes["fuse_activation"]["changed"]] == ["relu", "relu6"]


def test_verification_numbers_agree_with_a_direct_computation(converted_small, small_cnn, pixels_npy):
    """The report's INT8-vs-Keras check equals what we compute here on the same held-out samples."""
    from calibration import read_calibration
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.data.samples import ModelInput

    out, report = converted_small
    data = read_calibration(pixels_npy, ModelInput("image", (16, 16, 3)), make_preprocessing("unit"), 60, 20, 0)
    expected = small_cnn.predict(data.holdout.arrays["image"], verbose=0)
    name = report.outputs[0].name
    got = open_runner(out / "small_cnn_int8.tflite").predict(data.holdout)[name]
    (typed,) = [c for c in report.checks_of("parity") if c.subject == "tflite int8 vs keras"]
    check = typed.metrics
    assert typed.output == name and check["samples"] == 20
    assert check["top1_agreement"] == pytest.approx(np.mean(expected.argmax(1) == got.argmax(1)))
    assert check["max_abs_diff"] == pytest.approx(np.abs(expected - got).max(), rel=1e-5)
    cos = np.sum(expected * got, 1) / (np.linalg.norm(expected, axis=1) * np.linalg.norm(got, axis=1))
    assert check["cosine"] == pytest.approx(cos.mean(), rel=1e-6)
    (float_check,) = [c for c in report.checks_of("parity") if c.subject == "tflite fp32 vs keras"]
    assert float_check.passed and float_check.metrics["max_abs_diff"] < 1e-4


def test_activation_statistics_match_the_float_model(converted_small, small_cnn, pixels_npy, keras):
    """Sparsity and dead channels per ReLU recomputed from a Keras model that taps the source
    model's ReLU outputs, on the held-out samples the report's statistics are computed on."""
    from calibration import read_calibration
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.data.samples import ModelInput

    _, report = converted_small
    stats = {s["layer"]: s for s in report.activation_stats}
    relu_layers = [l for l in small_cnn.layers if type(l).__name__ == "ReLU"]
    assert set(stats) == {l.name for l in relu_layers}
    data = read_calibration(pixels_npy, ModelInput("image", (16, 16, 3)), make_preprocessing("unit"), 60, 20, 0)
    taps = keras.Model(small_cnn.inputs, [l.output for l in relu_layers])
    outputs = taps.predict(data.holdout.arrays["image"], verbose=0)
    for layer, out in zip(relu_layers, outputs if isinstance(outputs, list) else [outputs]):
        got = stats[layer.name]
        assert got["channels"] == out.shape[-1] == 8
        # Folding BatchNorm moves values by ~1e-7, which can flip an output at exactly 0: a few in 40,960.
        assert got["sparsity"] == pytest.approx(float(np.mean(out <= 0)), abs=1e-3), layer.name
        dead = int(np.sum(np.all(out.reshape(-1, out.shape[-1]) <= 0, axis=0)))
        assert got["dead_channels"] == dead, layer.name


def test_dead_channels_are_counted(keras, tmp_path):
    """A conv whose bias pushes two channels far below zero has exactly two dead ReLU channels."""
    from converters.keras.forward import float_pass

    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, L.Flatten()(x))
    kernel, bias = model.get_layer("conv").get_weights()
    model.get_layer("conv").set_weights([np.ones_like(kernel) * 0.1, np.array([1.0, -100.0, 0.5, -100.0], "float32")])
    from edgeact.data.samples import Samples

    samples = Samples({model.inputs[0].name: np.random.default_rng(0).uniform(0, 1, (10, 8, 8, 1))})
    stats, _ = float_pass(model, samples)
    assert [(s.layer, s.dead_channels) for s in stats] == [("conv", 2)]
    assert stats[0].sparsity == pytest.approx(0.5)


@pytest.mark.parametrize("io_type, dtype", [(IOType.UINT8, np.uint8), (IOType.FLOAT, np.float32)])
def test_io_type_option(small_cnn_file, pixels_npy, tmp_path, io_type, dtype):
    report = convert(small_cnn_file, pixels_npy, tmp_path,
                     ConvertOptions(io_type=io_type, samples=40, holdout=10, progress=False))
    runner = open_runner(tmp_path / "small_cnn_int8.tflite")
    assert runner.inputs[0].dtype == dtype and runner.outputs[0].dtype == dtype
    assert report.formats["tflite"].details["integer_only"]["passed"]


def test_no_fuse_keeps_layers_but_converter_still_fuses(small_cnn_file, pixels_npy, tmp_path):
    report = convert(small_cnn_file, pixels_npy, tmp_path,
                     ConvertOptions(passes=(), samples=40, holdout=10, progress=False))
    assert report.passes == []
    assert report.checks_passed


def test_keras_model_object_and_iterable_calibration(small_cnn, tmp_path):
    rng = np.random.default_rng(3)
    batches = (rng.uniform(0, 1, (10, 16, 16, 3)).astype("float32") for _ in range(5))
    report = convert(small_cnn, batches, tmp_path, ConvertOptions(samples=30, holdout=10, progress=False))
    assert report.calibration["source"] == "python iterable"
    assert report.calibration["values"] == "model inputs, fed as is"
    assert (tmp_path / "small_cnn_int8.tflite").exists()


def test_h5_model_converts(small_cnn, pixels_npy, tmp_path):
    path = tmp_path / "legacy.h5"
    small_cnn.save(path)
    report = convert(path, pixels_npy, tmp_path / "out", ConvertOptions(samples=20, holdout=10, progress=False))
    assert report.source["kind"] == "h5" and report.checks_passed


def test_verification_failure_writes_outputs_and_raises(small_cnn_file, pixels_npy, tmp_path):
    from edgeact.config import Tolerances
    from edgeact.errors import VerificationError

    impossible = Tolerances(min_cosine=1.01)
    with pytest.raises(VerificationError, match="tflite int8 vs keras"):
        convert(small_cnn_file, pixels_npy, tmp_path,
                ConvertOptions(samples=20, holdout=10, tolerances=impossible, progress=False))
    assert json.loads((tmp_path / "small_cnn.edgeact.json").read_text())["checks_passed"] is False


def test_unfusable_tflite_activations_are_reported(keras, tmp_path):
    """LeakyReLU stays standalone with a reason; a ReLU whose conv output has another use is not a failure."""
    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    a = L.LeakyReLU()(L.Conv2D(4, 3, padding="same")(inputs))
    c = L.Conv2D(4, 3, padding="same")(a)
    b = L.Concatenate()([L.ReLU()(c), c])
    model = keras.Model(inputs, L.Flatten()(b), name="unfusable")
    report = convert(model, np.random.default_rng(0).uniform(0, 1, (30, 8, 8, 1)).astype("float32"), tmp_path,
                     ConvertOptions(samples=20, holdout=10, progress=False))
    fusion = report.formats["tflite"].details["fusion"]["fp32"]
    reasons = {item["op"]: item["reason"] for item in fusion["standalone"]}
    assert "LEAKY_RELU" in reasons and "no fused form" in reasons["LEAKY_RELU"]
    assert "RELU" in reasons and "other consumers" in reasons["RELU"]
    assert fusion["passed"]
    skipped = {s["layer"]: s["reason"] for p in report.passes for s in p["skipped"]}
    assert any("LeakyReLU" in r for r in skipped.values())


def test_savedmodel_folder_converts_to_tflite(small_cnn, pixels_npy, tmp_path):
    """A SavedModel (model.export) converts as it is: no graph passes, TFLite only, checked against itself."""
    folder = tmp_path / "exported"
    small_cnn.export(str(folder), verbose=False)
    report = convert(folder, pixels_npy, tmp_path / "out", ConvertOptions(samples=30, holdout=10, progress=False))
    assert report.source["kind"] == "savedmodel" and report.passes == []
    assert report.checks_passed
    assert (tmp_path / "out" / "exported_int8.tflite").exists()
    fusion = report.formats["tflite"].details["fusion"]["int8"]
    assert fusion["passed"] and fusion["fused"]["CONV_2D"] == {"RELU": 1}


def test_float_exports_are_checked_on_the_first_held_out_samples_int8_on_all(small_cnn_file, small_cnn, pixels_npy,
                                                                           tmp_path):
    """The float check runs FLOAT_CHECK_SAMPLES of the held-out samples (a semantic error shows on any
    input), the INT8 checks every one; both recomputed here on the same samples."""
    from calibration import read_calibration
    from converters.job import FLOAT_CHECK_SAMPLES
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.data.samples import ModelInput

    holdout = FLOAT_CHECK_SAMPLES + 8
    report = convert(small_cnn_file, pixels_npy, tmp_path, ConvertOptions(samples=20, holdout=holdout, progress=False))
    data = read_calibration(pixels_npy, ModelInput("image", (16, 16, 3)), make_preprocessing("unit"), 20, holdout, 0)
    first = data.holdout.head(FLOAT_CHECK_SAMPLES)
    name = report.outputs[0].name
    expected = small_cnn.predict(first.arrays["image"], verbose=0)
    got = open_runner(tmp_path / "small_cnn_fp32.tflite").predict(first)[name]
    checks = {c.subject: c for c in report.checks_of("parity")}
    assert checks["tflite fp32 vs keras"].metrics["samples"] == FLOAT_CHECK_SAMPLES
    assert checks["tflite fp32 vs keras"].metrics["max_abs_diff"] == pytest.approx(np.abs(expected - got).max(),
                                                                                  rel=1e-5, abs=1e-9)
    assert checks["tflite int8 vs keras"].metrics["samples"] == holdout
