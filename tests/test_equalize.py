"""Cross-layer equalization: evens an outlier channel's ranges, float output unchanged; guards hold."""
from __future__ import annotations

import numpy as np

from converters.passes.pipeline import run_pipeline


def _outlier_model(keras, activation="relu", factor=60.0):
    """Conv -> Conv where conv1's channel 0 is scaled up by `factor` and conv2's matching weights down."""
    layers = keras.layers
    keras.utils.set_random_seed(11)
    inputs = keras.Input((10, 10, 3), name="image")
    x = layers.Conv2D(6, 3, activation=activation, name="c1")(inputs)
    x = layers.Conv2D(5, 1, name="c2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, layers.Dense(3, name="fc")(x))
    k1, b1 = model.get_layer("c1").get_weights()
    k2, b2 = model.get_layer("c2").get_weights()
    k1[..., 0] *= factor
    b1[0] *= factor
    k2[:, :, 0, :] /= factor
    model.get_layer("c1").set_weights([k1, b1])
    model.get_layer("c2").set_weights([k2, b2])
    return model


def _channel_max(keras, model, data) -> np.ndarray:
    c1 = np.asarray(keras.Model(model.inputs, model.get_layer("c1").output)(data))
    return c1.max(axis=(0, 1, 2))


def test_equalization_evens_the_outlier_channel_and_keeps_the_float_output(keras):
    model = _outlier_model(keras)
    data = np.random.default_rng(0).uniform(0, 1, (32, 10, 10, 3)).astype(np.float32)
    before = _channel_max(keras, model, data)
    equalized, results = run_pipeline(model, ["equalize"], data)
    after = _channel_max(keras, equalized, data)
    (result,) = results
    assert [c["layer"] for c in result.changed] == ["c1"]
    assert before[0] > 10 * before[1:].max()  # the outlier channel sets the per-tensor range alone
    assert after[0] < 2 * after[1:].max()
    # Independently: every channel of c1's kernel and c2's input weights now have equal peaks.
    k1 = equalized.get_layer("c1").get_weights()[0]
    k2 = equalized.get_layer("c2").get_weights()[0]
    np.testing.assert_allclose(np.abs(k1).max(axis=(0, 1, 2)), np.abs(k2).max(axis=(0, 1, 3)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(equalized(data)), np.asarray(model(data)), atol=1e-5)
    assert result.max_abs_diff < 1e-5


def test_equalization_leaves_relu6_alone(keras):
    model = _outlier_model(keras, activation="relu6", factor=1.0)
    _, (result,) = run_pipeline(model, ["equalize"], None)
    assert result.changed == []
    assert "ReLU6 clips at 6" in result.skipped[0]["reason"]


def test_equalization_needs_the_only_consumer(keras):
    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    y = layers.Conv2D(4, 1, name="c2")(x)
    model = keras.Model(inputs, layers.Add()([x, y]))
    _, (result,) = run_pipeline(model, ["equalize"], None)
    assert result.changed == [] and "also feeds" in result.skipped[0]["reason"]


def test_equalization_passes_through_max_pooling(keras):
    layers = keras.layers
    keras.utils.set_random_seed(4)
    inputs = keras.Input((10, 10, 3))
    x = layers.Conv2D(6, 3, activation="relu", name="c1")(inputs)
    x = layers.MaxPooling2D(name="pool")(x)
    x = layers.Conv2D(5, 1, name="c2")(x)
    model = keras.Model(inputs, x)
    k1, b1 = model.get_layer("c1").get_weights()
    k2, b2 = model.get_layer("c2").get_weights()
    k1[..., 0] *= 50.0
    b1[0] *= 50.0
    k2[:, :, 0, :] /= 50.0
    model.get_layer("c1").set_weights([k1, b1])
    model.get_layer("c2").set_weights([k2, b2])
    data = np.random.default_rng(0).uniform(0, 1, (16, 10, 10, 3)).astype(np.float32)
    equalized, (result,) = run_pipeline(model, ["equalize"], data)
    assert result.changed[0]["through"] == ["pool"]
    k1 = equalized.get_layer("c1").get_weights()[0]
    k2 = equalized.get_layer("c2").get_weights()[0]
    np.testing.assert_allclose(np.abs(k1).max(axis=(0, 1, 2)), np.abs(k2).max(axis=(0, 1, 3)), rtol=1e-5)
    assert result.max_abs_diff < 1e-5
