"""A 1-D CNN with an open length (issue 21): Conv1D + BatchNorm + ReLU + Cropping1D + pooling converts in
both formats with --input-shape, BatchNorm folded and ReLU fused, and profile and layers run on it."""
from __future__ import annotations

import collections
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli
from edgeact.runtime import open_runner
from tests.conftest import randomize_batchnorm
from tests.helpers import only


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow
def test_a_conv1d_model_with_an_open_length_converts_fused_and_profiles(keras, tmp_path):
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 4), name="seq")
    x = L.ReLU(name="r1")(L.BatchNormalization(name="bn1")(L.Conv1D(8, 5, use_bias=False, name="c1")(inputs)))
    x = L.MaxPooling1D(2, name="pool")(L.Cropping1D((2, 3), name="crop")(x))
    x = L.ReLU(name="r2")(L.BatchNormalization(name="bn2")(L.Conv1D(8, 3, name="c2")(x)))
    x = L.GlobalAveragePooling1D(name="gap")(L.AveragePooling1D(2, name="apool")(x))
    model = keras.Model(inputs, L.Dense(3, activation="softmax", name="scores")(x), name="seq1d")
    randomize_batchnorm(model)
    model.save(tmp_path / "seq1d.keras")
    rng = np.random.default_rng(1)
    t = np.linspace(0, 6, 64)[None, :, None]
    data = np.sin(t * rng.uniform(1, 4, (60, 1, 4)) + rng.uniform(0, 3, (60, 1, 4))).astype(np.float32)
    np.save(tmp_path / "seq.npy", data)
    out = tmp_path / "out"
    done = invoke("convert", tmp_path / "seq1d.keras", "-c", tmp_path / "seq.npy", "-o", out, "-f", "tflite",
                  "-f", "onnx", "--input-shape", "64,4", "--samples", 40, "--holdout", 20, "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    passes = {p["name"]: p for p in report["passes"]}
    assert len(passes["fold_batchnorm"]["changed"]) == 2 and len(passes["fuse_activation"]["changed"]) == 2
    for variant in ("fp32", "int8"):
        ops = collections.Counter(o["op_name"] for o in Interpreter(str(out / f"seq1d_{variant}.tflite"))
                                  ._get_ops_details())
        assert ops["CONV_2D"] == 2 and not {"RELU", "MUL", "ADD"} & set(ops), ops  # BN folded, ReLU fused
        assert report["formats"]["tflite"]["details"]["fusion"][variant]["fused"]["CONV_2D"] == {"RELU": 2}
    nodes = [n.op_type for n in onnx.load(str(out / "seq1d_fp32.onnx")).graph.node]
    assert nodes.count("Conv") == 2 and not {"BatchNormalization", "Add", "Mul"} & set(nodes), nodes
    assert all(nodes[i + 1] == "Relu" for i, op in enumerate(nodes) if op == "Conv"), nodes  # Relu on the Conv
    int8 = [n.op_type for n in onnx.load(str(out / "seq1d_int8.onnx")).graph.node]
    assert "Relu" not in int8 and "Add" not in int8, int8
    want = model.predict(data[:20], verbose=0)  # parity recomputed against Keras at the open length
    for name in ("seq1d_int8.tflite", "seq1d_int8.onnx"):
        got = only(open_runner(out / name).predict(data[:20]))
        sqnr = 10 * np.log10(np.sum(want ** 2) / np.sum((want - got) ** 2))
        assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.95 and sqnr > 30, (name, sqnr)
    prof = invoke("profile", out / "seq1d_int8.tflite", out / "seq1d_int8.onnx", "--data", tmp_path / "seq.npy",
                  "--reference", tmp_path / "seq1d.keras", "--runs", 3, "--warmup", 1, "--json")
    assert prof.exit_code == 0, prof.output
    rows = json.loads(prof.stdout)["models"]
    assert len(rows) == 2 and all(r["inputs"][0]["shape"] == [1, 64, 4] for r in rows), rows
    assert all(r["reference"]["top1_agreement"] >= 0.95 and r["samples_evaluated"] == 60 for r in rows), rows
    layers = invoke("layers", out / "seq1d_int8.tflite", out / "seq1d_int8.onnx", "--data", tmp_path / "seq.npy",
                    "--keras", tmp_path / "seq1d.keras", "--json")
    assert layers.exit_code == 0, layers.output
    rows = json.loads(layers.stdout)["layers"]
    assert {r["format"] for r in rows} == {"tflite", "onnx"} and {"c1", "c2"} <= {r["layer"] for r in rows}
