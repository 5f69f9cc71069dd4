"""Bias correction removes the mean error INT8 weight rounding leaves in each output channel."""
from __future__ import annotations

import numpy as np

from converters.budget.bias_correction import correct_biases
from converters.tflite.ranges import calibrate_tflite, quantize_calibrated


def _biased_model(keras):
    """A conv whose weights all sit 0.4 of an INT8 step above a grid point: rounding pulls every
    one down, so each channel's output is too low by about 0.4 step times the sum of its inputs."""
    layers = keras.layers
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 3), name="image")
    x = layers.Conv2D(4, 3, name="c1")(inputs)
    model = keras.Model(inputs, layers.GlobalAveragePooling2D(name="gap")(x))
    kernel, bias = model.get_layer("c1").get_weights()
    step = 1.0 / 127  # each channel's peak weight is 1.0
    rng = np.random.default_rng(0)
    kernel = (rng.integers(5, 60, kernel.shape) + 0.4) * step
    kernel[0, 0, 0, :] = 1.0
    model.get_layer("c1").set_weights([kernel.astype(np.float32), bias])
    return model


def _int8_outputs(model, data) -> np.ndarray:
    from converters.budget.tflite import _run

    return _run(quantize_calibrated(calibrate_tflite(model, data)), data)[0]


def test_bias_correction_reduces_the_mean_error_of_the_int8_model(keras):
    model = _biased_model(keras)
    data = np.random.default_rng(1).uniform(0, 1, (40, 8, 8, 3)).astype(np.float32)
    target = np.asarray(model(data))
    corrected, shifts = correct_biases(model, data)
    assert [s.layer for s in shifts] == ["c1"] and shifts[0].max_abs_shift > 0
    before = np.abs((target - _int8_outputs(model, data)).mean(axis=0))
    after = np.abs((target - _int8_outputs(corrected, data)).mean(axis=0))
    assert before.mean() > 0.03  # the rounding bias is real: 0.4 / 127 x 26 weights x inputs of 0.5 = 0.041
    assert after.mean() < 0.25 * before.mean()
    # The user's model is left as it is.
    np.testing.assert_array_equal(np.asarray(model(data)), target)
