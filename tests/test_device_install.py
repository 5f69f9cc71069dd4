"""The README's older-Raspberry-Pi install, for real: Python 3.9, numpy<2, tflite-runtime (no
schema, no flatbuffers, no TensorFlow), `pip install --no-deps -e .`; inspect, profile and the
frame API (with Pillow for resizing) must work."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python39() -> str | None:
    # pyenv's own install first: its python3.9 shim fails unless 3.9 is the selected version.
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    return pyenv[-1] if pyenv else shutil.which("python3.9")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tflite-runtime wheels: Linux only")
def test_python39_tflite_runtime_install_inspects_and_profiles(converted_small, tmp_path):
    python = _python39()
    if python is None:
        pytest.skip("no Python 3.9 on this machine (pyenv install 3.9 to run this test)")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["numpy<2", "tflite-runtime", "click", "tqdm", "pillow"], check=True, timeout=900)
    subprocess.run(pip + ["--no-deps", "-e", str(ROOT)], check=True, timeout=600)
    out, _ = converted_small
    model = shutil.copy(out / "small_cnn_int8.tflite", tmp_path / "small_cnn_int8.tflite")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    edgeact = str(venv / "bin" / "edgeact")
    probe = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import importlib.util as u; print([n for n in ('flatbuffers', 'tensorflow', "
                            "'ai_edge_litert') if u.find_spec(n)])"], capture_output=True, text=True, env=env)
    assert probe.stdout.strip() == "[]"  # the reader really runs without any schema package
    inspect = subprocess.run([edgeact, "inspect", "--json", str(model)], capture_output=True, text=True, env=env)
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout)["op_counts"]["DEPTHWISE_CONV_2D"] == 1
    profile = subprocess.run([edgeact, "profile", str(model), "--runs", "5", "--warmup", "1", "--json"],
                             capture_output=True, text=True, env=env, cwd=tmp_path)
    assert profile.returncode == 0, profile.stderr
    row = json.loads(profile.stdout)["models"][0]
    assert row["runtime"] == "tflite-runtime" and row["latency_ms"]["runs"] == 5
    frames = subprocess.run([str(venv / "bin" / "python"), "-c",
                             "import numpy as np, edgeact; m = edgeact.load('small_cnn_int8.tflite'); "
                             "top = m.classify(np.full((20, 30, 3), 128, np.uint8), top_k=2); "
                             "print(len(top), sorted(m.predict(np.zeros((1, 16, 16, 3), np.float32))))"],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert frames.returncode == 0, frames.stderr
    names = [o.name for o in __import__("edgeact.runtime", fromlist=["open_runner"]).open_runner(model).outputs]
    assert frames.stdout.strip() == f"2 {sorted(names)}"  # frames of another size, outputs by name
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(model.read_bytes()[:300])
    refused = subprocess.run([edgeact, "profile", str(bad)], capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1
