"""`import edgeact` and `edgeact profile` on a .tflite need numpy and a TFLite runtime only.

Every Python process of the run (the command and the child profiler it starts, which runs
the models) starts with a `sitecustomize` on PYTHONPATH that blocks TensorFlow, Keras,
tf2onnx, onnx, converters and calibration (`sys.modules[name] = None`: an import raises
ImportError and `importlib.util.find_spec` answers None, as on a Raspberry Pi with
ai-edge-litert alone) and logs each process start and each attempt to import a blocked name.
The log shows that the block reached the child that ran the models, and that nobody tried.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCKED = ("tensorflow", "keras", "tf2onnx", "onnx", "converters", "calibration")

SITECUSTOMIZE = f"""
import builtins, importlib, json, os, sys
BLOCKED = {BLOCKED!r}
LOG = os.environ["EDGEACT_TEST_IMPORT_LOG"]

def _log(line):
    with open(LOG, "a") as f:
        f.write(f"{{os.getpid()}} {{line}}\\n")

for name in BLOCKED:
    sys.modules[name] = None
_log("start " + json.dumps(getattr(sys, "orig_argv", sys.argv)))

_import = builtins.__import__
def _logged_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and name.split(".")[0] in BLOCKED:
        _log("import " + name)
    return _import(name, globals, locals, fromlist, level)
builtins.__import__ = _logged_import

_import_module = importlib.import_module
def _logged_import_module(name, package=None):
    if not name.startswith(".") and name.split(".")[0] in BLOCKED:
        _log("import " + name)
    return _import_module(name, package)
importlib.import_module = _logged_import_module
"""

CHILD = """
import json, sys
import edgeact
from edgeact.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"exit": code}), file=sys.stderr)
"""


def run_without_tensorflow(tmp_path: Path, *args) -> tuple[int, str, str, list[str]]:
    """Runs `edgeact profile ARGS` with the block in every process; returns exit, stdout, stderr, log."""
    site = tmp_path / "block-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "imports.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "EDGEACT_TEST_IMPORT_LOG": str(log)}
    done = subprocess.run([sys.executable, "-c", CHILD, "profile", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
    status = json.loads(done.stderr.strip().splitlines()[-1])
    stderr = "\n".join(done.stderr.strip().splitlines()[:-1])
    return status["exit"], done.stdout, stderr, log.read_text().splitlines()


@pytest.fixture(scope="module")
def labelled_npz(pixels_npy, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("notf") / "data.npz"
    np.savez(path, x=np.load(pixels_npy)[:20], y=np.arange(20) % 4)
    return path


def test_profile_runs_without_tensorflow(converted_small, labelled_npz, tmp_path):
    out, _ = converted_small
    code, stdout, stderr, log = run_without_tensorflow(
        tmp_path, out / "small_cnn_int8.tflite", out / "small_cnn_fp32.tflite", "--data", labelled_npz,
        "--reference", out / "small_cnn_fp32.tflite", "--runs", 10, "--json", "--csv", tmp_path / "p.csv")
    assert code == 0, stderr
    kinds = [line.split(" ", 2)[1:] for line in log]
    starts = [rest for kind, rest in kinds if kind == "start"]
    # The block reached the child profilers that ran the two models, not only the command.
    assert sum("edgeact.measure.profiler" in line for line in starts) >= 2, log
    assert [rest for kind, rest in kinds if kind == "import"] == []
    report = json.loads(stdout)
    assert [r["runtime"] for r in report["models"]] == ["litert", "litert"]
    assert report["models"][0]["accuracy"]["samples"] == 20
    assert report["models"][1]["reference"]["max_abs_diff"] == 0
    assert (tmp_path / "p.csv").exists()


def test_without_tensorflow_a_keras_reference_or_tf_lite_is_a_clear_error(converted_small, small_cnn_file, tmp_path):
    out, _ = converted_small
    code, _, stderr, _ = run_without_tensorflow(tmp_path, out / "small_cnn_int8.tflite", "--reference", small_cnn_file)
    assert code == 2 and stderr == f"error: --reference {small_cnn_file} is a Keras model, which needs " \
        "TensorFlow; pip install 'edgeact[convert]', or give a float .tflite/.onnx"
    code, _, stderr, _ = run_without_tensorflow(tmp_path, out / "small_cnn_int8.tflite", "--runtime", "tf-lite")
    assert code == 2 and "runtime 'tf-lite' is not installed; pip install tensorflow" in stderr
