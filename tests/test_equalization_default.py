"""Cross-layer equalization as a judged default INT8 step (converters.rounding.equalization).

The case it is for: one channel of a conv scaled up 300x and the next conv's weights reading it
scaled down as much, so the float function is unchanged while the per-tensor activation grid of
that conv's output is stretched over the other channels. Checked on samples neither calibration
nor the judge saw, against the files `--int8-steps none` writes: the kept equalized INT8 model is
much closer to float, in both formats, and the float references are untouched.
"""
from __future__ import annotations

import numpy as np
import pytest

from converters.passes.pipeline import run_pipeline
from converters.rounding.equalization import EQUALIZATION, equalization_changes
from edgeact.config import Format, Int8Steps


def _outlier_cnn(keras, activation: str = "relu"):
    layers = keras.layers
    keras.utils.set_random_seed(21)
    inputs = keras.Input((14, 14, 3), name="image")
    x = layers.Conv2D(12, 3, activation=activation, name="c1")(inputs)
    x = layers.Conv2D(12, 3, activation=activation, name="c2")(x)
    out = layers.Dense(5, name="fc")(layers.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(inputs, out, name="outlier")
    if activation == "relu":
        c1, c2 = model.get_layer("c1"), model.get_layer("c2")
        k1, b1 = c1.get_weights()
        k2, b2 = c2.get_weights()
        k1[..., 0] *= 300.0
        b1[0] *= 300.0
        k2[:, :, 0, :] /= 300.0  # ReLU(300 x) / 300 = ReLU(x): the same float function
        c1.set_weights([k1, b1])
        c2.set_weights([k2, b2])
    return model


def _equalized(model):
    equalized, (result,) = run_pipeline(model, ["equalize"], None)
    return equalized if result.changed else None


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(8).normal(0, 1, (600, 14, 14, 3)).astype(np.float32)


def _convert(model, data, folder, steps: Int8Steps, layer_error: str = "never"):
    from converters import ConvertOptions, convert
    from edgeact.errors import VerificationError

    np.save(folder / "calibration.npy", data[:300])
    try:
        return convert(model, str(folder / "calibration.npy"), folder / steps.value, ConvertOptions(
            formats=(Format.TFLITE, Format.ONNX), int8_steps=steps, name="outlier", progress=False, force=True,
            layer_error=layer_error))
    except VerificationError as exc:  # the files and the report are written all the same
        return exc.report


def _sqnr(want: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(want ** 2) / np.sum((got - want) ** 2)))


def test_equalization_is_kept_in_both_formats_and_wins_on_samples_no_step_saw(keras, data, tmp_path):
    from edgeact.runtime import open_runner

    model = _outlier_cnn(keras)
    assert {c.layer for c in equalization_changes(model, _equalized(model))} == {"c1", "c2"}
    report = _convert(model, data, tmp_path, Int8Steps.AUTO, layer_error="always")
    _convert(model, data, tmp_path, Int8Steps.NONE)
    unseen = data[300:]
    want = np.asarray(model.predict(unseen, verbose=0), np.float64)
    for fmt, suffix in (("tflite", ".tflite"), ("onnx", ".onnx")):
        step = report.formats[fmt].details["equalization"]
        assert step["kept"] == EQUALIZATION, (fmt, step)
        assert step["gain_db"][EQUALIZATION][0] > 0
        earlier = report.formats[fmt].details.get("weight_rounding") or {"kept": "none"}
        assert earlier["kept"] == "none" or earlier["superseded"] == EQUALIZATION  # not in the file: it says so
        found = {}
        for variant in ("auto", "none"):
            runner = open_runner(tmp_path / variant / f"outlier_int8{suffix}", threads=1)
            found[variant] = _sqnr(want, np.asarray(runner.predict(unseen)[runner.outputs[0].name], np.float64))
        assert found["auto"] > found["none"] + 20.0, (fmt, found)
    # per-layer error against the equalized float twin: c1's output is a per-channel rescaled copy of
    # the float model's, so against the model as it is it would read as noise (about 0 dB)
    rows = {(r["format"], r["layer"]): r for r in report.layer_errors["layers"]}
    for fmt in ("tflite", "onnx"):
        assert rows[(fmt, "c1")]["sqnr_db"] > 30 and rows[(fmt, "c1")]["own_sqnr_db"] > 30, rows[(fmt, "c1")]
    # the float references are the model as it is (equalization is an INT8 step)
    fp32 = open_runner(tmp_path / "auto" / "outlier_fp32.tflite", threads=1)
    assert _sqnr(want, np.asarray(fp32.predict(unseen)[fp32.outputs[0].name], np.float64)) > 100


def test_a_model_without_an_equalizable_pair_offers_nothing(keras):
    model = _outlier_cnn(keras, activation="relu6")
    assert equalization_changes(model, _equalized(model)) == []  # ReLU6 clips: no pair
