"""`edgeact convert` and `edgeact inspect` driven like a user: CliRunner, exit codes, one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli

from .helpers import assert_one_line_error


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("command", [[], ["convert"], ["inspect"]])
def test_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_convert_prints_the_summary_and_json(small_cnn_file, pixels_npy, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\nfish\n")
    result = invoke("convert", small_cnn_file, "-c", pixels_npy, "-o", tmp_path / "out", "--samples", 40,
                    "--holdout", 10, "--labels", labels)
    assert result.exit_code == 0, result.output
    assert "fold_batchnorm" in result.output and "all checks passed" in result.output
    assert "int8 vs keras" in result.output
    report = json.loads((tmp_path / "out" / "small_cnn.edgeact.json").read_text())
    assert report["labels"] == ["cat", "dog", "bird", "fish"]
    result = invoke("convert", small_cnn_file, "-c", pixels_npy, "-o", tmp_path / "out", "--samples", 40,
                    "--holdout", 10, "--force", "--json", "--preprocess", "mobilenet")
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed["preprocessing"]["preset"] == "mobilenet" and printed["checks_passed"] is True


def test_convert_image_folder_skips_non_images(small_cnn_file, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):  # blocky, not per-pixel noise: the model's output must vary from image to image
        blocks = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
        Image.fromarray(np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    result = invoke("convert", small_cnn_file, "-c", tmp_path / "photos", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    calibration = json.loads(result.stdout)["calibration"]
    assert calibration["skipped"] == {"not an image": 1, "unreadable": 1}
    assert calibration["calibration_samples"] + calibration["holdout_samples"] == 12


def test_random_calibration_warns(small_cnn_file, tmp_path):
    result = invoke("convert", small_cnn_file, "-c", "random", "-o", tmp_path, "--samples", 20, "--holdout", 10)
    assert result.exit_code == 0
    assert "warning: calibrating on random data" in result.stderr
    assert (tmp_path / "small_cnn_int8.tflite").exists()


def test_custom_mean_std(tmp_path):
    """A per-channel --std reaches the model: the INT8 input's scale is that of (x - 127.5) / std_c.

    Every image holds 0 and 255 in each channel, so whichever samples calibrate, the normalised
    input spans [-127.5 / min(std), 127.5 / min(std)] = [-4, 4]: scale 8/255. A scalar std (the
    first value only) would give 2/255, an ignored one 255/255 or 1/255."""
    keras = pytest.importorskip("keras")
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    model.save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(40, 8, 8, 3)).astype(np.uint8)
    pixels[:, 0, 0, :], pixels[:, 0, 1, :] = 0, 255
    np.save(tmp_path / "pixels.npy", pixels)
    std = [127.5, 63.75, 31.875]
    result = invoke("convert", tmp_path / "m.keras", "-c", tmp_path / "pixels.npy", "-o", tmp_path / "out",
                    "--mean", "127.5", "--std", ",".join(map(str, std)), "--samples", 20, "--holdout", 10,
                    "--format", "tflite", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["preprocessing"]["mean"] == [127.5] and report["preprocessing"]["std"] == std
    from ai_edge_litert.interpreter import Interpreter

    scale, zero_point = Interpreter(str(tmp_path / "out" / "m_int8.tflite")).get_input_details()[0]["quantization"]
    lo, hi = -127.5 / min(std), 127.5 / min(std)
    assert scale == pytest.approx((hi - lo) / 255, rel=1e-3)
    assert abs(zero_point) <= 1


def no_outputs_left(folder):
    return not folder.exists() or not [p for p in folder.iterdir()]


def test_missing_model(tmp_path, pixels_npy):
    assert_one_line_error(invoke("convert", tmp_path / "nope.keras", "-c", pixels_npy, "-o", tmp_path / "out"),
                          "does not exist")
    assert no_outputs_left(tmp_path / "out")


def test_corrupt_model(tmp_path, pixels_npy):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 this is not a keras archive")
    assert_one_line_error(invoke("convert", bad, "-c", pixels_npy, "-o", tmp_path / "out"), "bad.keras")
    h5 = tmp_path / "bad.h5"
    h5.write_bytes(b"garbage")
    assert_one_line_error(invoke("convert", h5, "-c", pixels_npy, "-o", tmp_path / "out"), "cannot load")
    assert_one_line_error(invoke("convert", tmp_path / "model.onnx", "-c", pixels_npy), "does not exist")
    assert no_outputs_left(tmp_path / "out")


def test_truncated_keras_file(small_cnn_file, tmp_path, pixels_npy):
    cut = tmp_path / "cut.keras"
    cut.write_bytes(small_cnn_file.read_bytes()[:2000])
    assert_one_line_error(invoke("convert", cut, "-c", pixels_npy, "-o", tmp_path / "out"), "cut.keras")
    assert no_outputs_left(tmp_path / "out")


def test_subclassed_model(keras, tmp_path, pixels_npy):
    @keras.saving.register_keras_serializable(package="edgeact_tests")
    class Tiny(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(keras.ops.reshape(x, (-1, 16 * 16 * 3)))

    model = Tiny()
    model(np.zeros((1, 16, 16, 3), "float32"))
    path = tmp_path / "sub.keras"
    model.save(path)
    assert_one_line_error(invoke("convert", path, "-c", pixels_npy, "-o", tmp_path / "out"),
                          "subclassed", "rebuild it as a functional model")


def test_empty_and_unreadable_calibration_folders(small_cnn_file, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", empty, "-o", tmp_path / "out"),
                          "holds no images")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("x")
    (junk / "b.png").write_bytes(b"not a png")
    result = invoke("convert", small_cnn_file, "-c", junk, "-o", tmp_path / "out")
    assert_one_line_error(result, "1 not an image", "1 unreadable")
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", tmp_path / "missing", "-o", tmp_path / "out"),
                          "does not exist")
    assert no_outputs_left(tmp_path / "out")


@pytest.mark.parametrize("array, fragment", [
    (np.zeros((5, 8, 8, 3), np.uint8), "shape (8, 8, 3)"),
    (np.full((5, 16, 16, 3), np.nan, np.float32), "NaN or infinite"),
    (np.full((5, 16, 16, 3), np.inf, np.float32), "NaN or infinite"),
    (np.zeros((0, 16, 16, 3), np.uint8), "no samples"),
])
def test_bad_arrays(small_cnn_file, tmp_path, array, fragment):
    path = tmp_path / "data.npy"
    np.save(path, array)
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", path, "-o", tmp_path / "out"), fragment)
    assert no_outputs_left(tmp_path / "out")


def test_npz_and_corrupt_npy(small_cnn_file, tmp_path):
    good = tmp_path / "data.npz"
    np.savez(good, x=np.random.default_rng(0).uniform(0, 1, (20, 16, 16, 3)).astype("float32"))
    assert invoke("convert", small_cnn_file, "-c", good, "-o", tmp_path / "a", "--samples", 10).exit_code == 0
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", bad, "-o", tmp_path / "b"), "cannot read")


def test_existing_output_needs_force(converted_small, small_cnn_file, pixels_npy):
    out, _ = converted_small
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", pixels_npy, "-o", out), "--force")
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_bad_option_values(small_cnn_file, pixels_npy, tmp_path):
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", pixels_npy, "--percentile", 0), "--percentile")
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", pixels_npy, "--mean", "abc"), "not a list of numbers")
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", pixels_npy, "--std", "0"), "--std")
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", pixels_npy, "-o", tmp_path / "o",
                                 "--labels", labels), "2 labels", "(4,)")
    assert invoke("convert", small_cnn_file, "-c", pixels_npy, "--io", "int4").exit_code == 2


def test_conversion_failure_leaves_no_partial_files(small_cnn_file, pixels_npy, tmp_path, monkeypatch):
    from converters.tflite import exporter as tflite_exporter
    from edgeact.errors import ConversionError

    def refuse(*args, **kwargs):
        raise ConversionError("TFLiteConverter could not write the INT8 model: test")

    monkeypatch.setattr(tflite_exporter, "export_int8", refuse)
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", pixels_npy, "-o", tmp_path / "out"),
                          "could not write the INT8 model")
    assert no_outputs_left(tmp_path / "out")  # the float model written before it was discarded


def test_inspect_tflite(converted_small):
    out, _ = converted_small
    result = invoke("inspect", out / "small_cnn_int8.tflite")
    assert result.exit_code == 0
    assert "CONV_2D" in result.output and "RELU6" in result.output and "int8" in result.output
    info = json.loads(invoke("inspect", out / "small_cnn_int8.tflite", "--json").stdout)
    assert info["op_counts"]["CONV_2D"] == 1
    assert info["inputs"][0]["dtype"] == "int8"
    fused = {op["type"]: op["fused_activation"] for op in info["ops"]}
    assert fused["DEPTHWISE_CONV_2D"] == "RELU6"


def test_inspect_bad_files(tmp_path, converted_small):
    out, _ = converted_small
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"hello world, not a flatbuffer")
    assert_one_line_error(invoke("inspect", junk), "not a TFLite model")
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes((out / "small_cnn_int8.tflite").read_bytes()[:600])
    assert_one_line_error(invoke("inspect", truncated), "corrupt or truncated")
    assert_one_line_error(invoke("inspect", tmp_path / "missing.tflite"), "does not exist")
    assert_one_line_error(invoke("inspect", tmp_path), "not a .tflite or .onnx")


def test_console_script_and_module_entry_points():
    for argv in (["edgeact", "--version"], [sys.executable, "-m", "edgeact", "--version"]):
        if argv[0] == "edgeact":
            argv[0] = str(__import__("pathlib").Path(sys.executable).with_name("edgeact"))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "0.1.0" in done.stdout


def test_output_folder_that_is_a_file(small_cnn_file, pixels_npy, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", pixels_npy, "-o", blocker), "is a file")
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", pixels_npy, "-o", blocker / "sub"), "is a file")


def test_failed_convert_leaves_no_new_folder(small_cnn_file, tmp_path):
    out = tmp_path / "new" / "out"
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3, 3, 3), np.uint8))
    assert_one_line_error(invoke("convert", small_cnn_file, "-c", bad, "-o", out), "shape")
    assert not (tmp_path / "new").exists()


def test_outputs_are_readable_by_others_and_the_report_is_strict_json(converted_small):
    out, _ = converted_small
    umask = os.umask(0)
    os.umask(umask)
    for path in out.iterdir():  # the usual mode for new files, not mkstemp's private 0600
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (path.name, oct(path.stat().st_mode))

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    json.loads((out / "small_cnn.edgeact.json").read_text(), parse_constant=refuse)


def test_unregistered_subclassed_model_gets_the_advice_not_kerass_message(keras, tmp_path, pixels_npy):
    """Keras cannot even load an unregistered subclass; its long message used to be cut mid-word."""
    class Unregistered(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(keras.ops.reshape(x, (-1, 16 * 16 * 3)))

    model = Unregistered()
    model(np.zeros((1, 16, 16, 3), "float32"))
    path = tmp_path / "unregistered.keras"
    model.save(path)
    result = invoke("convert", path, "-c", pixels_npy, "-o", tmp_path / "out")
    assert_one_line_error(result, "custom class 'Unregistered'", "rebuild it as a functional model")
    assert result.output.rstrip().endswith("then convert that file")
    assert no_outputs_left(tmp_path / "out")
