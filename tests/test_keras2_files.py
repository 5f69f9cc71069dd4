"""The model files people have: Keras 2 `.h5`, custom layer classes, Lambda layers (issue 21).

Each file is built here from a tiny Keras 3 model and saved the way the real files were: a
Keras 2.4 `.h5` is a Keras 3 `.h5` whose stored config is rewritten with h5py into what tf.keras
2.x wrote (`groups` in every convolution, the separable convolution's `kernel_*` keys,
`LeakyReLU(alpha)`, a `Policy` dtype, `batch_input_shape`). Parity is recomputed against the
Keras 3 model the file came from, never read back from the report.
"""
from __future__ import annotations

import importlib.util
import json
import sys
import textwrap

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli
from edgeact.runtime import open_runner
from tests.conftest import randomize_batchnorm
from tests.helpers import only


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def pixels(tmp_path, n=40, size=8, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, size // 2, size // 2, 3)).astype(np.float32)
    images = np.repeat(np.repeat(base, 2, axis=1), 2, axis=2).astype(np.uint8)
    np.save(tmp_path / "px.npy", images)
    return tmp_path / "px.npy", images.astype(np.float32) / 255  # the unit preset edgeact applies to pixels


def sqnr_db(reference, candidate) -> float:
    noise = np.sum((reference - candidate) ** 2)
    return float(10 * np.log10(np.sum(reference ** 2) / noise)) if noise else float("inf")


def as_keras2(path, edit_layer=None) -> None:
    """Rewrite a Keras 3 .h5 in place into what tf.keras 2.4 wrote for the same model."""
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            cfg = layer["config"]
            layer.pop("module", None)
            layer.pop("registered_name", None)
            cfg["dtype"] = "float32"
            if "batch_shape" in cfg:
                cfg["batch_input_shape"] = cfg.pop("batch_shape")
            if layer["class_name"] in ("DepthwiseConv2D", "SeparableConv2D", "Conv2D"):
                cfg["groups"] = 1  # Keras 2 wrote it for every convolution; Keras 3 keeps it for Conv2D only
            if layer["class_name"] == "SeparableConv2D":
                cfg.update(kernel_initializer={"class_name": "GlorotUniform", "config": {"seed": None}},
                           kernel_regularizer=None, kernel_constraint=None)
            if layer["class_name"] == "LeakyReLU":
                cfg["alpha"] = cfg.pop("negative_slope")
            if layer["class_name"] == "Dense":
                cfg["dtype"] = {"class_name": "Policy", "config": {"name": "mixed_float16"}}
            if edit_layer:
                edit_layer(layer)
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.4.0"


def mobile_model(keras):
    L = keras.layers
    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.ReLU(name="dw_relu")(x)
    x = L.SeparableConv2D(8, 3, name="sep")(x)
    x = L.LeakyReLU(negative_slope=0.1, name="leaky")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(3, activation="softmax", name="scores")(x), name="mobile")


def test_a_keras2_h5_with_groups_in_depthwise_loads_converts_and_says_what_was_translated(keras, tmp_path):
    model = mobile_model(keras)
    path = tmp_path / "mobile.h5"
    model.save(path)
    as_keras2(path)
    with pytest.raises(Exception, match="groups"):  # what Keras 3 alone does with this file
        keras.models.load_model(path, compile=False)
    data, x = pixels(tmp_path)
    result = invoke("convert", path, "-c", data, "-o", tmp_path / "out", "-f", "tflite", "-f", "onnx",
                    "--samples", 30, "--holdout", 10, "--json")
    assert result.exit_code == 0, result.output
    notes = json.loads(result.stdout)["notes"]
    keras2 = [n for n in notes if n.startswith("Keras 2.4.0 file: ")]
    assert any("dropped groups=1" in n and "2 layers: dw, sep" in n for n in keras2), notes
    assert any("kernel_initializer/regularizer/constraint" in n and "sep" in n for n in keras2), notes
    assert any("LeakyReLU alpha read as negative_slope" in n and "leaky" in n for n in keras2), notes
    assert any("mixed_float16" in n and "scores" in n for n in keras2), notes
    want = model.predict(x[:10], verbose=0)  # the Keras 3 model the file was written from
    for name in ("mobile_int8.tflite", "mobile_int8.onnx"):
        got = only(open_runner(tmp_path / "out" / name).predict(x[:10]))
        assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.9 and sqnr_db(want, got) > 25, name


def test_a_keras2_value_no_rule_translates_names_the_layer_and_the_key(keras, tmp_path):
    model = mobile_model(keras)
    data, _ = pixels(tmp_path)
    grouped = tmp_path / "grouped.h5"
    model.save(grouped)
    as_keras2(grouped, lambda layer: layer["config"].update(groups=2) if layer["config"]["name"] == "dw" else None)
    line = one_error_line(invoke("convert", grouped, "-c", data, "-o", tmp_path / "o1"))
    assert "layer 'dw' (DepthwiseConv2D) has groups=2" in line and "re-save" in line
    odd = tmp_path / "odd.h5"
    model.save(odd)
    as_keras2(odd, lambda layer: layer["config"].update(squeeze_excite=True) if layer["config"]["name"] == "stem"
              else None)
    line = one_error_line(invoke("convert", odd, "-c", data, "-o", tmp_path / "o2"))
    assert "layer 'stem' (Conv2D) has the key 'squeeze_excite'" in line and "Keras 2.4.0" in line
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


CUSTOM_LAYER = textwrap.dedent("""
    import keras


    class ChannelScale(keras.layers.Layer):
        \"\"\"y = x * factor per channel: a layer Keras only knows from this file.\"\"\"

        def __init__(self, factor=1.5, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}
    """)


def test_a_custom_layer_needs_its_file_and_converts_with_custom_objects(keras, tmp_path):
    code = tmp_path / "my_layers.py"
    code.write_text(CUSTOM_LAYER)
    spec = importlib.util.spec_from_file_location("i21_my_layers_build", code)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # built from the file, then forgotten: Keras cannot find it by module name
    L = keras.layers
    keras.utils.set_random_seed(4)
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.BatchNormalization(name="bn")(L.Conv2D(6, 3, use_bias=False, name="conv")(inputs))
    x = module.ChannelScale(0.75, name="scale")(L.ReLU()(x))
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(3, activation="softmax", name="scores")(x), name="custom")
    randomize_batchnorm(model)
    path = tmp_path / "custom.keras"
    model.save(path)
    sys.modules.pop("i21_my_layers_build", None)
    data, x = pixels(tmp_path, seed=1)
    base = ["convert", path, "-c", data, "-o", tmp_path / "out", "--samples", 30, "--holdout", 10]
    line = one_error_line(invoke(*base))
    assert "'ChannelScale'" in line and "(layer 'scale')" in line and "--custom-objects FILE.py" in line
    assert not (tmp_path / "out").exists()
    done = invoke(*base, "-f", "tflite", "-f", "onnx", "--custom-objects", code, "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    folded = {p["name"]: p for p in report["passes"]}["fold_batchnorm"]  # a rebuild that needs the class
    assert len(folded["changed"]) == 1, folded
    want = model.predict(x[:10], verbose=0)
    for name in ("custom_int8.tflite", "custom_int8.onnx"):
        got = only(open_runner(tmp_path / "out" / name).predict(x[:10]))
        assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.9 and sqnr_db(want, got) > 25, name


def test_a_lambda_layer_needs_trust_model_code_and_converts_with_it_and_a_warning(keras, tmp_path):
    L = keras.layers
    keras.utils.set_random_seed(5)
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(6, 3, activation="relu", name="conv")(inputs)
    x = L.Lambda(lambda t: t * 0.5 + 0.25, name="affine")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(3, activation="softmax", name="scores")(x), name="lam")
    path = tmp_path / "lam.h5"
    model.save(path)
    data, x = pixels(tmp_path, seed=2)
    base = ["convert", path, "-c", data, "-o", tmp_path / "out", "--samples", 30, "--holdout", 10]
    line = one_error_line(invoke(*base))
    assert "Lambda layer 'affine'" in line and "--trust-model-code" in line
    assert not (tmp_path / "out").exists()
    done = invoke(*base, "--trust-model-code", "--json")
    assert done.exit_code == 0, done.output
    assert "warning: --trust-model-code: loading lam.h5 runs the Python code of its Lambda layer 'affine'" \
        in done.stderr
    want = model.predict(x[:10], verbose=0)
    got = only(open_runner(tmp_path / "out" / "lam_int8.tflite").predict(x[:10]))
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.9 and sqnr_db(want, got) > 25
