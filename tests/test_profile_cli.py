"""`edgeact profile` as a user runs it: every option, and every mistake as one line and exit code 2."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli
from edgeact.runtime import open_runner

from .helpers import export_float_onnx, only, write_class_folders


@pytest.fixture(scope="module")
def models(converted_small, small_cnn, tmp_path_factory):
    out, _ = converted_small
    folder = tmp_path_factory.mktemp("cli_models")
    for name in ("small_cnn_int8.tflite", "small_cnn_fp32.tflite", "small_cnn.edgeact.json"):
        shutil.copy(out / name, folder / name)
    export_float_onnx(small_cnn, folder / "small_cnn_fp32.onnx")
    return folder


@pytest.fixture(scope="module")
def data(pixels_npy, tmp_path_factory):
    pixels = np.load(pixels_npy)[:32]
    labels = np.arange(32) % 4
    root = tmp_path_factory.mktemp("cli_data")
    np.savez(root / "data.npz", x=pixels, y=labels)
    write_class_folders(root / "classes", pixels, labels, ["a", "b", "c", "d"])
    write_class_folders(root / "three", pixels[:9], labels[:9] % 3, ["a", "b", "c"])
    return root


def run(args: list[str], expect: int = 0):
    result = CliRunner().invoke(cli, ["profile", *map(str, args)])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


def run_json(args: list[str]) -> dict:
    return json.loads(run([*args, "--json"]).stdout)


def error_of(args: list[str]) -> str:
    """The one line a user sees for a mistake, with exit code 2."""
    result = run(args, expect=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def test_table_with_data_and_keras_reference(models, data, small_cnn_file):
    result = run([models / "small_cnn_int8.tflite", models / "small_cnn_fp32.tflite", "--data", data / "classes",
                  "--reference", small_cnn_file, "--runs", 20, "--warmup", 2, "--threads", 2, "--no-progress"])
    lines = result.stdout.splitlines()  # two models: one row per metric, one column per model
    assert next(line for line in lines if "small_cnn_int8.tflite" in line).split() == [
        "small_cnn_int8.tflite", "small_cnn_fp32.tflite"]
    assert next(line for line in lines if line.startswith("runtime ")).split()[1:] == ["litert", "litert"]
    assert next(line for line in lines if line.startswith("top-1 accuracy")).count("%") == 2
    assert "data: image folder" in result.stdout and "4 classes" in result.stdout
    assert "reference:" in result.stdout and "top-1" in next(l for l in lines if l.startswith("reference:"))


def test_json_keys_runs_warmup_threads(models, data, small_cnn, small_cnn_file):
    """Every figure recomputed: the latency statistics from the row's own timings, top-1 from
    the labels and a prediction of the same model on x/255 (the report's `unit` preprocessing),
    the agreement from Keras' own prediction."""
    report = run_json([models / "small_cnn_int8.tflite", "--data", data / "data.npz", "--reference", small_cnn_file,
                       "--runs", 17, "--warmup", 3, "--threads", 1])
    row = report["models"][0]
    assert row["latency_ms"]["runs"] == 17 and len(row["timings_ms"]) == 17 and row["warmup"] == 3
    assert row["threads"] == 1 and report["settings"]["threads"] == 1
    timings = np.asarray(row["timings_ms"])
    expected = {"mean": timings.mean(), "std": timings.std(), "min": timings.min(), "max": timings.max(),
                **{f"p{p}": np.percentile(timings, p) for p in (50, 90, 99)}}
    assert {k: row["latency_ms"][k] for k in expected} == pytest.approx(expected)
    npz = np.load(data / "data.npz")
    x, y = npz["x"].astype(np.float32) / 255, npz["y"]
    predicted = only(open_runner(models / "small_cnn_int8.tflite").predict(x)).argmax(-1)
    assert row["accuracy"]["samples"] == 32
    assert row["accuracy"]["top1"] == pytest.approx(float(np.mean(predicted == y)))
    keras_top1 = np.asarray(small_cnn.predict(x, verbose=0)).argmax(-1)
    assert row["reference"]["top1_agreement"] == pytest.approx(float(np.mean(predicted == keras_top1)))
    assert report["reference"]["kind"] == "keras"
    assert row["format"] == "tflite" and row["runtime"] == "litert" and row["delegate"] == "xnnpack"
    assert row["size_bytes"] == (models / "small_cnn_int8.tflite").stat().st_size


def test_float_reference_tflite_and_onnx_models(models, data):
    report = run_json([models / "small_cnn_int8.tflite", models / "small_cnn_fp32.onnx", "--data", data / "data.npz",
                       "--reference", models / "small_cnn_fp32.tflite", "--runs", 5])
    onnx_row = report["models"][1]
    assert onnx_row["format"] == "onnx" and onnx_row["runtime"] == "onnxruntime"
    assert onnx_row["reference"]["max_abs_diff"] < 1e-5  # two float exports of the same model
    assert onnx_row["preprocessing"] == "unit"  # found small_cnn.edgeact.json from small_cnn_fp32.onnx


def test_repeated_runtime_gives_a_row_per_runtime(models):
    report = run_json([models / "small_cnn_int8.tflite", "--runtime", "litert", "--runtime", "tf-lite", "--runs", 5])
    assert [r["runtime"] for r in report["models"]] == ["litert", "tf-lite"]


def test_runtime_that_runs_none_of_the_models(models):
    assert "--runtime onnxruntime runs none of the given models" in error_of(
        [models / "small_cnn_int8.tflite", "--runtime", "onnxruntime"])


# ai-edge-litert's Delegate.__del__ fails on a delegate that never loaded (AttributeError: _library).
def test_delegate_none_and_unloadable_delegates(models, tmp_path):
    report = run_json([models / "small_cnn_int8.tflite", "--delegate", "none", "--runs", 5])
    assert report["models"][0]["delegate"] == "none"
    assert "install libedgetpu1-std" in error_of([models / "small_cnn_int8.tflite", "--delegate", "edgetpu"])
    assert "cannot load delegate library" in error_of(
        [models / "small_cnn_int8.tflite", "--delegate", tmp_path / "libmissing.so"])
    assert "unknown delegate 'gpu'" in error_of([models / "small_cnn_int8.tflite", "--delegate", "gpu"])


def test_streams(models):
    report = run_json([models / "small_cnn_int8.tflite", "--streams", 2, "--runs", 40, "--threads", 2])
    streams = report["models"][0]["streams"]
    assert streams["streams"] == 2 and streams["inferences"] == 40 and streams["images_per_s"] > 0
    assert report["settings"]["streams"] == 2


def test_targets(models):
    report = run_json([models / "small_cnn_int8.tflite", "--target", "rpi4", "--runs", 5])
    assert report["target"]["name"] == "rpi4"
    if os.uname().machine not in ("aarch64", "armv7l"):
        assert any("not on a Raspberry Pi 4" in n for n in report["notes"])
    message = error_of([models / "small_cnn_fp32.tflite", "--target", "coral-usb"])
    assert "target coral-usb" in message and "full-integer INT8" in message
    assert "edgetpu_compiler" in error_of([models / "small_cnn_int8.tflite", "--target", "coral-devboard"])
    assert "runtime litert or tflite-runtime" in error_of(
        [models / "small_cnn_int8.tflite", "--target", "rpi5", "--runtime", "tf-lite"])


def test_preprocess_override_changes_what_the_model_sees(models, data):
    base = [models / "small_cnn_fp32.tflite", "--data", data / "data.npz", "--reference",
            models / "small_cnn_fp32.tflite", "--runs", 3]
    as_reported = run_json(base)["models"][0]
    torch = run_json([*base, "--preprocess", "torch"])["models"][0]
    assert as_reported["preprocessing"] == "unit" and torch["preprocessing"] == "torch"
    custom = run_json([*base, "--mean", "127.5", "--std", "127.5"])["models"][0]
    assert custom["preprocessing"] == "custom"
    # the reference is fed the same inputs, so a float model still agrees exactly
    assert torch["reference"]["max_abs_diff"] == 0 and custom["reference"]["max_abs_diff"] == 0


def test_limit_isolate_and_progress(models, data):
    report = run_json([models / "small_cnn_int8.tflite", "--data", data / "classes", "--limit", 10, "--isolate",
                       "--runs", 4, "--progress"])
    assert report["data"]["samples"] == 10 and report["models"][0]["accuracy"]["samples"] == 10
    assert report["settings"]["isolate"] is True


def test_csv_markdown_and_plot_files(models, data, tmp_path):
    result = run([models / "small_cnn_int8.tflite", models / "small_cnn_fp32.onnx", "--data", data / "data.npz",
                  "--runs", 10, "--csv", tmp_path / "p.csv", "--markdown", tmp_path / "p.md",
                  "--plot", tmp_path / "p.png"])
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].startswith("model,name,format") and "latency_ms.p50" in rows[0] and len(rows) == 3
    markdown = (tmp_path / "p.md").read_text()
    assert "| small_cnn_int8.tflite | tflite |" in markdown and "| small_cnn_fp32.onnx | onnx |" in markdown
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {tmp_path / 'p.png'}" in result.stderr


def test_plot_without_matplotlib(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert "pip install matplotlib" in error_of([models / "small_cnn_int8.tflite", "--runs", 2,
                                                 "--plot", tmp_path / "p.png"])


@pytest.mark.parametrize("runs, message", [("0", "--runs 0: give at least 1"), ("-5", "--runs -5")])
def test_runs_zero_or_negative(models, runs, message):
    assert message in error_of([models / "small_cnn_int8.tflite", "--runs", runs])


@pytest.mark.parametrize("content, message", [
    (b"definitely not a model", "not a TFLite model"),
    (b"", "not a TFLite model"),
])
def test_not_a_model(tmp_path, content, message):
    path = tmp_path / "fake.tflite"
    path.write_bytes(content)
    assert message in error_of([path])


def test_truncated_and_corrupted_models(models, tmp_path):
    data = (models / "small_cnn_int8.tflite").read_bytes()
    (tmp_path / "truncated.tflite").write_bytes(data[: len(data) * 2 // 3])
    assert "corrupt or truncated" in error_of([tmp_path / "truncated.tflite"])
    corrupted = bytearray(data)
    corrupted[8:40] = bytes(32)
    (tmp_path / "corrupted.tflite").write_bytes(bytes(corrupted))
    assert error_of([tmp_path / "corrupted.tflite"]).startswith("error: ")
    (tmp_path / "broken.onnx").write_bytes((models / "small_cnn_fp32.onnx").read_bytes()[:300])
    assert "not a valid ONNX model" in error_of([tmp_path / "broken.onnx"])


def test_wrong_files_and_paths(models, tmp_path):
    (tmp_path / "model.pb").write_bytes(b"x")
    assert "not a .tflite or .onnx model" in error_of([tmp_path / "model.pb"])
    assert "does not exist" in error_of([tmp_path / "missing.tflite"])
    assert "--data" in error_of([models / "small_cnn_int8.tflite", "--data", tmp_path / "nothing"])
    assert "--reference" in error_of([models / "small_cnn_int8.tflite", "--reference", tmp_path / "none.keras"])


def test_data_that_does_not_fit_the_model(models, tmp_path, data):
    np.savez(tmp_path / "mnist_like.npz", x=np.zeros((5, 28, 28), np.uint8), y=np.zeros(5, np.int64))
    assert "samples of shape (28, 28)" in error_of([models / "small_cnn_int8.tflite", "--data",
                                                    tmp_path / "mnist_like.npz"])
    assert "3 class folders but small_cnn_int8.tflite outputs 4 classes" in error_of(
        [models / "small_cnn_int8.tflite", "--data", data / "three"])
    np.savez(tmp_path / "labels.npz", x=np.zeros((5, 16, 16, 3), np.uint8), y=np.full(5, 7))
    assert "label 7" in error_of([models / "small_cnn_int8.tflite", "--data", tmp_path / "labels.npz"])


def test_console_script_end_to_end(models, data, tmp_path):
    """The installed `edgeact` command: a table and exit 0, then a mistake and exit 2."""
    edgeact = Path(sys.executable).with_name("edgeact")
    done = subprocess.run([edgeact, "profile", models / "small_cnn_int8.tflite", "--data", data / "data.npz",
                           "--runs", "5"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "small_cnn_int8.tflite" in done.stdout
    done = subprocess.run([edgeact, "profile", models / "small_cnn_int8.tflite", "--runs", "0"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.strip() == "error: --runs 0: give at least 1 timed run"


def test_unwritable_report_files_fail_before_measuring(tmp_path):
    """--csv/--markdown/--plot under a file: one error line before any model is loaded."""
    from click.testing import CliRunner

    from edgeact.cli import cli

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for option, name in (("--csv", "x.csv"), ("--markdown", "x.md"), ("--plot", "x.png")):
        result = CliRunner().invoke(cli, ["profile", str(tmp_path / "missing.tflite"), option, str(blocker / name)])
        assert result.exit_code == 2 and "is a file" in result.stderr, result.stderr


def test_delegate_that_cannot_load_is_one_line_in_a_real_process(tmp_path):
    """LiteRT's half-made Delegate prints a traceback from __del__ at exit; it must not reach the user."""
    import subprocess
    import sys

    for delegate in ("edgetpu", str(tmp_path / "libnothing.so")):
        done = subprocess.run([sys.executable, "-m", "edgeact", "profile", str(_any_model(tmp_path)),
                               "--delegate", delegate, "--runs", "1", "--no-progress"],
                              capture_output=True, text=True, timeout=120)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr


def _any_model(tmp_path):
    """A tiny float .tflite made with TensorFlow."""
    import tensorflow as tf

    inputs = tf.keras.Input((4,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs))
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path
