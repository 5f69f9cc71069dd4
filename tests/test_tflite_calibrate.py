"""The INT8 .tflite is calibrated from the float reference edgeact already wrote (converters.tflite.calibrate).

Each claim is checked against TensorFlow's own machinery: the ranges against its calibrator on
the same float flatbuffer, the INT8 model against the converter's own full-integer conversion,
and "one conversion" by counting the conversions convert really runs.
"""
from __future__ import annotations

import numpy as np
import pytest

from converters.tflite.calibrate import _tf_calibration, calibrate_float
from converters.tflite.ranges import calibrated_ranges, convert_guarded, quantize_calibrated
from edgeact.config import IOType
from edgeact.errors import InputError


@pytest.fixture(scope="module")
def two_inputs(keras):
    """Two named inputs (TFLite may order them either way), a separable conv, a residual ADD, hard-swish."""
    layers = keras.layers
    keras.utils.set_random_seed(3)
    image = keras.Input((12, 12, 3), name="image")
    extra = keras.Input((12, 12, 3), name="extra")
    a = layers.Conv2D(8, 3, padding="same", activation="relu", name="ca")(image)
    b = layers.SeparableConv2D(8, 3, padding="same", name="cb")(extra * 4.0)
    x = layers.Activation("hard_swish", name="hs")(layers.Add(name="sum")([a, b]))
    out = layers.Dense(4, name="fc")(layers.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model([image, extra], out, name="two")
    rng = np.random.default_rng(0)
    data = {"image": rng.normal(0, 1, (24, 12, 12, 3)).astype(np.float32),
            "extra": rng.uniform(-2, 3, (24, 12, 12, 3)).astype(np.float32)}
    return model, data


def _float(model) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _samples(data: dict) -> list[dict]:
    n = len(next(iter(data.values())))
    return [{name: a[i:i + 1] for name, a in data.items()} for i in range(n)]


def test_ranges_are_those_tfs_calibrator_records_on_the_same_file(two_inputs):
    model, data = two_inputs
    fp32 = _float(model)
    ours, found = calibrate_float(fp32, _samples(data))
    theirs, tf_found = _tf_calibration(fp32, _samples(data), None)
    mine, want = calibrated_ranges(ours), calibrated_ranges(theirs)
    assert set(mine) == set(want) and len(want) >= 8  # every activation, and the two inputs
    for name, (low, high) in want.items():
        assert mine[name] == pytest.approx((low, high), rel=1e-5, abs=1e-6), name
    # each input's range is its own data's, so the two were fed by name, not by position
    by_input = {n: r for n, r in mine.items() if "image" in n or "extra" in n}
    assert sorted(by_input.values()) == sorted((float(a.min()), float(a.max())) for a in data.values())
    assert found["calibrator"].startswith("edgeact") and found["samples"] == 24
    assert tf_found["calibrator"] == "TensorFlow's calibrator" and tf_found["in_place_guard"] is True


def test_the_int8_model_is_the_converters_own_bit_for_bit(keras):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(5)
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu6")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(6, 1)(x)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, out)
    data = np.random.default_rng(1).normal(0, 1, (32, 16, 16, 3)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in data)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    theirs, _ = convert_guarded(converter)  # the converter's second conversion, calibration and quantizer
    ours = quantize_calibrated(calibrate_float(_float(model), _samples({"image": data}))[0], IOType.INT8)

    def run(model_bytes):
        interpreter = Interpreter(model_content=model_bytes)
        interpreter.allocate_tensors()
        (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
        scale, zero = inp["quantization"]
        rows = []
        for sample in data:
            interpreter.set_tensor(inp["index"], np.clip(np.round(sample[None] / scale + zero), -128, 127)
                                   .astype(np.int8))
            interpreter.invoke()
            rows.append(interpreter.get_tensor(outp["index"]).copy())
        return np.concatenate(rows), inp["quantization"], outp["quantization"]

    (got, got_in, got_out), (want, want_in, want_out) = run(ours), run(theirs)
    assert got_in == want_in and got_out == want_out
    assert np.array_equal(got, want)


def test_a_sample_that_does_not_fit_is_a_one_line_input_error(two_inputs):
    model, data = two_inputs
    fp32 = _float(model)
    with pytest.raises(InputError, match="does not fit the model input"):
        calibrate_float(fp32, [{"image": data["image"][:1], "extra": data["extra"][:1, :6]}])
    with pytest.raises(InputError, match="no input 'extra'"):
        calibrate_float(fp32, [{"image": data["image"][:1], "other": data["extra"][:1]}])
    with pytest.raises(InputError, match="no calibration samples"):
        calibrate_float(fp32, [])


def _count_conversions(monkeypatch) -> list:
    from converters.tflite import exporter

    calls = []
    original = exporter.run_converter

    def counted(converter, what):
        calls.append(what)
        return original(converter, what)

    monkeypatch.setattr(exporter, "run_converter", counted)
    return calls


@pytest.mark.parametrize("hard_swish", [False, True])
def test_convert_converts_once_unless_the_int8_graph_is_its_own(keras, tmp_path, monkeypatch, hard_swish):
    """One TF-to-TFLite conversion serves the float reference and the INT8 model; a second only when
    an INT8-only rewrite (hard-swish spelled for INT8, converters.passes) gave the INT8 model another graph."""
    import tensorflow as tf

    from converters import ConvertOptions, convert
    from edgeact.config import Format
    from edgeact.errors import VerificationError

    keras.utils.set_random_seed(2)
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.Activation("hard_swish" if hard_swish else "relu")(x)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, out, name="once")
    data = np.random.default_rng(4).normal(0, 1, (48, 12, 12, 3)).astype(np.float32)
    calls = _count_conversions(monkeypatch)
    converts = []
    original = tf.lite.TFLiteConverter.from_keras_model
    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model",
                        lambda m: converts.append(m) or original(m))
    try:
        report = convert(model, data, tmp_path, ConvertOptions(formats=(Format.TFLITE,), samples=40, holdout=8,
                                                               name="once", progress=False))
    except VerificationError as exc:  # the verdict is not what this test is about
        report = exc.report
    found = report.formats["tflite"].details["calibration"]
    assert len(converts) == len(calls) == (2 if hard_swish else 1), calls
    assert found["conversions"] == len(calls)
    assert found["calibrator"].startswith("edgeact") and found["samples"] == 40
