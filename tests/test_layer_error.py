"""Per-layer error checked against independent computations on a tiny model.

Accumulated SQNR (TFLite): the model cut after each layer, converted to INT8 on its own with the
same calibration data, against the Keras model cut at the same layer, so neither the float
.tflite nor LiteRT's preserved intermediates are involved. ONNX: the INT8 model cut at each
quantized activation (onnx.utils.extract_model) run by ORT with its optimisations on, i.e.
integer kernels, not the QDQ simulation the module uses. Own SQNR: the one layer alone,
converted to INT8 with its float inputs as calibration data.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters.layer_error.measure import (
    REPORT_SAMPLES,
    SQNR_CAP_DB,
    ErrorAccumulator,
    QuantGrid,
    keras_layer_name,
    layer_errors,
    sqnr_db,
)
from edgeact.report.layer_errors import LayerErrorReport


def _sqnr(reference, approximation) -> float:
    reference = np.asarray(reference, np.float64)
    noise = reference - np.asarray(approximation, np.float64)
    return 10 * np.log10(np.sum(reference ** 2) / np.sum(noise ** 2))


def _to_tflite(model, calibration: np.ndarray | None) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s[None]] for s in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def _run_int8(model_bytes: bytes, samples: np.ndarray) -> np.ndarray:
    """A whole INT8 .tflite on float samples, outputs dequantized.

    With TFLite's builtin kernels, as the module runs them: XNNPACK's int8 MEAN rounds
    differently (0.1 dB on this model).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=model_bytes,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    (s_in, z_in), (s_out, z_out) = inp["quantization"], out["quantization"]
    results = []
    for sample in samples:
        q = np.clip(np.round(sample[None] / s_in) + z_in, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], q)
        interpreter.invoke()
        results.append((interpreter.get_tensor(out["index"]).astype(np.float64) - z_out) * s_out)
    return np.concatenate(results)


@pytest.fixture(scope="module")
def chain(keras):
    """Conv(ReLU) -> Conv -> GlobalAveragePooling -> Dense, 12x12x3; data with a wide-range channel."""
    layers = keras.layers
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 3), name="image")
    x = layers.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = layers.Conv2D(6, 3, name="c2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(4, name="fc")(x)
    model = keras.Model(inputs, outputs, name="chain")
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 1, (40, 12, 12, 3)).astype(np.float32)
    data[..., 2] *= 4.0
    return model, data


@pytest.fixture(scope="module")
def chain_tflite(chain, tmp_path_factory):
    model, data = chain
    folder = tmp_path_factory.mktemp("chain")
    (folder / "chain_fp32.tflite").write_bytes(_to_tflite(model, None))
    (folder / "chain_int8.tflite").write_bytes(_to_tflite(model, data))
    return folder


def test_accumulated_sqnr_matches_the_model_cut_after_each_layer(keras, chain, chain_tflite):
    model, data = chain
    report = layer_errors(data, tflite=(chain_tflite / "chain_fp32.tflite", chain_tflite / "chain_int8.tflite"),
                          keras_model=model, max_samples=len(data))
    rows = {r.layer: r for r in report.of_format("tflite")}
    assert set(rows) == {"c1", "c2", "gap", "fc"}
    assert [r.layer for r in report.of_format("tflite")] == ["c1", "c2", "gap", "fc"]
    for name in ("c1", "c2", "gap", "fc"):
        cut = keras.Model(model.inputs, model.get_layer(name).output)
        reference = np.asarray(cut(data, training=False))
        independent = _sqnr(reference, _run_int8(_to_tflite(cut, data), data))
        assert rows[name].sqnr_db == pytest.approx(independent, abs=0.05), name
        # The grid is the one calibrated on the same data: min/max of the float tensor.
        assert rows[name].float_min == pytest.approx(min(reference.min(), 0.0) if name == "c1" else reference.min(),
                                                     abs=1e-4)
        assert rows[name].float_max == pytest.approx(reference.max(), abs=1e-4)
        assert rows[name].range_min <= rows[name].float_min + rows[name].scale
        assert rows[name].range_max >= rows[name].float_max - rows[name].scale
        assert rows[name].clipped_fraction == 0.0  # min/max calibration on these very samples clips nothing


def test_own_sqnr_matches_the_layer_converted_alone(keras, chain, chain_tflite):
    model, data = chain
    report = layer_errors(data, tflite=(chain_tflite / "chain_fp32.tflite", chain_tflite / "chain_int8.tflite"),
                          keras_model=model, max_samples=len(data))
    row = next(r for r in report.of_format("tflite") if r.layer == "c2")
    c1_out = np.asarray(keras.Model(model.inputs, model.get_layer("c1").output)(data, training=False))
    inputs = keras.Input(c1_out.shape[1:])
    c2 = model.get_layer("c2")
    copy = type(c2).from_config(c2.get_config())  # calling c2 itself would give it a second inbound node
    alone = keras.Model(inputs, copy(inputs))
    copy.set_weights(c2.get_weights())
    reference = np.asarray(alone(c1_out, training=False))
    independent = _sqnr(reference, _run_int8(_to_tflite(alone, c1_out), c1_out))
    # Simulated in Keras vs the real INT8 kernel: a rounding step apart at most.
    assert row.own_sqnr_db == pytest.approx(independent, abs=0.5)
    # c2's own error is no worse than what it accumulates on top of c1's.
    assert row.own_sqnr_db > row.sqnr_db


def test_onnx_rows_match_the_int8_model_cut_at_each_activation(keras, chain, tmp_path):
    import onnx.utils
    import onnxruntime as ort

    from converters import ConvertOptions, convert
    from edgeact.config import Format

    model, data = chain
    convert(model, data, tmp_path, ConvertOptions(formats=(Format.ONNX,), samples=32, holdout=8, progress=False))
    fp32, int8 = tmp_path / "chain_fp32.onnx", tmp_path / "chain_int8.onnx"
    report = layer_errors(data, onnx=(fp32, int8), keras_model=model, max_samples=len(data))
    rows = report.of_format("onnx")
    assert {"c1", "c2", "gap", "fc"} <= {r.layer for r in rows}
    checked = 0
    for row in rows:
        if row.op == "Transpose" or row.layer not in ("c1", "c2", "fc"):
            continue
        cut = tmp_path / f"cut{row.depth}.onnx"
        # ORT names the last DequantizeLinear of the graph after the graph output.
        dequantized = row.tensor if row.tensor == "fc" else f"{row.tensor}_DequantizeLinear_Output"
        onnx.utils.extract_model(str(int8), str(cut), ["image"], [dequantized])
        session = ort.InferenceSession(str(cut), providers=["CPUExecutionProvider"])  # integer kernels
        float_cut = tmp_path / f"float{row.depth}.onnx"
        onnx.utils.extract_model(str(fp32), str(float_cut), ["image"], [row.tensor])
        reference_session = ort.InferenceSession(str(float_cut), providers=["CPUExecutionProvider"])
        reference = reference_session.run(None, {"image": data})[0]
        approximation = session.run(None, {"image": data})[0]
        assert row.sqnr_db == pytest.approx(_sqnr(reference, approximation), abs=0.5), row.tensor
        checked += 1
    assert checked == 3
    assert report.unmatched["onnx"] == []


def test_sqnr_degenerate_cases():
    assert sqnr_db(0.0, 0.0) == SQNR_CAP_DB  # nothing to lose, nothing lost
    assert sqnr_db(1.0, 0.0) == SQNR_CAP_DB
    assert sqnr_db(0.0, 1.0) == -SQNR_CAP_DB  # a dead float tensor that INT8 brings to life
    assert sqnr_db(100.0, 1.0) == pytest.approx(20.0)
    acc = ErrorAccumulator()
    grid = QuantGrid(0.1, 0)
    acc.add(np.array([0.0, 1.0, 20.0]), np.array([0.0, 1.0, 12.7]), grid)
    assert acc.clipped == 1  # 20 is beyond 12.7 + half a step; 1.0 is on the grid
    assert sqnr_db(acc.signal, acc.rounding_noise) == pytest.approx(10 * np.log10(401 / 7.3 ** 2))


def test_keras_layer_names_from_converted_tensor_names():
    names = ["conv2d", "conv2d_1", "re_lu"]
    assert keras_layer_name("model_1/conv2d_1_1/Relu;model_1/conv2d_1_1/BiasAdd", names) == "conv2d_1"
    assert keras_layer_name("model_1/conv2d_1/convolution", names) == "conv2d"
    assert keras_layer_name("StatefulPartitionedCall_1:0", names) == ""
    assert keras_layer_name("model_1/dense_3/MatMul") == "dense"


def test_report_round_trips_through_json(chain, chain_tflite):
    model, data = chain
    report = layer_errors(data[:4], tflite=(chain_tflite / "chain_fp32.tflite", chain_tflite / "chain_int8.tflite"))
    assert all(r.own_sqnr_db is None for r in report.layers)  # no Keras model, no own error
    again = LayerErrorReport.from_dict(json.loads(json.dumps(report.to_dict(), allow_nan=False)))
    assert again == report
    assert again.worst(1)[0].sqnr_db == min(r.sqnr_db for r in report.layers)


# --- edgeact layers, as a user runs it ------------------------------------------------------------

def _layers(args, expect: int = 0):
    from click.testing import CliRunner

    from edgeact.cli import cli

    result = CliRunner().invoke(cli, ["layers", *map(str, args)])
    assert result.exit_code == expect, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def chain_files(chain, chain_tflite):
    model, data = chain
    model.save(chain_tflite / "chain.keras")
    np.save(chain_tflite / "data.npy", data)
    return chain_tflite


def test_layers_prints_worst_first_and_writes_csv_and_json(chain_files, tmp_path):
    folder = chain_files
    csv_path = tmp_path / "layers.csv"
    result = _layers([folder / "chain_int8.tflite", "--data", folder / "data.npy", "--keras", folder / "chain.keras",
                      "--top", 2, "--csv", csv_path])
    assert "tflite INT8: 2 worst of 4 quantized tensors" in result.output
    import csv

    rows = list(csv.DictReader(csv_path.open()))
    assert [r["layer"] for r in rows] == ["c1", "c2", "gap", "fc"]
    worst = sorted(rows, key=lambda r: float(r["sqnr_db"]))[:2]
    table = result.output.split("\n")
    shown = [line.split()[1] for line in table if line[:1].isdigit()]
    assert shown == [r["layer"] for r in worst]
    data = json.loads(_layers([folder / "chain_int8.tflite", "--data", folder / "data.npy", "--json"]).stdout)
    assert {r["layer"] for r in data["layers"]} == {"c1", "c2", "gap", ""}  # no --keras: names from scopes only
    assert data["samples"] == 32


def test_layers_plot(chain_files, tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "layers.png"
    _layers([chain_files / "chain_int8.tflite", "--data", chain_files / "data.npy", "--plot", plot, "--samples", 4])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case", ["no_twin", "not_a_model", "two_tflite", "wrong_shape"])
def test_layers_mistakes_are_one_line_exit_2(chain_files, tmp_path, case):
    import shutil

    folder = chain_files
    int8 = folder / "chain_int8.tflite"
    data = folder / "data.npy"
    if case == "no_twin":
        lonely = tmp_path / "lonely_int8.tflite"
        shutil.copy(int8, lonely)
        args, words = [lonely, "--data", data], "--float"
    elif case == "not_a_model":
        args, words = [data, "--data", data], "neither .tflite nor .onnx"
    elif case == "two_tflite":
        args, words = [int8, int8, "--data", data], "two tflite models"
    else:
        np.save(tmp_path / "small.npy", np.zeros((3, 5, 5, 3), np.float32))
        args, words = [int8, "--data", tmp_path / "small.npy"], "resize or reshape"
    result = _layers(args, expect=2)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], result.output


def test_own_sqnr_against_the_unfolded_model_covers_folded_chains(keras, small_cnn, tmp_path):
    """convert folds Conv -> BatchNorm -> ReLU into one op; the user's own model still names it."""
    from converters import ConvertOptions, convert

    data = np.random.default_rng(1).uniform(0, 1, (40, 16, 16, 3)).astype(np.float32)
    convert(small_cnn, data, tmp_path, ConvertOptions(samples=40, holdout=0, progress=False))
    report = layer_errors(data, tflite=(tmp_path / "small_cnn_fp32.tflite", tmp_path / "small_cnn_int8.tflite"),
                          keras_model=small_cnn, max_samples=len(data))
    rows = {r.layer: r for r in report.of_format("tflite")}
    # Keras numbers auto-named layers per process ("conv2d", "conv2d_3"...): take the names from the model
    conv, depthwise = (next(layer.name for layer in small_cnn.layers if type(layer).__name__ == kind)
                       for kind in ("Conv2D", "DepthwiseConv2D"))
    first = rows[conv]
    assert first.own_sqnr_db is not None and rows[depthwise].own_sqnr_db is not None
    # The first op alone, converted alone: Conv -> BatchNorm -> ReLU from the image.
    relu = small_cnn.layers[3]
    assert [type(layer).__name__ for layer in small_cnn.layers[1:4]] == ["Conv2D", "BatchNormalization", "ReLU"]
    cut = keras.Model(small_cnn.inputs, relu.output)
    reference = np.asarray(cut(data, training=False))
    independent = _sqnr(reference, _run_int8(_to_tflite(cut, data), data))
    assert first.own_sqnr_db == pytest.approx(independent, abs=0.5)
    assert first.sqnr_db == pytest.approx(independent, abs=0.5)  # nothing upstream to inherit


def test_the_convert_hook_measures_on_the_jobs_calibration_samples(chain, chain_tflite, tmp_path):
    from converters.budget.onnx import onnx_job
    from converters.layer_error.measure import layer_errors_for_job
    from edgeact.report.layer_errors import render_layer_errors

    model, data = chain
    job = onnx_job(model, data[:12], tmp_path, "chain")
    report = layer_errors_for_job(job, tflite=(chain_tflite / "chain_fp32.tflite", chain_tflite / "chain_int8.tflite"))
    assert report.samples == REPORT_SAMPLES < 12  # every convert report measures on the first few
    assert [r.layer for r in report.of_format("tflite")] == ["c1", "c2", "gap", "fc"]
    assert all(r.own_sqnr_db is not None for r in report.of_format("tflite"))  # the job's Keras model
    text = render_layer_errors(LayerErrorReport.from_dict(report.to_dict()), top=2)
    assert "2 worst of 4" in text


def test_own_sqnr_rounds_a_kept_weight_step_as_the_file_holds_it(keras, chain, chain_tflite):
    """With a weight step's integers for c2 (here the worse of floor/ceil for every weight, so the
    difference is large), c2's own error is that of c2 alone converted with those integers, and the
    layers the step did not change keep theirs."""
    from converters.rounding.adaround import snapped
    from converters.rounding.layers import KernelChange

    model, data = chain
    c2 = model.get_layer("c2")
    kernel = c2.kernel.numpy()
    matrix = kernel.reshape(-1, kernel.shape[-1])
    scale = np.max(np.abs(matrix), axis=0) / 127
    exact = matrix / scale
    away = np.where(np.rint(exact) > exact, np.floor(exact), np.ceil(exact)).astype(np.int32)  # the other integer
    away = np.where(np.abs(matrix) == np.max(np.abs(matrix), axis=0), np.rint(exact), away).astype(np.int32)
    new_kernel = snapped(matrix, away, 127).reshape(kernel.shape)
    change = KernelChange("c2", kernel, new_kernel, integers=away)
    pair = (chain_tflite / "chain_fp32.tflite", chain_tflite / "chain_int8.tflite")
    plain = {r.layer: r for r in layer_errors(data, tflite=pair, keras_model=model, max_samples=len(data))
             .of_format("tflite")}
    stepped = {r.layer: r for r in layer_errors(data, tflite=pair, keras_model=model, max_samples=len(data),
                                                weight_changes={"tflite": [change]}).of_format("tflite")}
    c1_out = np.asarray(keras.Model(model.inputs, model.get_layer("c1").output)(data, training=False))
    inputs = keras.Input(c1_out.shape[1:])
    copy = type(c2).from_config(c2.get_config())
    alone = keras.Model(inputs, copy(inputs))
    copy.set_weights([new_kernel, c2.bias.numpy()])
    original = type(c2).from_config(c2.get_config())  # c2 in float, its own weights
    float_alone = keras.Model(inputs, original(inputs))
    original.set_weights(c2.get_weights())
    reference = np.asarray(float_alone(c1_out, training=False))
    independent = _sqnr(reference, _run_int8(_to_tflite(alone, c1_out), c1_out))  # TFLite rounds the snapped kernel
    assert stepped["c2"].own_sqnr_db == pytest.approx(independent, abs=0.5)
    assert stepped["c2"].own_sqnr_db < plain["c2"].own_sqnr_db - 3.0
    assert stepped["c1"].own_sqnr_db == plain["c1"].own_sqnr_db
