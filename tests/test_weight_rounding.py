"""Weight rounding by output error (converters.rounding): each claim recomputed outside the code.

- the chosen integers lower a layer's output error against round-to-nearest on samples the
  search never saw, computed here with Keras' own convolution;
- both written files hold exactly the integers chosen (read back from the .tflite and the .onnx);
- `auto` keeps a step only when the judge samples say it helps, and says when it cannot judge;
- on the bundled MNIST CNN, INT8 is closer to float on test images convert never saw.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from converters.rounding import layers as rounding
from converters.rounding.layers import round_weights
from edgeact.config import Int8Steps
from edgeact.data.samples import Samples

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT / "examples" / "mnist"


def _mnist_images(folder: Path, limit: int | None = None) -> np.ndarray:
    from PIL import Image

    files = sorted(folder.rglob("*.png"))[:limit]
    return np.stack([np.asarray(Image.open(f), np.float32) / 255.0 for f in files])[..., None]


def _patches(seed: int, count: int) -> np.ndarray:
    """Real image content: 12x12 crops of MNIST calibration digits, three channels shifted apart."""
    images = _mnist_images(MNIST / "calibration")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(images), count)
    at = rng.integers(0, 16, (count, 2))
    crops = np.stack([images[i, y:y + 12, x:x + 12, 0] for i, (y, x) in zip(picks, at)])
    return np.stack([crops, np.roll(crops, 1, axis=1), np.roll(crops, 1, axis=2)], axis=-1)


def _conv_model(keras):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="fc")(x))


def _input_grid(x: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """x on the asymmetric 8-bit min/max grid of the calibration data, as TFLite and ORT calibrate."""
    low, high = min(float(calibration.min()), 0.0), max(float(calibration.max()), 0.0)
    scale = (high - low) / 255.0
    zero = round(-low / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def test_the_chosen_integers_lower_the_layers_output_error_on_unseen_samples(keras):
    model = _conv_model(keras)
    calibration, unseen = _patches(0, 96), _patches(1, 64)
    result = round_weights(model, Samples({"image": calibration}), levels=(127,), mode=Int8Steps.ALL)
    change = next(c for c in result.changes(127) if c.layer == "c1")
    kernel = model.get_layer("c1").kernel.numpy()
    scale = np.abs(kernel).max(axis=(0, 1, 2)) / 127
    nearest = np.rint(kernel / scale)
    chosen = change.new_kernel / scale
    assert np.abs(chosen - np.rint(chosen)).max() < 1e-3  # on the grid
    chosen = np.rint(chosen)
    assert np.all((chosen == np.floor(kernel / scale)) | (chosen == np.ceil(kernel / scale)))  # up or down only
    assert np.count_nonzero(chosen != nearest) > 10

    def conv(x, w):
        return np.asarray(keras.ops.conv(x.astype(np.float32), w.astype(np.float32), padding="same"))

    target = conv(unseen, kernel)
    rounded_input = _input_grid(unseen, calibration)
    error_nearest = np.mean((conv(rounded_input, nearest * scale) - target) ** 2)
    error_chosen = np.mean((conv(rounded_input, chosen * scale) - target) ** 2)
    assert error_chosen < 0.9 * error_nearest, (error_chosen, error_nearest)


def _mixed_model(keras):
    layers = keras.layers
    keras.utils.set_random_seed(5)
    inputs = keras.Input((12, 12, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = layers.SeparableConv2D(12, 3, strides=2, padding="same", activation="relu", name="sep")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, layers.Dense(5, activation="softmax", name="scores")(x))
    from tests.conftest import randomize_batchnorm

    randomize_batchnorm(model)
    return model


def _keras_layout(values: np.ndarray, shape: tuple) -> list[np.ndarray]:
    """`values` (a file's weight tensor) rearranged to the Keras kernel's shape, every way its axes allow."""
    core = values.reshape([d for d in values.shape if d != 1])
    want = [d for d in shape if d != 1]
    return [core.transpose(order).reshape(shape) for order in itertools.permutations(range(core.ndim))
            if [core.shape[i] for i in order] == want]


def _file_integers(candidates: list[np.ndarray], kernel: np.ndarray, levels: int, axis: int) -> np.ndarray:
    """The one int8 tensor of the file within one step of `kernel` on its grid: the layer's, found by value."""
    reduce = tuple(i for i in range(kernel.ndim) if i != axis % kernel.ndim)
    ratio = kernel / (np.abs(kernel).max(axis=reduce, keepdims=True) / levels)
    found = [arranged for values in candidates for arranged in _keras_layout(values, kernel.shape)
             if np.all(np.abs(arranged - ratio) <= 1.0001)]
    assert len(found) == 1, f"{len(found)} tensors of the file match the kernel"
    return found[0]


def test_both_files_hold_exactly_the_chosen_integers(keras, tmp_path, monkeypatch):
    import onnx
    from ai_edge_litert.interpreter import Interpreter
    from onnx import numpy_helper

    from converters import ConvertOptions, convert
    from edgeact.config import Format

    seen = {}
    original = rounding.round_weights

    def recording(*args, **kwargs):
        seen["result"] = original(*args, **kwargs)
        return seen["result"]

    monkeypatch.setattr(rounding, "round_weights", recording)
    data = _patches(2, 120)
    np.save(tmp_path / "calibration.npy", data)
    convert(_mixed_model(keras), str(tmp_path / "calibration.npy"), tmp_path / "out", ConvertOptions(
        formats=(Format.TFLITE, Format.ONNX), int8_steps=Int8Steps.ALL, onnx_weight_bits=7, name="m",
        progress=False, layer_error="never"))
    result = seen["result"]
    interpreter = Interpreter(str(tmp_path / "out" / "m_int8.tflite"))
    tflite = []
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] == np.int8 and detail["quantization_parameters"]["scales"].size > 1:
            tflite.append(interpreter.get_tensor(detail["index"]))
    graph = onnx.load(str(tmp_path / "out" / "m_int8.onnx")).graph
    onnx_ints = [numpy_helper.to_array(i) for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    checked = 0
    for levels, candidates in ((127, tflite), (64, onnx_ints)):  # TFLite's grid, ORT's 7-bit one
        changes = result.changes(levels)
        assert {(c.layer, c.weight) for c in changes} == {("conv", "kernel"), ("dw", "kernel"),
                                                          ("sep", "depthwise_kernel"), ("sep", "pointwise_kernel"),
                                                          ("scores", "kernel")}
        for change in changes:
            axis = 2 if change.weight == "depthwise_kernel" or change.layer == "dw" else -1
            written = _file_integers(candidates, change.kernel, levels, axis)
            chosen = change.integers.reshape(written.shape)
            np.testing.assert_array_equal(written, chosen, err_msg=f"{change.layer}/{change.weight} at {levels}")
            nearest = np.rint(change.kernel / (np.abs(change.kernel).max(
                axis=tuple(i for i in range(change.kernel.ndim) if i != axis % change.kernel.ndim),
                keepdims=True) / levels))
            assert np.count_nonzero(written != nearest) > 0  # the file is not what round-to-nearest writes
            checked += 1
    assert checked == 10
    report = json.loads((tmp_path / "out" / "m.edgeact.json").read_text())
    assert report["formats"]["onnx"]["details"]["weight_rounding"]["unmatched"] == []
    for fmt in ("tflite", "onnx"):  # --int8-steps all: the fullest step, unjudged
        assert report["formats"][fmt]["details"]["weight_rounding"]["kept"] == "rounding + bias correction"


def test_auto_keeps_no_rounding_that_makes_a_layer_worse(keras, monkeypatch):
    from converters.rounding import adaround

    def always_down(kernel, moments, levels, **_):  # a harmful rounding: every weight rounded down
        scale = adaround.channel_scale(kernel, levels)
        return np.clip(np.floor(kernel / scale), -levels, levels).astype(np.int32)

    monkeypatch.setattr(rounding, "adaround", always_down)
    model = _conv_model(keras)
    result = round_weights(model, Samples({"image": _patches(0, 120)}), levels=(127,), mode=Int8Steps.AUTO)
    row = next(r for r in result.layers if r.layer == "c1")
    assert row.error_ratio > 2 and not row.rounding_kept  # rounded down, the conv's error is many times worse
    kernel = model.get_layer("c1").kernel.numpy()
    nearest = np.rint(kernel / (np.abs(kernel).max(axis=(0, 1, 2)) / 127))
    for change in result.changes(127):  # a kept bias shift rides on round-to-nearest integers
        if change.layer == "c1":
            np.testing.assert_array_equal(change.integers.reshape(kernel.shape), nearest)


def test_auto_says_when_too_few_samples_are_left_to_judge(keras):
    result = round_weights(_conv_model(keras), Samples({"image": _patches(0, 10)}), levels=(127,))
    assert not result.candidates(127) and not result.changes(127)
    assert "none kept" in result.notes[0] and "--int8-steps all" in result.notes[0]


def _sqnr(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(exact ** 2) / np.sum((approx - exact) ** 2)))


@pytest.mark.slow
def test_a_kept_weight_step_helps_on_test_images_convert_never_saw(tmp_path):
    """The bundled MNIST CNN, both formats: where the judge kept a step, INT8 is closer to float on the
    519 test images than without it; where it kept none, the file computes what it did before."""
    from click.testing import CliRunner

    from converters.keras.loader import import_keras
    from edgeact.cli import cli
    from edgeact.errors import InputError
    from edgeact.report.records import ConvertReport
    from edgeact.runtime.onnx import OnnxRunner
    from edgeact.runtime.tflite import TFLiteRunner

    keras = import_keras()
    test_x = _mnist_images(MNIST / "test_images")
    reference = keras.saving.load_model(MNIST / "mnist_cnn.keras").predict(test_x, verbose=0)
    scores, reports = {}, {}
    for steps in ("none", "auto"):
        out = tmp_path / steps
        result = CliRunner().invoke(cli, ["convert", str(MNIST / "mnist_cnn.keras"), "-c", str(MNIST / "calibration"),
                                          "--preprocess", "unit", "-f", "tflite", "-f", "onnx", "-o", str(out),
                                          "--int8-steps", steps, "--layer-error", "never"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        reports[steps] = json.loads((out / "mnist_cnn.edgeact.json").read_text())
        scores[steps] = {"tflite": TFLiteRunner(out / "mnist_cnn_int8.tflite").predict({"image": test_x})["digits"],
                         "onnx": OnnxRunner(out / "mnist_cnn_int8.onnx").predict({"image": test_x})["digits"]}
    assert reports["none"]["weight_rounding"] is None
    assert "weight steps (auto)" in result.output
    kept = {fmt: reports["auto"]["formats"][fmt]["details"]["weight_rounding"]["kept"] for fmt in ("tflite", "onnx")}
    assert set(kept.values()) != {"none"}, kept  # on this model the judge resolves a gain in one format at least
    for fmt, step in kept.items():
        before, after = _sqnr(scores["none"][fmt], reference), _sqnr(scores["auto"][fmt], reference)
        details = reports["auto"]["formats"][fmt]["details"]
        later = {key: (details.get(key) or {}).get("kept", "none") for key in ("activation_ranges", "equalization")}
        if step == "none" and set(later.values()) == {"none"}:  # nothing kept: the converters' own model
            np.testing.assert_allclose(scores["auto"][fmt], scores["none"][fmt], atol=1e-6)
        else:
            assert after > before, (fmt, step, later, before, after)
    report = reports["auto"]
    report["weight_rounding"] = "every layer"  # a hostile report
    with pytest.raises(InputError, match="weight_rounding"):
        ConvertReport.from_dict(report)


def test_the_judge_keeps_a_step_only_when_its_gain_is_resolved():
    from converters.rounding.judge import choose_step

    rng = np.random.default_rng(0)
    reference = {"scores": rng.normal(size=(100, 10))}
    noise = rng.normal(size=(100, 10)) * 0.01

    def outputs(scale):
        return {"scores": reference["scores"] + noise * scale}

    shuffled = {"scores": reference["scores"] + rng.permutation(noise.ravel()).reshape(noise.shape)}
    choice = choose_step(reference, {"none": outputs(1.0), "better": outputs(0.8), "same noise": shuffled})
    assert choice["kept"] == "better"
    low, high = choice["gain_db"]["better"]
    assert low == pytest.approx(20 * np.log10(1 / 0.8), abs=1e-3) == high  # 1.94 dB on every sample, exactly
    low, high = choice["gain_db"]["same noise"]
    assert low < 0 < high  # the same noise, shuffled between samples: no gain to resolve
    # Less noise on most samples but more on one, so that all samples together lose: not kept.
    worse_total = outputs(0.5)
    worse_total["scores"][0] += 0.5
    choice = choose_step(reference, {"none": outputs(1.0), "mostly better": worse_total})
    assert choice["gain_db"]["mostly better"][0] > 0
    assert choice["sqnr_db"]["mostly better"] < choice["sqnr_db"]["none"] and choice["kept"] == "none"
