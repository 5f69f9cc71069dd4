"""Graph passes on tiny models: for every pattern, one model where it must fuse and one where it must not."""
from __future__ import annotations

import numpy as np
import pytest

from converters.passes.pipeline import DEFAULT_PIPELINE, run_pipeline

from .conftest import randomize_batchnorm


def build(keras, body, shape=(12, 12, 3)):
    inputs = keras.Input(shape)
    model = keras.Model(inputs, body(keras.layers, inputs))
    randomize_batchnorm(model)
    return model


def samples(shape=(12, 12, 3), n=8):
    return np.random.default_rng(0).uniform(-1, 1, (n, *shape)).astype("float32")


def run(model, shape=(12, 12, 3)):
    x = samples(shape)
    before = model.predict(x, verbose=0)  # before the passes: a pass that mutated `model` cannot hide
    folded, results = run_pipeline(model, DEFAULT_PIPELINE, x)
    after = folded.predict(x, verbose=0)
    np.testing.assert_allclose(after, before, atol=2e-5, rtol=1e-4)
    return folded, {r.name: r for r in results}


def layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


@pytest.mark.parametrize("conv", [
    lambda L: L.Conv2D(6, 3, use_bias=False),
    lambda L: L.Conv2D(6, 3),
    lambda L: L.Conv2D(6, 3, dilation_rate=2, padding="same"),
    lambda L: L.DepthwiseConv2D(3, depth_multiplier=2),
    lambda L: L.SeparableConv2D(6, 3, depth_multiplier=2),
], ids=["conv-nobias", "conv-bias", "conv-dilated", "depthwise-mult2", "separable"])
def test_batchnorm_folds_into_convolution(keras, conv):
    model = build(keras, lambda L, x: L.Flatten()(L.BatchNormalization()(conv(L)(x))))
    folded, results = run(model)
    assert "BatchNormalization" not in layer_types(folded)
    assert len(results["fold_batchnorm"].changed) == 1
    assert results["fold_batchnorm"].max_abs_diff < 1e-4


def test_batchnorm_folds_into_dense(keras):
    model = build(keras, lambda L, x: L.BatchNormalization()(L.Dense(5)(L.Flatten()(x))))
    folded, results = run(model)
    assert layer_types(folded).count("BatchNormalization") == 0


def test_batchnorm_without_scale_or_center_folds(keras):
    model = build(keras, lambda L, x: L.Flatten()(L.BatchNormalization(scale=False, center=False)(L.Conv2D(4, 3)(x))))
    folded, _ = run(model)
    assert "BatchNormalization" not in layer_types(folded)


def test_batchnorm_not_folded_when_conv_output_has_other_consumers(keras):
    def body(L, x):
        c = L.Conv2D(4, 3)(x)
        return L.Flatten()(L.Add()([L.BatchNormalization()(c), c]))

    folded, results = run(build(keras, body))
    assert "BatchNormalization" in layer_types(folded)
    assert "also feeds" in results["fold_batchnorm"].skipped[0]["reason"]


def test_batchnorm_not_folded_after_activation_or_non_conv(keras):
    def body(L, x):
        a = L.BatchNormalization()(L.Conv2D(4, 3, activation="relu")(x))
        b = L.BatchNormalization()(L.MaxPooling2D()(a))
        return L.Flatten()(b)

    folded, results = run(build(keras, body))
    assert layer_types(folded).count("BatchNormalization") == 2
    reasons = " | ".join(s["reason"] for s in results["fold_batchnorm"].skipped)
    assert "applies activation 'relu'" in reasons and "MaxPooling2D" in reasons


def test_batchnorm_on_other_axis_is_not_folded(keras):
    model = build(keras, lambda L, x: L.Flatten()(L.BatchNormalization(axis=1)(L.Conv2D(4, 3)(x))))
    folded, results = run(model)
    assert "BatchNormalization" in layer_types(folded)
    assert "not the channel axis" in results["fold_batchnorm"].skipped[0]["reason"]


@pytest.mark.parametrize("activation, kind", [
    (lambda L: L.ReLU(), "relu"),
    (lambda L: L.ReLU(max_value=6), "relu6"),
    (lambda L: L.ReLU(max_value=6.0, threshold=0.0, negative_slope=0.0), "relu6"),
    (lambda L: L.Activation("relu"), "relu"),
    (lambda L: L.Activation("relu6"), "relu6"),
])
@pytest.mark.parametrize("conv", [
    lambda L: L.Conv2D(4, 3), lambda L: L.DepthwiseConv2D(3), lambda L: L.SeparableConv2D(4, 3),
], ids=["conv", "depthwise", "separable"])
def test_relu_fuses_into_convolution(keras, activation, kind, conv):
    model = build(keras, lambda L, x: L.Flatten()(activation(L)(conv(L)(x))))
    folded, results = run(model)
    assert not {"ReLU", "Activation"} & set(layer_types(folded))
    changed = results["fuse_activation"].changed
    assert [c["activation"] for c in changed] == [kind]
    assert folded.get_layer(changed[0]["into"]).get_config()["activation"] == kind


def test_conv_batchnorm_relu_becomes_one_layer(keras):
    model = build(keras, lambda L, x: L.Flatten()(L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, use_bias=False)(x)))))
    folded, _ = run(model)
    assert layer_types(folded) == ["InputLayer", "Conv2D", "Flatten"]


def test_relu_fuses_into_dense(keras):
    model = build(keras, lambda L, x: L.ReLU()(L.Dense(5)(L.Flatten()(x))))
    folded, _ = run(model)
    assert "ReLU" not in layer_types(folded)


@pytest.mark.parametrize("activation, reason", [
    (lambda L: L.ReLU(max_value=4), "only max_value 6"),
    (lambda L: L.ReLU(negative_slope=0.1), "leaky"),
    (lambda L: L.ReLU(threshold=0.5), "threshold"),
    (lambda L: L.LeakyReLU(), "LeakyReLU"),
    (lambda L: L.PReLU(), "PReLU"),
    (lambda L: L.Activation("swish"), "silu"),  # Keras 3 names swish silu
    (lambda L: L.Activation("gelu"), "gelu"),
    (lambda L: L.Activation("hard_swish"), "hard_silu"),
])
def test_unfusable_activation_stays_with_reason(keras, activation, reason):
    model = build(keras, lambda L, x: L.Flatten()(activation(L)(L.Conv2D(4, 3)(x))))
    folded, results = run(model)
    # Not fused (hard-swish is still rewritten by decompose_hard_swish, so layers are not counted).
    assert not results["fuse_activation"].changed
    skipped = results["fuse_activation"].skipped
    assert len(skipped) == 1 and reason in skipped[0]["reason"]


def test_relu_not_fused_when_conv_output_has_other_consumers(keras):
    def body(L, x):
        c = L.Conv2D(4, 3)(x)
        return L.Flatten()(L.Concatenate()([L.ReLU()(c), c]))

    folded, results = run(build(keras, body))
    assert "ReLU" in layer_types(folded)
    assert "also feeds" in results["fuse_activation"].skipped[0]["reason"]


def test_relu_after_add_is_left_for_the_converter(keras):
    def body(L, x):
        c = L.Conv2D(3, 3, padding="same")(x)
        return L.Flatten()(L.ReLU()(L.Add()([c, x])))

    folded, results = run(build(keras, body))
    assert "ReLU" in layer_types(folded)
    assert "follows Add" in results["fuse_activation"].skipped[0]["reason"]


def test_relu_not_fused_into_conv_with_its_own_activation(keras):
    model = build(keras, lambda L, x: L.Flatten()(L.ReLU()(L.Conv2D(4, 3, activation="tanh")(x))))
    folded, results = run(model)
    assert "ReLU" in layer_types(folded)
    reasons = [s["reason"] for s in results["fuse_activation"].skipped]
    assert "its own activation 'tanh' has no fused form" in reasons[0]
    assert "already applies activation 'tanh'" in reasons[1]


def test_sequential_model_is_rewritten(keras):
    L = keras.layers
    model = keras.Sequential([keras.Input((12, 12, 3)), L.Conv2D(4, 3, use_bias=False), L.BatchNormalization(),
                              L.ReLU(max_value=6), L.Flatten(), L.Dense(3)])
    randomize_batchnorm(model)
    folded, _ = run(model)
    assert layer_types(folded) == ["InputLayer", "Conv2D", "Flatten", "Dense"]


def test_model_output_batchnorm_is_folded_and_rewired(keras):
    model = build(keras, lambda L, x: L.BatchNormalization()(L.Dense(3)(L.Flatten()(x))))
    folded, _ = run(model)
    assert layer_types(folded)[-1] == "Dense"


def test_user_model_is_left_untouched(keras):
    """The passes work on a copy: the user's layers, their configs (a fused ReLU would show as the
    conv's activation), every weight and the outputs are the same after the passes as before."""
    model = build(keras, lambda L, x: L.Flatten()(L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3)(x)))))
    x = samples()
    types, configs = layer_types(model), [layer.get_config() for layer in model.layers]
    weights = [w.copy() for w in model.get_weights()]
    outputs = model.predict(x, verbose=0)
    folded, results = run(model)
    assert results["fold_batchnorm"].changed and results["fuse_activation"].changed  # the passes did run
    assert layer_types(folded) != types
    assert layer_types(model) == types
    assert [layer.get_config() for layer in model.layers] == configs
    after = model.get_weights()
    assert len(after) == len(weights) and all(np.array_equal(a, b) for a, b in zip(after, weights))
    np.testing.assert_array_equal(model.predict(x, verbose=0), outputs)


def test_grouped_conv_with_one_channel_per_group_becomes_depthwise(keras):
    """Conv2D(groups=C) on C channels (ConvNeXt's depthwise blocks) is a DepthwiseConv2D; then its
    BatchNorm folds and its ReLU fuses like any depthwise convolution's."""
    model = build(keras, lambda L, x: L.ReLU()(L.BatchNormalization()(
        L.Conv2D(8, 3, padding="same", groups=4, name="grouped")(L.Conv2D(4, 1)(x)))), shape=(12, 12, 3))
    folded, results = run(model)
    layer = folded.get_layer("grouped")
    assert type(layer).__name__ == "DepthwiseConv2D"
    assert layer.depth_multiplier == 2 and layer.activation.__name__ == "relu"
    assert results["grouped_conv_to_depthwise"].changed[0]["depth_multiplier"] == 2
    assert results["fold_batchnorm"].changed and results["fuse_activation"].changed
    # the kernel is the grouped one reshaped (output channel c*m + j reads input channel c), then
    # scaled per output channel by the folded BatchNorm
    ratio = layer.get_weights()[0].reshape(3, 3, 1, 8) / model.get_layer("grouped").get_weights()[0]
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:1, :1], ratio.shape), rtol=1e-4)


def test_grouped_conv_with_several_channels_per_group_stays_with_reason(keras):
    model = build(keras, lambda L, x: L.Conv2D(8, 3, groups=2, name="grouped")(L.Conv2D(4, 1)(x)))
    folded, results = run(model)
    assert type(folded.get_layer("grouped")).__name__ == "Conv2D"
    skipped = results["grouped_conv_to_depthwise"].skipped
    assert skipped[0]["layer"] == "grouped" and "2 input channels per group" in skipped[0]["reason"]
