"""INT8 ONNX: integer kernels after ORT optimisation, no Relu/Clip left, float parity, NCHW, errors."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from converters import ConvertOptions, convert
from edgeact.cli import cli
from edgeact.config import CalibrationMethod, Format, OnnxLayout
from edgeact.runtime import open_runner

from .helpers import assert_one_line_error


@pytest.fixture(scope="module")
def converted_both(small_cnn_file, pixels_npy, tmp_path_factory):
    out = tmp_path_factory.mktemp("both")
    report = convert(small_cnn_file, pixels_npy, out, ConvertOptions(
        formats=(Format.TFLITE, Format.ONNX), samples=60, holdout=20, progress=False))
    return out, report


def ops(path):
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def ort_optimized_ops(path, tmp_path):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return ops(tmp_path / "optimized.onnx")


def holdout(pixels_npy, n=20):
    from calibration import read_calibration
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.data.samples import ModelInput

    calibration = read_calibration(pixels_npy, ModelInput("image", (16, 16, 3)), make_preprocessing("unit"), 60, n, 0)
    return calibration.holdout.arrays["image"]


def test_both_formats_are_written(converted_both):
    out, report = converted_both
    assert {p.name for p in out.iterdir()} == {
        "small_cnn.edgeact.json", "small_cnn_fp32.tflite", "small_cnn_int8.tflite",
        "small_cnn_fp32.onnx", "small_cnn_int8.onnx"}
    section = json.loads((out / "small_cnn.edgeact.json").read_text())["formats"]["onnx"]
    assert section["details"]["opset"] >= 17 and section["details"]["layout"] == "nhwc"
    assert report.checks_passed


def test_no_float_conv_left_after_ort_optimisation(converted_both, tmp_path):
    out, report = converted_both
    optimized = ort_optimized_ops(out / "small_cnn_int8.onnx", tmp_path)
    assert optimized["QLinearConv"] == ops(out / "small_cnn_int8.onnx")["Conv"] == 2
    assert not {"Conv", "FusedConv", "MatMul", "Gemm", "FusedMatMul"} & set(optimized)
    kernels = report.formats["onnx"].details["integer_kernels"]
    assert kernels["passed"] and kernels["summary"].startswith("2/2 Conv run as QLinearConv")


def test_no_relu_or_clip_left_in_int8(converted_both):
    out, report = converted_both
    int8 = ops(out / "small_cnn_int8.onnx")
    assert int8["Relu"] == 0 and int8["Clip"] == 0
    fp32 = ops(out / "small_cnn_fp32.onnx")
    assert fp32["Relu"] + fp32["Clip"] == 3  # conv ReLU, depthwise ReLU6, residual ReLU
    assert fp32["BatchNormalization"] == 0
    fusion = report.formats["onnx"].details["fusion"]["fp32"]
    assert fusion["after_conv"] == 2 and fusion["fused_by_ort"] == 2


def test_float_relu_follows_its_conv(converted_both):
    out, _ = converted_both
    graph = onnx.load(str(out / "small_cnn_fp32.onnx")).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    after = sorted(producers[n.input[0]] for n in graph.node if n.op_type in ("Relu", "Clip"))
    assert after == ["Add", "Conv", "Conv"]


def test_float_onnx_matches_keras(converted_both, small_cnn, pixels_npy):
    out, _ = converted_both
    x = holdout(pixels_npy)
    session = ort.InferenceSession(str(out / "small_cnn_fp32.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, small_cnn.predict(x, verbose=0), atol=1e-4)


def test_parity_numbers_agree_with_direct_computation(converted_both, pixels_npy):
    out, report = converted_both
    x = holdout(pixels_npy)
    name = report.outputs[0].name
    tflite = open_runner(out / "small_cnn_int8.tflite").predict(x)[name]
    onnx_int8 = open_runner(out / "small_cnn_int8.onnx").predict(x)[name]
    (check,) = report.checks_of("cross_format")
    parity = check.metrics
    assert check.output == name and parity["samples"] == len(x)
    assert parity["max_abs_diff"] == pytest.approx(np.abs(tflite - onnx_int8).max(), rel=1e-5)
    assert parity["top1_agreement"] == pytest.approx(np.mean(tflite.argmax(1) == onnx_int8.argmax(1)))
    noise = np.sum((tflite.astype(np.float64) - onnx_int8) ** 2)
    assert parity["sqnr_db"] == pytest.approx(10 * np.log10(np.sum(tflite.astype(np.float64) ** 2) / noise), rel=1e-6)
    assert {c.subject for c in report.checks_of("parity")} == {
        "tflite fp32 vs keras", "tflite int8 vs keras", "onnx fp32 vs keras", "onnx int8 vs keras"}


def test_nchw_layout_has_no_transpose(small_cnn, small_cnn_file, pixels_npy, tmp_path):
    report = convert(small_cnn_file, pixels_npy, tmp_path, ConvertOptions(
        formats=(Format.ONNX,), onnx_layout=OnnxLayout.NCHW, samples=40, holdout=10, progress=False))
    for name in ("small_cnn_fp32.onnx", "small_cnn_int8.onnx"):
        assert ops(tmp_path / name)["Transpose"] == 0
    session = ort.InferenceSession(str(tmp_path / "small_cnn_fp32.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, 16, 16]
    x = holdout(pixels_npy, 10)
    got = session.run(None, {session.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})[0]
    np.testing.assert_allclose(got, small_cnn.predict(x, verbose=0), atol=1e-4)
    assert report.formats["onnx"].details["integer_kernels"]["passed"]
    assert "tflite" not in report.formats


def test_nhwc_layout_has_one_input_transpose(converted_both):
    out, report = converted_both
    assert ops(out / "small_cnn_fp32.onnx")["Transpose"] == 1
    assert report.formats["onnx"].details["graph_shape"]["transposes_after"] == ["graph input"]


def _activation_scales(path) -> dict[str, float]:
    """Scale of every QuantizeLinear on an activation (its input is a node output, not a weight)."""
    graph = onnx.load(str(path)).graph
    values = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    produced = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    return {n.input[0]: float(values[n.input[1]]) for n in graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] in produced and n.input[1] in values
            and values[n.input[1]].size == 1}


@pytest.mark.parametrize("method, extra", [(CalibrationMethod.PERCENTILE, 90.0), (CalibrationMethod.ENTROPY, None)])
def test_calibration_methods_change_the_activation_ranges(converted_both, small_cnn_file, pixels_npy, tmp_path,
                                                          method, extra):
    """Not the option echoed back: the ranges ORT calibrated differ from min/max as the method says."""
    out, _ = converted_both  # min/max
    options = ConvertOptions(formats=(Format.ONNX,), calibration_method=method, samples=60, holdout=20,
                             progress=False, **({"percentile": extra} if extra else {}))
    report = convert(small_cnn_file, pixels_npy, tmp_path, options)
    assert report.formats["onnx"].details["quantization"]["method"] == method.value
    minmax = _activation_scales(out / "small_cnn_int8.onnx")
    other = _activation_scales(tmp_path / "small_cnn_int8.onnx")
    shared = sorted(set(minmax) & set(other))
    assert len(shared) >= 3
    if method is CalibrationMethod.PERCENTILE:
        # a 90th percentile clips the tail: no range wider than min/max's, and some narrower
        assert all(other[k] <= minmax[k] * (1 + 1e-6) for k in shared)
        assert sum(other[k] < 0.95 * minmax[k] for k in shared) >= 2
    else:
        assert any(abs(other[k] - minmax[k]) > 1e-3 * minmax[k] for k in shared)


def test_unexportable_layer_is_named(keras, tmp_path):
    import tensorflow as tf

    from edgeact.errors import ConversionError

    L = keras.layers
    inputs = keras.Input((8, 8, 1))
    x = L.Lambda(tf.math.bessel_i0e, name="bessel")(L.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, L.Flatten()(x))
    with pytest.raises(ConversionError, match="op BesselI0e in layer 'bessel'"):
        convert(model, np.random.default_rng(0).uniform(size=(20, 8, 8, 1)).astype("float32"), tmp_path,
                ConvertOptions(formats=(Format.ONNX,), samples=10, holdout=5, progress=False))
    assert list(tmp_path.iterdir()) == []


def test_cli_onnx_options_and_errors(small_cnn_file, pixels_npy, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["convert", str(small_cnn_file), "-c", str(pixels_npy), "-o", str(tmp_path),
                                 "--format", "onnx", "--calibration-method", "percentile", "--percentile", "99.99",
                                 "--samples", "30", "--holdout", "10"])
    assert result.exit_code == 0, result.output
    assert "Conv run as QLinearConv" in result.output and "tflite int8 vs onnx int8" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small_cnn.edgeact.json", "small_cnn_fp32.onnx",
                                                          "small_cnn_int8.onnx"]
    for bad in ("0", "-1", "100.5"):
        assert_one_line_error(runner.invoke(cli, ["convert", str(small_cnn_file), "-c", str(pixels_npy),
                                                  "-f", "onnx", "--percentile", bad]), "outside (0, 100]")
    result = runner.invoke(cli, ["convert", str(small_cnn_file), "-c", str(pixels_npy), "-f", "onnx",
                                 "--calibration-method", "kl"])
    assert result.exit_code == 2 and "'kl' is not one of" in result.output
    assert_one_line_error(runner.invoke(cli, ["convert", str(small_cnn_file), "-c", str(pixels_npy), "-o",
                                              str(tmp_path), "-f", "onnx"]), "--force")


def test_inspect_onnx(converted_both):
    out, _ = converted_both
    result = CliRunner().invoke(cli, ["inspect", str(out / "small_cnn_int8.onnx"), "--json"])
    info = json.loads(result.stdout)
    assert info["opset"] == 17 and info["qdq_pairs"] > 0
    assert info["op_counts"]["Conv"] == 2 and info["inputs"][0]["shape"] == [-1, 16, 16, 3]
    text = CliRunner().invoke(cli, ["inspect", str(out / "small_cnn_int8.onnx")]).output
    assert "QDQ pairs" in text and "opset 17" in text


def test_inspect_corrupt_onnx(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf model")
    assert_one_line_error(CliRunner().invoke(cli, ["inspect", str(bad)]), "not a valid ONNX model")


def test_optimized_graph_is_read_once_per_file_version(tmp_path):
    """convert's integer-kernel check and its fast-path coverage ask ORT to optimise the same INT8
    file; the second ask gets the first graph, and a rewritten file is optimised again."""
    from edgeact.runtime.onnx import optimized_graph

    from .onnx_models import save, small_onnx_model

    path = save(small_onnx_model(classes=4), tmp_path / "m.onnx")
    first = optimized_graph(path)
    assert optimized_graph(path) is first
    assert [o.name for o in first.graph.output] == ["scores"]
    save(small_onnx_model(classes=5), path)  # new size: a new optimisation, never the stale graph
    second = optimized_graph(path)
    assert second is not first
    assert second.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 5


def test_tf2onnx_collects_each_discarded_graph_copy_before_the_next_optimizer():
    """tf2onnx's per-optimizer graph copies are cyclic garbage (VGG16 grew ~1 GB per optimizer
    until killed); under collecting_optimizers each optimizer is created after a collection,
    with tf2onnx's own optimizers in their order, and the default list comes back afterwards."""
    import gc
    import weakref

    from tf2onnx import optimizer

    from converters.onnx.tf2onnx_ops import collecting_optimizers

    class Cyclic:
        pass

    default = optimizer._optimizers
    gc.disable()  # only the collection under test may free the cycle
    try:
        with pytest.raises(RuntimeError), collecting_optimizers():
            assert list(optimizer._optimizers) == list(default)
            garbage = Cyclic()
            garbage.me = garbage
            alive = weakref.ref(garbage)
            del garbage
            assert alive() is not None
            first = next(iter(optimizer._optimizers.values()))()
            assert alive() is None
            assert type(first) is next(iter(default.values()))
            raise RuntimeError("an export that fails still restores tf2onnx's list")
    finally:
        gc.enable()
    assert optimizer._optimizers is default


def test_grouped_conv_model_exports_to_onnx_and_stays_on_integer_kernels(tmp_path):
    """Keras 3 runs Conv2D(groups=C) as an XLA call: tf2onnx cannot export it (ConvNeXt) and
    TFLite lowers it into shape arithmetic. The grouped_conv_to_depthwise pass makes it one
    depthwise convolution in both formats; without the pass the ONNX export fails."""
    import keras

    from edgeact.formats.tflite_model import read_tflite

    keras.utils.set_random_seed(3)  # a fixed model: the checks below judge the pass, not an unlucky init
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 1, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", groups=8, name="grouped")(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="scores")(x), name="grouped_cnn")
    calibration = np.random.default_rng(0).uniform(0, 1, (80, 16, 16, 3)).astype(np.float32)

    without = tmp_path / "without"
    with pytest.raises(Exception) as failed:
        convert(model, calibration, without, ConvertOptions(formats=(Format.TFLITE, Format.ONNX), passes=(),
                                                           layer_error="never"))
    assert "StatefulPartitionedCall" in failed.value.report.formats["onnx"].error

    out = tmp_path / "with"
    report = convert(model, calibration, out, ConvertOptions(formats=(Format.TFLITE, Format.ONNX),
                                                             layer_error="never"))
    assert report.checks_passed
    assert ops(out / "grouped_cnn_int8.onnx")["Conv"] == 2
    kernels = report.formats["onnx"].details["integer_kernels"]["summary"]
    assert kernels.startswith("2/2 Conv run as QLinearConv"), kernels
    counts = read_tflite(out / "grouped_cnn_int8.tflite").op_counts()
    assert counts.get("DEPTHWISE_CONV_2D") == 1 and not {"SHAPE", "GATHER", "REDUCE_PROD"} & set(counts), counts


def test_unsupported_op_in_many_layers_is_one_readable_entry():
    """ConvNeXtTiny's ONNX error named the same op once per layer, 2,572 characters; now one entry
    per op with its layer count and the first two layers."""
    from converters.onnx.exporter import unsupported_ops

    layers = [f"stage_{i}_depthwise_conv" for i in range(18)] + ["odd"]
    log = "\n".join(f"Tensorflow op [m/stage_{i}_depthwise_conv_1/StatefulPartitionedCall: StatefulPartitionedCall]"
                    " is not supported" for i in range(18))
    log += "\nTensorflow op [m/odd/BesselI0e: BesselI0e] is not supported"
    text = unsupported_ops(log, layers)
    assert text == ("op StatefulPartitionedCall in 18 layers ('stage_0_depthwise_conv', 'stage_1_depthwise_conv'"
                    " and 16 more), op BesselI0e in layer 'odd'")
