"""`import edgeact` and `edgeact profile` on a .tflite need numpy and a TFLite runtime only.

The profile runs in a child Python where TensorFlow, Keras, tf2onnx and onnx cannot be
imported (`sys.modules[name] = None` makes any import of them raise ImportError), as on a
Raspberry Pi with ai-edge-litert alone.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys
for name in ("tensorflow", "keras", "tf2onnx", "onnx", "converters", "calibration"):
    sys.modules[name] = None
import edgeact
from edgeact.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
loaded = sorted(m for m, v in sys.modules.items() if v is not None and m.split(".")[0] in
                ("tensorflow", "keras", "tf2onnx", "onnx", "converters", "calibration"))
print(json.dumps({"exit": code, "loaded": loaded}), file=sys.stderr)
"""


def run_without_tensorflow(*args) -> tuple[int, str, str, list[str]]:
    done = subprocess.run([sys.executable, "-c", CHILD, "profile", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    status = json.loads(done.stderr.strip().splitlines()[-1])
    return status["exit"], done.stdout, "\n".join(done.stderr.strip().splitlines()[:-1]), status["loaded"]


@pytest.fixture(scope="module")
def labelled_npz(pixels_npy, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("notf") / "data.npz"
    np.savez(path, x=np.load(pixels_npy)[:20], y=np.arange(20) % 4)
    return path


def test_profile_runs_without_tensorflow(converted_small, labelled_npz, tmp_path):
    out, _ = converted_small
    code, stdout, stderr, loaded = run_without_tensorflow(
        out / "small_cnn_int8.tflite", out / "small_cnn_fp32.tflite", "--data", labelled_npz,
        "--reference", out / "small_cnn_fp32.tflite", "--runs", 10, "--json", "--csv", tmp_path / "p.csv")
    assert code == 0, stderr
    assert loaded == []
    report = json.loads(stdout)
    assert [r["runtime"] for r in report["models"]] == ["litert", "litert"]
    assert report["models"][0]["accuracy"]["samples"] == 20
    assert report["models"][1]["reference"]["max_abs_diff"] == 0
    assert (tmp_path / "p.csv").exists()


def test_without_tensorflow_a_keras_reference_or_tf_lite_is_a_clear_error(converted_small, small_cnn_file):
    out, _ = converted_small
    code, _, stderr, _ = run_without_tensorflow(out / "small_cnn_int8.tflite", "--reference", small_cnn_file)
    assert code == 2 and stderr == f"error: --reference {small_cnn_file} is a Keras model, which needs " \
        "TensorFlow; pip install 'edgeact[convert]', or give a float .tflite/.onnx"
    code, _, stderr, _ = run_without_tensorflow(out / "small_cnn_int8.tflite", "--runtime", "tf-lite")
    assert code == 2 and "runtime 'tf-lite' is not installed; pip install tensorflow" in stderr
