"""TFLite calibration records each tensor's own range, even where LiteRT computes an op in place.

TF's calibrator logs an op's inputs again after the kernel ran; an element-wise kernel that
wrote its output over an input it was the last reader of makes that input's range the union of
both (converters.tflite.ranges). Each range is checked against the values Keras computes on
the same samples, and the plain converter is shown to get them wrong on the same model.
"""
from __future__ import annotations

import numpy as np
import pytest

from converters.tflite.ranges import calibrate_tflite, calibrated_ranges, quantize_calibrated


@pytest.fixture(scope="module")
def in_place_net(keras):
    """Hard-swish spelled x * ReLU6(x + 3) (the 1/6 in the next kernel), and a residual block
    whose projection conv feeds only the ADD: the two patterns LiteRT computes in place."""
    layers = keras.layers
    keras.utils.set_random_seed(7)
    inputs = keras.Input((12, 12, 3), name="image")
    x = layers.Conv2D(16, 3, padding="same", kernel_initializer="he_normal", name="c1")(inputs)
    t = layers.ReLU(max_value=6.0, name="t_relu6")(layers.Rescaling(1.0, offset=3.0, name="t_shift")(x))
    x = layers.Multiply(name="prod")([x, t])
    skip = layers.Conv2D(16, 1, name="c2")(x)
    branch = layers.Conv2D(16, 3, padding="same", activation="relu", name="c3")(skip)
    branch = layers.Conv2D(16, 1, name="proj")(branch)
    x = layers.Add(name="sum")([skip, branch])
    outputs = layers.Dense(5, name="fc")(layers.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(inputs, outputs, name="inplace")
    data = np.random.default_rng(1).normal(0, 1, (32, 12, 12, 3)).astype(np.float32)
    return model, data


def _keras_ranges(keras, model, data) -> dict[str, tuple[float, float]]:
    names = ("t_relu6", "prod", "proj", "sum")
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    return {n: (float(v.min()), float(v.max())) for n, v in zip(names, probe.predict(data, verbose=0))}


def _tensor(ranges: dict, layer: str) -> tuple[float, float]:
    """The recorded range of the tensor a Keras layer writes (TFLite names carry the layer's name)."""
    (name,) = [n for n in ranges if f"/{layer}_1/" in n.split(";")[0] + "/"]
    return ranges[name]


def _int8_converter(model, data):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in data)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def _plain_calibration(model, data) -> bytes:
    converter = _int8_converter(model, data)
    converter._experimental_calibrate_only = True  # noqa: SLF001
    return converter.convert()


def test_each_tensor_records_the_range_keras_computes(keras, in_place_net):
    model, data = in_place_net
    want = _keras_ranges(keras, model, data)
    got = calibrated_ranges(calibrate_tflite(model, data))
    for layer in ("t_relu6", "prod", "proj", "sum"):
        assert _tensor(got, layer) == pytest.approx(want[layer], rel=1e-4, abs=1e-4), layer
    assert want["t_relu6"][1] <= 6.0  # a ReLU6 output: its range can never be the product's


def test_the_plain_converter_records_the_in_place_output_instead(keras, in_place_net):
    """Why the guard exists. If a TensorFlow release fixes its calibrator this fails, and the
    guard (converters.tflite.ranges.kept_outputs_calibration) can go."""
    model, data = in_place_net
    want = _keras_ranges(keras, model, data)
    plain = calibrated_ranges(_plain_calibration(model, data))
    assert _tensor(plain, "t_relu6") == pytest.approx(want["prod"], rel=1e-4, abs=1e-4)
    assert _tensor(plain, "t_relu6")[1] > 6.0
    proj_low, proj_high = _tensor(plain, "proj")
    assert proj_high - proj_low > (want["proj"][1] - want["proj"][0]) * 1.05  # widened by the sum's values


def test_the_int8_model_is_closer_to_keras_with_the_guard(keras, in_place_net):
    from ai_edge_litert.interpreter import Interpreter

    model, data = in_place_net
    reference = model.predict(data, verbose=0)

    def sqnr(int8: bytes) -> float:
        interpreter = Interpreter(model_content=int8)
        interpreter.allocate_tensors()
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        rows = []
        for sample in data:
            scale, zero = inp["quantization"]
            interpreter.set_tensor(inp["index"], np.clip(np.round(sample[None] / scale + zero), -128, 127)
                                   .astype(np.int8))
            interpreter.invoke()
            scale, zero = out["quantization"]
            rows.append((interpreter.get_tensor(out["index"]).astype(np.float32) - zero) * scale)
        error = reference - np.concatenate(rows)
        return float(10 * np.log10(np.sum(reference ** 2) / np.sum(error ** 2)))

    guarded = sqnr(quantize_calibrated(calibrate_tflite(model, data)))
    plain = sqnr(quantize_calibrated(_plain_calibration(model, data)))
    assert guarded > plain + 0.5, (guarded, plain)


def test_convert_uses_the_guard_and_says_so(keras, in_place_net, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from converters import ConvertOptions, convert
    from edgeact.config import Format
    from edgeact.errors import VerificationError

    model, data = in_place_net
    try:
        report = convert(model, data, tmp_path, ConvertOptions(formats=(Format.TFLITE,), samples=24, holdout=8,
                                                               name="inplace", progress=False))
    except VerificationError as exc:  # the verdict is not what this test is about
        report = exc.report
    calibration = report.formats["tflite"].details["calibration"]
    assert calibration["in_place_guard"] is True and calibration["kept_outputs"] > 5
    # The written model's ReLU6 tensor is quantized over its own range, [0, 6], not the product's.
    assert _keras_ranges(keras, model, data)["t_relu6"] == (0.0, 6.0)  # saturates on every subset used
    interpreter = Interpreter(model_path=str(tmp_path / "inplace_int8.tflite"))
    (scale,) = [d["quantization"][0] for d in interpreter.get_tensor_details()
                if "/t_relu6_1/" in d["name"].split(";")[0] + "/"]
    assert scale == pytest.approx(6.0 / 255, rel=1e-3)


def test_outputs_are_added_for_calibration_and_removed_after(keras, in_place_net):
    """The byte-level edit (converters.tflite.ranges.keep_all_outputs / drop_last_outputs) gives
    a model LiteRT loads, with every op output listed, then the original outputs again."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from converters.tflite.ranges import drop_last_outputs, keep_all_outputs

    model, data = in_place_net
    plain = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    kept, added = keep_all_outputs(plain)
    original = Interpreter(model_content=plain)
    widened = Interpreter(model_content=kept)
    op_outputs = {i for op in original._get_ops_details() for i in op["outputs"]}
    listed = [d["index"] for d in widened.get_output_details()]
    assert added == len(op_outputs) - 1 and sorted(listed) == sorted(op_outputs)
    restored = Interpreter(model_content=drop_last_outputs(kept, added))
    assert [d["index"] for d in restored.get_output_details()] == [d["index"] for d in original.get_output_details()]
    for interpreter in (original, restored):
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], data[:1])
        interpreter.invoke()
    assert np.array_equal(restored.get_tensor(restored.get_output_details()[0]["index"]),
                          original.get_tensor(original.get_output_details()[0]["index"]))


def test_a_model_past_the_offset_limit_keeps_tf_calibration_and_says_so(keras, in_place_net, monkeypatch):
    from converters.tflite import ranges as tflite_ranges

    model, data = in_place_net
    monkeypatch.setattr(tflite_ranges, "_OFFSET_LIMIT", 1000)  # every model is "too large"
    converter = _int8_converter(model, data)
    converter._experimental_calibrate_only = True  # noqa: SLF001
    calibrated, guard = tflite_ranges.convert_guarded(converter, calibrate_only=True)
    found = guard.to_dict()
    assert found["in_place_guard"] is False and found["kept_outputs"] == 0 and "2 GB" in found["note"]
    assert _tensor(calibrated_ranges(calibrated), "t_relu6")[1] > 6.0  # TF's own, widened range


def test_a_conversion_that_never_calibrates_is_refused(keras, in_place_net):
    import tensorflow as tf

    from converters.tflite.ranges import convert_guarded
    from edgeact.errors import ConversionError

    model, _ = in_place_net
    with pytest.raises(ConversionError, match="calibrated the float model 0 times"):
        convert_guarded(tf.lite.TFLiteConverter.from_keras_model(model), "the float model")


def test_guards_nest_and_leave_other_threads_alone(keras, in_place_net):
    import threading

    from converters.tflite.ranges import kept_outputs_calibration

    model, data = in_place_net
    want = _keras_ranges(keras, model, data)["t_relu6"]
    other: dict = {}

    def convert_elsewhere():
        converter = _int8_converter(model, data)
        converter._experimental_calibrate_only = True  # noqa: SLF001
        other["ranges"] = calibrated_ranges(converter.convert())

    with kept_outputs_calibration() as outer, kept_outputs_calibration() as inner:
        thread = threading.Thread(target=convert_elsewhere)
        thread.start()
        thread.join()
        converter = _int8_converter(model, data)
        converter._experimental_calibrate_only = True  # noqa: SLF001
        mine = calibrated_ranges(converter.convert())
    assert (outer.calibrations, inner.calibrations) == (1, 1)  # the other thread's was not counted
    assert inner.kept_outputs > 5 and outer.kept_outputs == 0  # the inner wrapper kept them all
    assert _tensor(mine, "t_relu6") == pytest.approx(want, abs=1e-4)
    assert _tensor(other["ranges"], "t_relu6")[1] > 6.0  # the other thread ran TF's own calibration
