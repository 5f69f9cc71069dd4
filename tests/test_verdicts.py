"""Verdicts on the models people have: no broken model passes, no good model fails, nothing normalised twice.

Each test builds a tiny model that got the wrong verdict from edgeact 0.1 and asserts the right one.
"""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from converters import ConvertOptions, convert
from edgeact.cli import cli
from edgeact.config import Format
from edgeact.errors import VerificationError
from edgeact.runtime import open_runner

BOTH = (Format.TFLITE, Format.ONNX)


def _convert(model, data, out, **options):
    """The report, whether or not the checks passed."""
    try:
        return convert(model, data, out, ConvertOptions(progress=False, **options))
    except VerificationError as exc:
        return exc.report


def test_collapsed_softmax_fails(keras, tmp_path):
    """A 1000-way softmax of an untrained head is ~0.001 everywhere: below half an INT8 step (1/256), so the
    INT8 output is all zeros. edgeact 0.1 called two zero-ish vectors identical (cosine 1) and passed it."""
    L = keras.layers
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu")(inputs))
    head = L.Dense(1000, activation="softmax", name="scores",
                   kernel_initializer=keras.initializers.RandomNormal(stddev=0.01, seed=0))
    model = keras.Model(inputs, head(x), name="collapse")
    data = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    report = _convert(model, data, tmp_path, samples=30, holdout=10)
    (check,) = [c for c in report.checks if c.subject == "tflite int8 vs keras"]
    got = open_runner(tmp_path / "collapse_int8.tflite").predict(data[:5].astype(np.float32) / 255)["scores"]
    assert not np.any(got)  # the INT8 model really outputs zeros
    assert not check.passed and check.metrics["collapsed"] == "all zero"
    assert "collapsed" in check.summary and "calibration" in check.advice
    assert not report.checks_passed


def _rescaling_model(keras):
    L = keras.layers
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu")(x))
    return keras.Model(inputs, L.Dense(3, activation="softmax", name="scores")(x), name="selfnorm")


def test_a_model_that_normalises_its_input_gets_raw_pixels(keras, tmp_path):
    model = _rescaling_model(keras)
    pixels = np.random.default_rng(1).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    report = _convert(model, pixels, tmp_path / "auto", samples=30, holdout=10)
    assert report.preprocessing["preset"] == "none"  # the identity: the model scales itself
    assert [n["layer"] for n in report.input_normalization] == ["rescale"]
    assert report.calibration["input_max"] > 200  # the model saw raw pixels, as in training
    assert report.checks_passed


def test_an_explicit_preset_that_normalises_twice_warns_naming_the_layer(keras, tmp_path):
    path = tmp_path / "selfnorm.keras"
    _rescaling_model(keras).save(path)
    np.save(tmp_path / "px.npy", np.random.default_rng(1).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8))
    result = CliRunner().invoke(cli, ["convert", str(path), "-c", str(tmp_path / "px.npy"), "-o", str(tmp_path / "o"),
                                      "--preprocess", "mobilenet", "--samples", "30", "--holdout", "10"])
    assert "layer 'rescale'" in result.stderr and "normalises it again" in result.stderr
    assert "--preprocess none" in result.stderr


def test_deep_float_export_is_judged_relative_to_its_range(keras, tmp_path):
    """Float rounding in a deep stack with large outputs exceeds 1e-4 absolute at > 80 dB: that is a pass."""
    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = inputs
    for i in range(12):
        x = L.Conv2D(16, 3, padding="same", activation="relu", name=f"c{i}")(x)
    out = L.Dense(6, name="features")(L.Flatten()(x))
    model = keras.Model(inputs, L.Rescaling(1e6, name="big")(out), name="deep")
    data = np.random.default_rng(2).uniform(0, 1, (30, 8, 8, 3)).astype(np.float32)
    report = _convert(model, data, tmp_path, samples=20, holdout=10, formats=BOTH)
    floats = [c for c in report.checks_of("parity") if "fp32" in c.subject]
    assert len(floats) == 2
    assert any(c.metrics["max_abs_diff"] > 1e-4 for c in floats)  # edgeact 0.1 failed this
    for check in floats:
        assert check.passed and check.metrics["sqnr_db"] > 80, check.summary


def test_probability_map_is_judged_per_value_not_by_top1(keras, tmp_path):
    """A (H, W, 2) softmax map (mtcnn's PNet) has no single top-1; SQNR and relative error judge it."""
    L = keras.layers
    keras.utils.set_random_seed(4)
    inputs = keras.Input((12, 12, 3), name="image")
    x = L.Conv2D(8, 3, activation="relu")(inputs)
    model = keras.Model(inputs, L.Conv2D(2, 1, activation="softmax", name="prob")(x), name="pnet")
    data = np.random.default_rng(3).integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
    report = _convert(model, data, tmp_path, samples=30, holdout=10)
    assert report.output("prob").kind == "dense"
    (check,) = [c for c in report.checks if c.subject == "tflite int8 vs keras"]
    assert check.rule.startswith("dense output") and check.passed, check.summary


def test_prelu_is_reported_as_what_it_is_in_both_formats(keras, tmp_path):
    L = keras.layers
    inputs = keras.Input((10, 10, 3), name="image")
    x = L.PReLU(shared_axes=[1, 2], name="prelu")(L.Conv2D(8, 3, name="conv")(inputs))
    model = keras.Model(inputs, L.Dense(3, activation="softmax")(L.GlobalAveragePooling2D()(x)), name="prelu_net")
    model.get_layer("prelu").set_weights([np.full((1, 1, 8), 0.25, np.float32)])
    data = np.random.default_rng(5).integers(0, 256, (40, 10, 10, 3), dtype=np.uint8)
    report = _convert(model, data, tmp_path, samples=30, holdout=10, formats=BOTH)
    fusion = report.checks_of("fusion")
    assert len(fusion) == 4 and all(c.passed for c in fusion), [c.summary for c in fusion]
    onnx_int8 = report.formats["onnx"].details["fusion"]["int8"]
    assert any("PReLU" in item["reason"] for item in onnx_int8["standalone"])
    tflite = report.formats["tflite"].details["fusion"]["int8"]
    assert any(item["op"] == "PRELU" for item in tflite["standalone"])


def test_one_format_failing_keeps_the_other_and_prints_the_summary(small_cnn_file, pixels_npy, tmp_path,
                                                                    monkeypatch):
    """tf2onnx refusing a layer must not throw away the TFLite model (EfficientNet, GELU in edgeact 0.1)."""
    from converters.onnx import exporter as onnx_exporter
    from edgeact.errors import ConversionError

    def refuse(job, path):
        raise ConversionError("tf2onnx cannot export op Frobnicate in layer 'odd'; replace that layer")

    monkeypatch.setattr(onnx_exporter, "export_float_onnx", refuse)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["convert", str(small_cnn_file), "-c", str(pixels_npy), "-o", str(out),
                                      "-f", "tflite", "-f", "onnx", "--samples", "40", "--holdout", "10"])
    assert result.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["small_cnn.edgeact.json", "small_cnn_fp32.tflite",
                                                     "small_cnn_int8.tflite"]
    assert "tflite int8 vs keras" in result.stdout and "onnx: ✗ not written: tf2onnx cannot export op Frobnicate" \
        in result.stdout  # the full summary, on stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "onnx export" in errors[0] and len(errors[0]) < 300
    report = json.loads((out / "small_cnn.edgeact.json").read_text())
    assert report["formats"]["onnx"]["error"].startswith("tf2onnx cannot export op Frobnicate")
    assert report["checks_passed"] is False


def test_gelu_exports_to_onnx(keras, tmp_path):
    """Keras' exact GELU lowers to Erfc, which tf2onnx 1.17 lacks; edgeact writes it as 1 - Erf."""
    L = keras.layers
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Activation("gelu", name="gelu")(L.Conv2D(8, 3)(inputs))
    model = keras.Model(inputs, L.Dense(4, name="features")(L.GlobalAveragePooling2D()(x)), name="gelu_net")
    data = np.random.default_rng(6).uniform(-1, 1, (30, 8, 8, 3)).astype(np.float32)
    report = _convert(model, data, tmp_path, samples=20, holdout=10, formats=(Format.ONNX,))
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "gelu_net_fp32.onnx")).graph.node}
    assert "Erf" in ops
    (check,) = [c for c in report.checks if c.subject == "onnx fp32 vs keras"]
    assert check.passed and check.metrics["sqnr_db"] > 60


def test_adapted_normalization_becomes_constants_for_onnx(keras, tmp_path):
    """An adapted Normalization's statistics are variables tf2onnx made into graph inputs (ORT then refused)."""
    L = keras.layers
    norm = L.Normalization(axis=-1, name="norm")
    data = np.random.default_rng(7).uniform(0, 255, (30, 8, 8, 3)).astype(np.float32)
    norm.adapt(data)
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu")(norm(inputs)))
    model = keras.Model(inputs, L.Dense(3, activation="softmax", name="scores")(x), name="normed")
    report = _convert(model, data, tmp_path, samples=20, holdout=10, formats=BOTH)
    changed = {p["name"]: p for p in report.passes}["constant_normalization"]
    assert [c["layer"] for c in changed["changed"]] == ["norm"] and changed["max_abs_diff"] < 1e-5
    assert report.formats["onnx"].error is None and report.checks_passed


def test_open_input_size_needs_input_shape_and_converts_with_it(keras, tmp_path):
    L = keras.layers
    inputs = keras.Input((None, None, 3), name="image")
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, activation="relu")(inputs))
    path = tmp_path / "open.keras"
    keras.Model(inputs, L.Dense(3, activation="softmax")(x), name="open").save(path)
    np.save(tmp_path / "px.npy", np.random.default_rng(8).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8))
    base = ["convert", str(path), "-c", str(tmp_path / "px.npy"), "-o", str(tmp_path / "o"), "--samples", "20",
            "--holdout", "10"]
    refused = CliRunner().invoke(cli, base)
    assert refused.exit_code == 2 and "--input-shape" in refused.stderr and "open size" in refused.stderr
    assert not (tmp_path / "o").exists()
    done = CliRunner().invoke(cli, [*base, "--input-shape", "16,16,3", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["inputs"] == [{"name": "image", "shape": [16, 16, 3]}]
    assert open_runner(tmp_path / "o" / "open_int8.tflite").inputs[0].shape == (1, 16, 16, 3)


def test_profile_onnx_with_dynamic_sizes_needs_input_shape(keras, tmp_path):
    """A third-party ONNX detector with dynamic H/W: edgeact 0.1 set them to 1 and died in ONNX Runtime."""
    import tensorflow as tf
    import tf2onnx

    L = keras.layers
    inputs = keras.Input((None, None, 3), name="images")
    model = keras.Model(inputs, L.Conv2D(4, 3, name="head")(inputs))
    spec = (tf.TensorSpec((None, None, None, 3), tf.float32, name="images"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, output_path=str(tmp_path / "detector.onnx"))
    base = ["profile", str(tmp_path / "detector.onnx"), "--runs", "3", "--warmup", "1", "--json"]
    refused = CliRunner().invoke(cli, base)
    assert refused.exit_code == 2 and "--input-shape" in refused.stderr
    assert len([line for line in refused.stderr.splitlines() if line.strip()]) == 1
    done = CliRunner().invoke(cli, [*base, "--input-shape", "32,32,3"])
    assert done.exit_code == 0, done.output
    (row,) = json.loads(done.stdout)["models"]
    assert row["inputs"][0]["shape"] == [1, 32, 32, 3] and row["outputs"][0]["shape"] == [1, 30, 30, 4]


def test_progress_in_a_log_is_one_line_per_step_with_its_time(small_cnn_file, pixels_npy, tmp_path):
    """Not a terminal (CI): no progress bars, one line per step with its time, and stdout untouched."""
    import re
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "edgeact", "convert", str(small_cnn_file), "-c", str(pixels_npy),
                           "-o", str(tmp_path), "--samples", "20", "--holdout", "10", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    steps = [line for line in done.stderr.splitlines() if line.startswith("edgeact: ")]
    assert all(re.fullmatch(r"edgeact: [\w :()-]+ \.\.\. \d+\.\d s", line) for line in steps), steps
    names = [line.split(": ", 1)[1].rsplit(" ... ", 1)[0] for line in steps]
    assert names[:2] == ["loading the model", "reading calibration data"] and "tflite: int8" in names
    assert "\r" not in done.stderr  # no progress bar redraws
    assert json.loads(done.stdout)["checks_passed"] is True


def test_a_failed_int8_check_says_where_int8_loses(small_cnn_file, pixels_npy, tmp_path):
    """A ✗ says what to do next: the per-layer error of both formats comes with it, in the report and printed."""
    result = CliRunner().invoke(cli, ["convert", str(small_cnn_file), "-c", str(pixels_npy), "-o", str(tmp_path),
                                      "-f", "tflite", "-f", "onnx", "--samples", "40", "--holdout", "10",
                                      "--tolerance", "cosine=1", "--tolerance", "top1=1"])
    report = json.loads((tmp_path / "small_cnn.edgeact.json").read_text())
    assert report["checks_passed"] is False and result.exit_code == 1  # INT8 is never exactly float
    assert "where INT8 loses" in result.stdout
    formats = {row["format"] for row in report["layer_errors"]["layers"]}
    assert formats == {"tflite", "onnx"}
    never = CliRunner().invoke(cli, ["convert", str(small_cnn_file), "-c", str(pixels_npy), "-o", str(tmp_path),
                                     "--force", "--samples", "40", "--holdout", "10", "--tolerance", "cosine=1",
                                     "--layer-error", "never"])
    assert json.loads((tmp_path / "small_cnn.edgeact.json").read_text())["layer_errors"] is None
    assert "where INT8 loses" not in never.stdout
