"""Ranges beyond min/max for TFLite, and ops kept in float: each changes what it claims."""
from __future__ import annotations

import numpy as np
import pytest

from converters.tflite.ranges import (
    RangeMethod,
    calibrate_tflite,
    calibrated_ranges,
    choose_ranges,
    observed_values,
    percentile_ranges,
    quantize_calibrated,
    set_ranges,
)


@pytest.fixture(scope="module")
def outlier_data(keras):
    """Conv(ReLU) -> Conv -> pooling -> Dense on data where one pixel in 14400 is 200x brighter."""
    layers = keras.layers
    keras.utils.set_random_seed(5)
    inputs = keras.Input((10, 10, 3), name="image")
    x = layers.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = layers.Conv2D(8, 1, name="c2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, layers.Dense(4, name="fc")(x), name="outliers")
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 1, (48, 10, 10, 3)).astype(np.float32)
    data[3, 5, 5, 0] = 200.0
    return model, data


def _scale(model: bytes, name: str) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    return next(d["quantization"][0] for d in interpreter.get_tensor_details() if d["name"] == name)


C1 = "outliers_1/c1_1/Relu;outliers_1/c1_1/convolution"


def test_calibration_records_min_max_of_the_float_values(keras, outlier_data):
    model, data = outlier_data
    calibrated = calibrate_tflite(model, data)
    recorded = calibrated_ranges(calibrated)
    values = observed_values(calibrated, data, names=[C1], max_values=10**9)[C1]
    c1 = np.asarray(keras.Model(model.inputs, model.get_layer("c1").output)(data))
    assert values.size == c1.size  # every value, under a large enough bound
    assert recorded[C1][1] == pytest.approx(float(c1.max()), rel=1e-5)
    assert recorded[C1][0] == pytest.approx(0.0, abs=1e-6)


def test_percentile_ranges_are_narrower_than_min_max_on_outliers(outlier_data):
    model, data = outlier_data
    calibrated = calibrate_tflite(model, data)
    minmax = calibrated_ranges(calibrated)
    values = observed_values(calibrated, data)
    percentile = percentile_ranges(values, 99.5)
    assert percentile[C1][1] < 0.6 * minmax[C1][1]  # the outlier sets min/max; 99.5 % of values lie far below
    assert percentile[C1][1] == pytest.approx(np.percentile(values[C1], 99.5))
    narrow = quantize_calibrated(set_ranges(calibrated, percentile))
    plain = quantize_calibrated(calibrated)
    assert _scale(narrow, C1) < 0.6 * _scale(plain, C1)  # the INT8 model really uses the narrower grid
    mse = choose_ranges(calibrated, data, RangeMethod.MSE)
    assert mse[C1][1] <= minmax[C1][1] + 1e-6


def test_quantize_calibrated_matches_the_converter_and_keeps_named_ops_float(outlier_data):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model, data = outlier_data
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in data)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    direct = converter.convert()
    calibrated = calibrate_tflite(model, data)
    assert _scale(quantize_calibrated(calibrated), C1) == pytest.approx(_scale(direct, C1))
    c2 = "outliers_1/c2_1/convolution1"
    fallback = Interpreter(model_content=quantize_calibrated(calibrated, float_nodes=[c2]))
    ops = {o["op_name"]: o for o in fallback._get_ops_details()}
    assert "DEQUANTIZE" in ops and "QUANTIZE" in ops
    types = {fallback.get_tensor_details()[o["outputs"][0]]["name"]: o["result_types"][0]
             for o in fallback._get_ops_details()}
    assert types[c2] is np.float32 and types[C1] is np.int8
