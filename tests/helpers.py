"""Small helpers shared by tests."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

# The device name the README and the docs show; test_readme and test_help point it at a local sshd.
README_DEVICE = "pi@raspberrypi.local"


def only(outputs: dict):
    """The one value of a single-output model's outputs (keyed by output name)."""
    (value,) = outputs.values()
    return value


def build_one_bad_layer(keras, activation: str):
    """Only c2 is at fault: each of its output channels has one weight of 1000 on an input channel
    that is always zero (c1's channel 7, held below zero by its bias, then ReLU). The float model
    never sees it; per-channel INT8 scales it sets round every other weight of c2 to zero.
    Ranges cannot help, nor bias correction; equalization can when c1's activation is ReLU
    (it moves c2's outlier weights into c1's dead channel), not after ReLU6."""
    layers = keras.layers
    keras.utils.set_random_seed(7)
    inputs = keras.Input((8, 8, 3), name="image")
    x = layers.Conv2D(8, 3, activation=activation, name="c1")(inputs)
    x = layers.Conv2D(6, 1, name="c2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, layers.Dense(5, name="fc")(x), name="onebad")
    k1, b1 = model.get_layer("c1").get_weights()
    b1[7] = -100.0
    model.get_layer("c1").set_weights([k1, b1])
    k2, b2 = model.get_layer("c2").get_weights()
    k2[:, :, 7, :] = 1000.0
    model.get_layer("c2").set_weights([k2, b2])
    rng = np.random.default_rng(0)
    calibration = rng.uniform(0, 1, (48, 8, 8, 3)).astype(np.float32)
    return model, calibration, rng.uniform(0, 1, (64, 8, 8, 3)).astype(np.float32)


def export_float_onnx(keras_model, path: Path, nchw: bool = False) -> Path:
    """A float ONNX of a Keras model via tf2onnx (the edgeact ONNX exporter is tested elsewhere)."""
    import tensorflow as tf
    import tf2onnx

    from edgeact.quiet import native_output_captured

    shape = (1, *keras_model.inputs[0].shape[1:])
    spec = (tf.TensorSpec(shape, tf.float32, name="image"),)
    with native_output_captured():
        tf2onnx.convert.from_keras(keras_model, input_signature=spec, opset=17, output_path=str(path),
                                   inputs_as_nchw=["image"] if nchw else None)
    return path


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # Steps that finished before the failure print their timed line (not a terminal); the error is
    # the one other line, and the last.
    lines = [line for line in lines if not re.fullmatch(r"edgeact: .+ \.\.\. \d+\.\d s", line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


def write_class_folders(root: Path, pixels: np.ndarray, labels: np.ndarray, names: list[str]) -> Path:
    from PIL import Image

    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(pixels, labels)):
        Image.fromarray(image).save(root / names[label] / f"img_{i:03d}.png")
    return root


def chunk_parts(folder: Path, key: str = "model0") -> dict[str, np.ndarray]:
    """The per-sample scores a checkpoint holds, concatenated in chunk order."""
    out: dict[str, list] = {}
    for path in sorted(folder.glob(f"{key}.*.npz")):
        with np.load(path) as loaded:
            for name in loaded.files:
                # per sample: top-1 class, hits, label; against the reference: cosine and top-1 agreement
                if name.startswith("acc|") or name.endswith(("|cos", "|same", "|margin")):
                    out.setdefault(name, []).append(loaded[name])
    return {k: np.concatenate(v) for k, v in out.items()}


def outlier_cnn(keras):
    """The issue's outlier-channel CNN: c1's channels 0 and 1 scaled up 300x and c2's weights reading
    them scaled down, so the float function is unchanged while c1's INT8 output grid is 300x too coarse."""
    layers = keras.layers
    keras.utils.set_random_seed(11)
    inputs = keras.Input((10, 10, 3), name="image")
    x = layers.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = layers.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, layers.Dense(4, name="fc")(x), name="outlier")
    k1, b1 = model.get_layer("c1").get_weights()
    k2, b2 = model.get_layer("c2").get_weights()
    for channel in (0, 1):
        k1[..., channel] *= 300
        b1[channel] *= 300
        k2[:, :, channel, :] /= 300
    model.get_layer("c1").set_weights([k1, b1])
    model.get_layer("c2").set_weights([k2, b2])
    rng = np.random.default_rng(0)
    return model, rng.uniform(0, 1, (64, 10, 10, 3)).astype(np.float32), \
        rng.uniform(0, 1, (200, 10, 10, 3)).astype(np.float32)


def sqnr(reference, outputs) -> float:
    reference, outputs = np.asarray(reference, np.float64), np.asarray(outputs, np.float64)
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum((reference - outputs) ** 2)))


def cubed_cnn(keras):
    """A conv whose output is cubed: a long tail (most values within +-3, the largest near 50) that
    min/max spends the INT8 grid on, and that the next layer reads; with 700 samples."""
    layers = keras.layers
    keras.utils.set_random_seed(11)
    inputs = keras.Input((12, 12, 3), name="image")
    a = layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    cube = layers.Multiply(name="cube")([layers.Multiply(name="square")([a, a]), a])
    x = layers.Conv2D(8, 1, activation="relu", name="mix")(cube)
    out = layers.Dense(4, name="fc")(layers.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(inputs, out, name="cubed")
    return model, np.random.default_rng(2).normal(0, 1, (700, 12, 12, 3)).astype(np.float32)
