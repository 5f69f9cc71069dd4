"""RELU/RELU6, AVERAGE_POOL_2D and over-five-input CONCATENATION written as INT8 ops XNNPACK runs
(converters.tflite.xnnpack_rewrites): the same function, and every op on XNNPACK.

Checked against the model as the converter wrote it: the rewritten float flatbuffer computes the
same outputs, the INT8 model quantized from it stays within two output steps of the original
INT8 model, a same-padded pool's INT8 values are checked position by position against the
original op's (inside the map and on its border), and LiteRT's XNNPACK delegate takes every op of
the rewritten model where it left the original ops to the reference kernels.
"""
from __future__ import annotations

import numpy as np
import pytest

from converters.tflite.calibrate import calibrate_float
from converters.tflite.ranges import quantize_calibrated
from converters.tflite.xnnpack_rewrites import (
    CONCAT_KEY,
    POOL_KEY,
    RELU_KEY,
    SAME_POOL_KEY,
    same_pool_counts,
    xnnpack_rewrites,
)
from edgeact.config import Format, IOType
from edgeact.formats.tflite_model import read_tflite
from tests.helpers import sqnr


@pytest.fixture(scope="module")
def left_ops(keras):
    """ReLU and ReLU6 whose inputs other ops also read raw (they cannot fuse), a valid 2x2 pool with
    stride 2, same-padded 3x3 pools of stride 1 and 2 (border divisors vary) and a concatenation of
    ten inputs (two nested concatenations of five are needed)."""
    layers = keras.layers
    keras.utils.set_random_seed(4)
    inputs = keras.Input((16, 16, 3), name="image")
    raw = layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    relu = layers.Conv2D(8, 1, name="b")(layers.ReLU(name="relu")(raw))
    relu6 = layers.Conv2D(8, 1, name="c")(layers.ReLU(6.0, name="relu6")(raw))
    x = layers.Add(name="sum")([relu, relu6, raw])
    x = layers.AveragePooling2D(2, strides=2, padding="valid", name="pool_valid")(x)
    x = layers.Conv2D(8, 1, activation="relu", name="d")(x)
    x = layers.AveragePooling2D(3, strides=1, padding="same", name="pool_same")(x)
    x = layers.Concatenate(name="ten")([layers.Conv2D(2, 1, activation="relu", name=f"b{i}")(x) for i in range(10)])
    x = layers.AveragePooling2D(3, strides=2, padding="same", name="pool_same_stride2")(x)
    out = layers.Dense(4, name="fc")(layers.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(inputs, out, name="left_ops")
    data = np.random.default_rng(5).normal(0, 1, (48, 16, 16, 3)).astype(np.float32)
    return model, data


def _run(model_bytes: bytes, samples: np.ndarray, delegate: bool = False) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_content=model_bytes, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    rows = []
    for sample in samples:
        x = sample[None]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(outp["index"]).astype(np.float64)
        if outp["dtype"] == np.int8:
            scale, zero = outp["quantization"]
            y = (y - zero) * scale
        rows.append(y)
    return np.concatenate(rows)


def _counts(model_bytes: bytes, folder, name: str) -> dict[str, int]:
    path = folder / f"{name}.tflite"
    path.write_bytes(model_bytes)
    return read_tflite(path).op_counts()


@pytest.fixture(scope="module")
def calibrated(left_ops):
    import tensorflow as tf

    model, data = left_ops
    fp32 = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return calibrate_float(fp32, [{"image": s[None]} for s in data[:32]])[0]


def test_the_rewritten_float_model_computes_the_same_outputs(left_ops, calibrated, tmp_path):
    _, data = left_ops
    rewritten, found = xnnpack_rewrites(calibrated)
    assert found == {RELU_KEY: 2, POOL_KEY: 1, SAME_POOL_KEY: 2, CONCAT_KEY: 1}
    before, after = _counts(calibrated, tmp_path, "before"), _counts(rewritten, tmp_path, "after")
    assert before.get("RELU") == 1 and before.get("RELU6") == 1 and before.get("AVERAGE_POOL_2D") == 3
    assert "RELU" not in after and "RELU6" not in after and "AVERAGE_POOL_2D" not in after
    assert after.get("DEPTHWISE_CONV_2D", 0) == before.get("DEPTHWISE_CONV_2D", 0) + 5
    assert after["MUL"] == before.get("MUL", 0) + 2 and after["ADD"] == before["ADD"] + 2  # one of each per same pool
    assert before["CONCATENATION"] == 1 and after["CONCATENATION"] == 3  # 10 inputs: 5, then 5 (one joined), then 2
    np.testing.assert_allclose(_run(rewritten, data[32:]), _run(calibrated, data[32:]), rtol=1e-5, atol=1e-6)


def test_the_int8_model_matches_and_runs_every_op_on_xnnpack(left_ops, calibrated, tmp_path):
    from edgeact.fastpath.coverage import model_coverage

    model, data = left_ops
    rewritten, _ = xnnpack_rewrites(calibrated)
    original, ours = quantize_calibrated(calibrated, IOType.INT8), quantize_calibrated(rewritten, IOType.INT8)
    unseen = data[32:]
    reference = model.predict(unseen, verbose=0)
    # the same-padded pools' outputs get their own calibrated range (the op ties it to its input's),
    # so the INT8 outputs differ by a few steps; on samples the calibration never saw they are not
    # farther from float (measured: 31.6 dB original, 32.5 dB rewritten)
    assert sqnr(reference, _run(ours, unseen)) >= sqnr(reference, _run(original, unseen)) - 0.25
    left = {}
    for name, model_bytes in (("original", original), ("ours", ours)):
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(model_bytes)
        left[name] = model_coverage(path, threads=1).left_counts()
    assert left["original"].get("RELU") == 1 and left["original"].get("RELU6") == 1
    assert left["original"].get("AVERAGE_POOL_2D") == 3 and left["original"].get("CONCATENATION") == 1
    assert left["ours"] == {}


@pytest.mark.parametrize("size,window,stride", [(15, 3, 1), (15, 3, 2), (15, 5, 1), (16, 2, 2), (7, 4, 3)])
def test_the_border_counts_are_tensorflows(size, window, stride):
    """same_pool_counts against TensorFlow's own SAME padding: a sum of ones over each window."""
    import tensorflow as tf

    ones = tf.ones((1, size, size, 1))
    sums = tf.nn.depthwise_conv2d(ones, tf.ones((window, window, 1, 1)), [1, stride, stride, 1], "SAME")
    counts = same_pool_counts(size, window, stride)
    np.testing.assert_array_equal(np.outer(counts, counts), sums.numpy()[0, :, :, 0])


@pytest.mark.parametrize("window,stride", [(3, 1), (3, 2), (5, 1)])
def test_a_same_padded_pool_in_int8_is_as_close_to_float_as_the_op_it_replaces(keras, window, stride):
    """The rewritten pool, position by position, on samples the calibration never saw: its
    INT8 outputs are as close to float as the INT8 AVERAGE_POOL_2D's wherever float lies inside
    the output's calibrated range, border positions included, and no farther overall. Measured
    here: 38.0 -> 40.7, 37.8 -> 40.1, 38.3 -> 41.7 dB (its output gets a range of its own)."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(1)
    inputs = keras.Input((15, 15, 8), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.AveragePooling2D(window, strides=stride, padding="same")(x))
    data = np.random.default_rng(2).normal(0, 1, (64, 15, 15, 8)).astype(np.float32)
    calibrated = calibrate_float(tf.lite.TFLiteConverter.from_keras_model(model).convert(),
                                 [{"image": s[None]} for s in data[:32]])[0]
    rewritten, found = xnnpack_rewrites(calibrated)
    assert found == {SAME_POOL_KEY: 1}
    original, ours = quantize_calibrated(calibrated, IOType.INT8), quantize_calibrated(rewritten, IOType.INT8)
    assert "AVERAGE_POOL_2D" not in read_tflite_bytes(ours)
    reference = model.predict(data[32:], verbose=0).astype(np.float64)
    want, got = _run(original, data[32:]), _run(ours, data[32:])
    scale, zero = Interpreter(model_content=ours).get_output_details()[0]["quantization"]
    inside = (reference >= (-128 - zero) * scale) & (reference <= (127 - zero) * scale)
    edge = np.zeros(reference.shape, bool)
    edge[:, [0, -1]], edge[:, :, [0, -1]] = True, True
    assert (inside & edge).sum() > 0.9 * edge.sum()
    for where in (inside, inside & edge):
        assert np.abs(got - reference)[where].max() <= np.abs(want - reference)[where].max() + scale
    assert sqnr(reference, got) >= sqnr(reference, want)


def read_tflite_bytes(model_bytes: bytes) -> dict[str, int]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        return _counts(model_bytes, Path(folder), "model")


def test_a_model_without_those_ops_is_returned_as_it_is(keras):
    import tensorflow as tf

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, activation="relu")(inputs))
    fp32 = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    assert xnnpack_rewrites(fp32) == (fp32, {})


def test_convert_reports_the_rewrites_and_verifies_the_model(left_ops, tmp_path):
    from converters import ConvertOptions, convert
    from edgeact.errors import VerificationError
    from edgeact.report.render import render_format_section

    model, data = left_ops
    np.save(tmp_path / "calibration.npy", data)
    try:
        report = convert(model, str(tmp_path / "calibration.npy"), tmp_path / "out", ConvertOptions(
            formats=(Format.TFLITE,), samples=32, holdout=16, name="left_ops", progress=False, layer_error="never"))
    except VerificationError as exc:  # an untrained net: its checks are not what this test is about
        report = exc.report
    section = report.formats["tflite"]
    assert section.details["calibration"]["xnnpack_rewrites"] == {RELU_KEY: 2, POOL_KEY: 1, SAME_POOL_KEY: 2,
                                                                   CONCAT_KEY: 1}
    int8 = read_tflite(tmp_path / "out" / "left_ops_int8.tflite").op_counts()
    fp32 = read_tflite(tmp_path / "out" / "left_ops_fp32.tflite").op_counts()
    assert "RELU" not in int8 and fp32.get("RELU") == 1  # the float reference keeps its one-op form
    assert "written as the ops they are that it runs: RELU -> DEPTHWISE_CONV_2D x2" in \
        render_format_section("tflite", section)



def test_the_budget_searchs_attempts_carry_the_rewrites_too(left_ops, tmp_path):
    """An accuracy budget replaces the exporter's file with one of its own attempts: for a CPU target
    those attempts get the same rewrites (search_to_budget passes depthwise=True unless the target is
    an Edge TPU), so the file the search writes has no standalone RELU/RELU6 and no valid pool, and
    each attempt scores no worse than without them (the same-padded pools' outputs get ranges of
    their own: 30.9 -> 33.4 dB with min/max ranges, measured)."""
    from converters.budget.explore import SearchLimits
    from converters.budget.tflite import search_tflite
    from converters.options import Budget
    from edgeact.data.samples import Samples

    model, data = left_ops
    calibration, evaluation = data[:32], Samples({"image": data[32:]})
    budget = Budget(min_sqnr=200.0)  # unreachable: the range and fix stages are all tried
    limits = SearchLimits(max_candidates=1, max_fallback=1, wide_activations=False)
    runs = {flag: search_tflite(model, calibration, evaluation, budget, holdout=None, limits=limits, depthwise=flag)
            for flag in (False, True)}
    before, after = (_counts(runs[flag].model, tmp_path, str(flag)) for flag in (False, True))
    assert before.get("RELU") and before.get("RELU6")
    assert before.get("AVERAGE_POOL_2D") == 3 and before.get("CONCATENATION") == 1
    assert not after.get("RELU") and not after.get("RELU6") and not after.get("AVERAGE_POOL_2D")
    assert after["DEPTHWISE_CONV_2D"] == before.get("DEPTHWISE_CONV_2D", 0) + 5 and after["CONCATENATION"] == 3
    plain, rewritten = ([a for a in runs[flag].attempts if a.stage == "ranges"] for flag in (False, True))
    assert [a.changed for a in plain] == [a.changed for a in rewritten] and len(plain) == 3
    for a, b in zip(plain, rewritten):
        assert b.metric > a.metric - 0.5, (a.changed, a.metric, b.metric)


def test_a_same_pool_without_calibrated_ranges_is_left_as_it_is(left_ops):
    """The border correction's new tensors copy a calibrated range; a float model that was never
    calibrated has none, so its same-padded pools stay (the rewrites that need no range still run)."""
    import tensorflow as tf

    model, _ = left_ops
    fp32 = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    rewritten, found = xnnpack_rewrites(fp32)
    assert SAME_POOL_KEY not in found and CONCAT_KEY not in found and found[RELU_KEY] == 2 and found[POOL_KEY] == 1
    assert read_tflite_bytes(rewritten)["AVERAGE_POOL_2D"] == 2
