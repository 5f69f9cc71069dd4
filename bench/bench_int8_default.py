"""Default INT8 on trained models, judged on data convert never saw: plain converters, edgeact
before the weight steps, edgeact after (converters.rounding), per format.

    python bench/bench_int8_default.py [--epochs 3] [--eval 2000] [--only mnist_cnn,photos] [--save DIR]

Models, each trained here on real data (nothing is downloaded):

- `mnist_cnn`: the bundled examples/mnist/mnist_cnn.keras (BatchNorm, depthwise, separable, a
  residual Add), trained by examples/mnist/train.py;
- `mnist_plain` and `mnist_outlier`: bench_int8_fixes.py's ReLU CNN, and its outlier copy (one
  channel x300, the next layer's weights reading it /300: the same float function);
- `digits`: scikit-learn's 8x8 digits upscaled to 16x16, a BatchNorm/ReLU6/depthwise CNN;
- `mobilenetv2_photos`: keras.applications.MobileNetV2 (alpha 0.35, 96x96) trained from scratch
  on 96x96 crops of the same six photos, split the same way (`mobilenetv2_model`);
- `photos`: 32x32 crops of six scikit-image photos (class = the photo), a MobileNet-style CNN;
  training and calibration crops come from the left 70 % of each photo, evaluation crops from
  the right 30 %.

edgeact reads 300 calibration samples, calibrates on 200 of them (a seeded shuffle) and verifies
on the other 100; the plain converters calibrate on the same 200 (which 200 matters: on the
photos, the plain TFLite model was 29.8 dB on the first 200 and 27.9 dB on edgeact's). Every
figure is measured on the evaluation samples, which none of them saw:

- `plain`: TFLiteConverter full-integer INT8 with those samples as representative_dataset; for
  ONNX, tf2onnx + quant_pre_process + quantize_static with its defaults (QDQ, int8, per tensor)
  and, as `plain/pc`, with edgeact's settings (uint8 activations, int8 per-channel weights);
- `none`: `convert(..., int8_steps=none)`: edgeact as it was before the weight steps;
- `auto`: `convert(...)`, the default: each step (weight rounding, bias correction, per-tensor
  activation ranges, cross-layer equalization) kept only where the judge samples resolve a gain;
- `all`: `convert(..., int8_steps=all)`: every step but equalization, unjudged (what they are worth
  on their own).

Per row: SQNR of the INT8 outputs against float, top-1 agreement with float, the top-1 drop
against float in points with its exact 95 % interval (edgeact.stats.paired_drop), and the
conversion's wall time.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CALIBRATION = 300


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mnist_models(keras, epochs: int, count: int):
    fixes = _load("bench_int8_fixes", ROOT / "bench" / "bench_int8_fixes.py")
    x_train, y_train, x_test, y_test = fixes._mnist()
    plain = fixes.build_and_train(keras, x_train[:20000], y_train[:20000], epochs)
    bundled = keras.saving.load_model(ROOT / "examples" / "mnist" / "mnist_cnn.keras")
    calibration = x_train[-CALIBRATION:]
    evaluation = (x_test[:count], y_test[:count])
    return [("mnist_cnn", bundled, calibration, evaluation),
            ("mnist_plain", plain, calibration, evaluation),
            ("mnist_outlier", fixes.make_outlier(keras, plain, 300.0), calibration, evaluation)]


def _small_cnn(keras, shape, classes: int, name: str, width: int = 16):
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape, name="image")
    h = layers.Conv2D(width, 3, padding="same", use_bias=False, name="stem")(inputs)
    h = layers.BatchNormalization(name="stem_bn")(h)
    h = layers.ReLU(6.0, name="stem_relu")(h)
    for i, (filters, stride) in enumerate(((2 * width, 2), (2 * width, 1), (4 * width, 2))):
        h = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"dw{i}")(h)
        h = layers.BatchNormalization(name=f"dw{i}_bn")(h)
        h = layers.ReLU(6.0, name=f"dw{i}_relu")(h)
        h = layers.Conv2D(filters, 1, use_bias=False, name=f"pw{i}")(h)
        h = layers.BatchNormalization(name=f"pw{i}_bn")(h)
        h = layers.ReLU(6.0, name=f"pw{i}_relu")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inputs, layers.Dense(classes, name="logits")(h), name=name)


def _fit(keras, model, x, y, epochs: int):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    return model


def digits_model(keras, epochs: int, count: int):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.kron(digits.images / 16.0, np.ones((2, 2)))[..., None].astype(np.float32)  # 16x16
    y = digits.target
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    train, test = slice(0, 1200), slice(1200, None)
    model = _fit(keras, _small_cnn(keras, (16, 16, 1), 10, "digits_cnn"), x[train], y[train], epochs * 10)
    return [("digits", model, x[train][-CALIBRATION:], (x[test][:count], y[test][:count]))]


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def _crop_batch(images, count: int, left: bool, seed: int, side: int, pick_size, y_slack: int):
    """`count` square crops (uint8) resized to `side` x `side` by nearest neighbour, and their labels
    (the photo's index): from the left 70 % of each photo, or the right 30 %. `pick_size(rng, height,
    split, right_width)` draws a crop's size; `y_slack` widens the top-row range by that much."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(count):
        label = int(rng.integers(len(images)))
        image = images[label]
        height, width = image.shape[:2]
        split = int(width * 0.7)
        size = pick_size(rng, height, split, width - split)
        low, high = (0, split - size) if left else (split, width - size)
        x0 = int(rng.integers(low, max(low + 1, high)))
        y0 = int(rng.integers(0, height - size + y_slack))
        index = (np.arange(side) * size / side).astype(int)
        xs.append(image[y0:y0 + size, x0:x0 + size][index][:, index])
        ys.append(label)
    return np.stack(xs).astype(np.float32), np.array(ys)


def _crops(images, count: int, left: bool, seed: int):
    """32x32 crops of 48 to 128 pixels, in [0, 1]."""
    x, y = _crop_batch(images, count, left, seed, 32, lambda rng, *_: int(rng.integers(48, 129)), 0)
    return x / 255.0, y


def photo_model(keras, epochs: int, count: int):
    from skimage import data

    images = []
    for name in PHOTOS:
        image = getattr(data, name)()
        images.append(np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3])
    x_train, y_train = _crops(images, 6000, True, 0)
    x_test, y_test = _crops(images, count, False, 1)
    model = _fit(keras, _small_cnn(keras, (32, 32, 3), len(PHOTOS), "photo_cnn", 24), x_train, y_train, epochs * 3)
    return [("photos", model, _crops(images, CALIBRATION, True, 2)[0], (x_test, y_test))]


def _crops_at(images, count: int, left: bool, seed: int, side: int):
    """`side` x `side` crops of 1x to 4x that size (as far as the photo's part allows), in
    MobileNetV2's [-1, 1]."""
    def pick(rng, height, split, right):
        return int(rng.integers(side, max(side + 1, min(4 * side, height, split, right) + 1)))

    x, y = _crop_batch(images, count, left, seed, side, pick, 1)
    return x / 127.5 - 1.0, y


def mobilenetv2_model(keras, epochs: int, count: int):
    """keras.applications.MobileNetV2 (alpha 0.35, 96x96, ReLU6, residual Adds, the real topology)
    trained from scratch here on `_crops_at` of the same six photos: a real trained MobileNetV2 where
    no pretrained weights can be downloaded. Training and calibration crops from the left 70 %,
    evaluation crops from the right 30 %."""
    from skimage import data

    images = []
    for name in PHOTOS:
        image = getattr(data, name)()
        images.append(np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3])
    side = 96
    x_train, y_train = _crops_at(images, 4000, True, 0, side)
    x_test, y_test = _crops_at(images, count, False, 1, side)
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(side, side, 3), alpha=0.35, weights=None,
                                           classes=len(PHOTOS), classifier_activation=None)
    for layer in model.layers:  # Keras' 0.999 leaves the moving statistics at their start after a few epochs
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=epochs * 2, verbose=0)
    accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(1) == y_test))
    print(f"  mobilenetv2_photos: float top-1 {accuracy:.3f} on {len(y_test)} held-out crops", flush=True)
    return [("mobilenetv2_photos", model, _crops_at(images, CALIBRATION, True, 2, side)[0], (x_test, y_test))]


def plain_tflite(model, calibration: np.ndarray) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def plain_onnx(model, calibration: np.ndarray, folder: Path, per_channel: bool) -> Path:
    import tensorflow as tf
    import tf2onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    spec = (tf.TensorSpec((None, *calibration.shape[1:]), tf.float32, name="image"),)
    fp32, prepared = folder / "plain_fp32.onnx", folder / "plain_prepared.onnx"
    tf2onnx.convert.from_keras(model, input_signature=spec, output_path=str(fp32))
    quant_pre_process(str(fp32), str(prepared))
    name = "image"  # the input signature's name, whatever the Keras input is called

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{name: calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    out = folder / f"plain_int8{'_pc' if per_channel else ''}.onnx"
    extra = dict(per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8) if per_channel \
        else {}
    quantize_static(str(prepared), str(out), Reader(), **extra)
    return out


def run_file(path, x: np.ndarray) -> np.ndarray:
    from edgeact.runtime.onnx import OnnxRunner
    from edgeact.runtime.tflite import TFLiteRunner

    runner = TFLiteRunner(path) if str(path).endswith(".tflite") else OnnxRunner(path)
    (outputs,) = runner.predict({runner.inputs[0].name: x}).values()
    return np.asarray(outputs, np.float64)


def row(model_name: str, fmt: str, variant: str, outputs, reference, labels, seconds) -> dict:
    from edgeact.stats import paired_drop

    sqnr = 10 * np.log10(np.sum(reference ** 2) / np.sum((outputs - reference) ** 2))
    drop = paired_drop(reference.argmax(1) == labels, outputs.argmax(1) == labels)
    return {"model": model_name, "format": fmt, "variant": variant, "sqnr": float(sqnr),
            "agreement": float(np.mean(outputs.argmax(1) == reference.argmax(1))), "drop": drop,
            "seconds": seconds}


def bench_model(name, model, calibration, evaluation, folder: Path) -> list[dict]:
    from converters import ConvertOptions, convert
    from edgeact.config import Format, Int8Steps
    from edgeact.errors import VerificationError

    x, y = evaluation
    reference = np.asarray(model.predict(x, verbose=0), np.float64)
    rows = []
    calibrated = calibration[np.sort(np.random.default_rng(0).permutation(len(calibration))[:200])]  # edgeact's 200
    start = time.perf_counter()
    plain = plain_tflite(model, calibrated)
    seconds = time.perf_counter() - start
    (folder / "plain.tflite").write_bytes(plain)
    rows.append(row(name, "tflite", "plain", run_file(folder / "plain.tflite", x), reference, y, seconds))
    for per_channel in (False, True):
        start = time.perf_counter()
        path = plain_onnx(model, calibrated, folder, per_channel)
        rows.append(row(name, "onnx", "plain/pc" if per_channel else "plain", run_file(path, x), reference, y,
                        time.perf_counter() - start))
    np.save(folder / "calibration.npy", calibration)
    for steps in (Int8Steps.NONE, Int8Steps.AUTO, Int8Steps.ALL):
        out = folder / steps.value
        start = time.perf_counter()
        try:
            report = convert(model, str(folder / "calibration.npy"), out, ConvertOptions(
                formats=(Format.TFLITE, Format.ONNX), int8_steps=steps, name=name, progress=False, force=True))
        except VerificationError as exc:  # a check failed: the files and the report are written all the same
            report = exc.report
            print(f"  {name} ({steps.value}): {exc}", flush=True)
        seconds = time.perf_counter() - start
        for fmt, suffix in (("tflite", ".tflite"), ("onnx", ".onnx")):
            rows.append(row(name, fmt, steps.value, run_file(out / f"{name}_int8{suffix}", x), reference, y, seconds))
        if steps is Int8Steps.AUTO and report.weight_rounding:
            for fmt, section in report.formats.items():
                for key in ("weight_rounding", "activation_ranges", "equalization"):
                    step = (section.details or {}).get(key) or {}
                    print(f"  {name} {fmt} {key}: kept {step.get('kept')}, judge mean gain per sample "
                          f"{step.get('gain_db')}, judge SQNR {step.get('sqnr_db')}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--eval", type=int, default=2000)
    parser.add_argument("--only", default="", help="comma-separated model names")
    parser.add_argument("--save", type=Path, help="also write each trained model (.keras), its calibration "
                        "samples (.npy) and labelled evaluation data (.npz) here, for edgeact convert")
    args = parser.parse_args()

    from converters.keras.loader import import_keras

    keras = import_keras()
    only = set(filter(None, args.only.split(",")))
    print(f"# bench_int8_default  {time.strftime('%Y-%m-%d')}  {platform.machine()}  {os.cpu_count()} cores  "
          f"python {platform.python_version()}", flush=True)
    models = []
    builders = {mnist_models: ("mnist_cnn", "mnist_plain", "mnist_outlier"), digits_model: ("digits",),
                photo_model: ("photos",), mobilenetv2_model: ("mobilenetv2_photos",)}
    for build, names in builders.items():
        if only and not only & set(names):
            continue
        start = time.perf_counter()
        built = build(keras, args.epochs, args.eval)
        models += [m for m in built if not only or m[0] in only]
        print(f"  trained {', '.join(m[0] for m in built)} in {time.perf_counter() - start:.0f} s", flush=True)
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        for name, model, calibration, (x, y) in models:
            model.save(args.save / f"{name}.keras")
            np.save(args.save / f"{name}_calibration.npy", calibration)
            np.savez(args.save / f"{name}_eval.npz", x=x, y=y)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        for name, model, calibration, evaluation in models:
            folder = Path(tmp) / name
            folder.mkdir()
            rows += bench_model(name, model, calibration, evaluation, folder)
            _table([r for r in rows if r['model'] == name])
    print("\nall models:")
    _table(rows)


def _table(rows: list[dict]) -> None:
    print("\n| model | format | variant | SQNR dB | agreement | top-1 drop pp [95 % interval] | eval n | convert s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        d = r["drop"]
        print(f"| {r['model']} | {r['format']} | {r['variant']} | {r['sqnr']:.2f} | {r['agreement']:.4f} | "
              f"{d.drop_pp:+.2f} [{d.low_pp:+.2f}, {d.high_pp:+.2f}] | {d.samples} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
