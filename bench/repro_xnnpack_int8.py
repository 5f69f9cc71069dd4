"""Minimal reproductions of the INT8 ops LiteRT's XNNPACK delegate leaves to the reference kernels.

    .venv/bin/python bench/repro_xnnpack_int8.py [--threads 2] [--rounds 5] [--runs 50]

bench_families found NASNetMobile, DenseNet121 and ConvNeXtTiny slower in INT8 than in float,
or barely faster, with ops outside XNNPACK. Each model here is the smallest Keras graph that
holds one of those ops the way those families hold it (the shapes of their middle stages),
converted by the plain TFLiteConverter (float, and full-integer INT8 on random calibration data:
no edgeact step touches them), so what it shows is the runtime's, not edgeact's:

- `standalone_relu`: a ReLU whose input another op also reads raw (NASNet's cells), so the
  converter cannot fuse it into the convolution before it: a RELU op of its own;
- `avgpool_same` / `avgpool_valid`: NASNet's 3x3 stride-1 same-padded pool, DenseNet's 2x2
  stride-2 transition pool;
- `concat_scales`: two branches of different ranges concatenated (NASNet's cell outputs);
- `concat_six`: six branches concatenated (NASNet's cells join five or six);
- `layer_norm`: ConvNeXt's LayerNormalization over channels;
- `control`: the same convolutions with nothing else, fully delegated (the baseline);
- `relu_as_depthwise`, `avgpool_valid_as_depthwise`: the same graphs with the op written as the
  1x1 (identity, fused ReLU) or 2x2 (weights 1/4) depthwise convolution it is, what an INT8-only
  graph rewrite could give XNNPACK instead;
- `avgpool_same + edgeact rewrite`, `concat_six + edgeact rewrite`: the plain converter's float
  model of those two, calibrated on the same samples and rewritten by edgeact's
  converters/tflite/xnnpack_rewrites.py before quantizing (the same-padded pool as a depthwise
  convolution with a border correction, the six-input concatenation as two nested ones).

For each: ops and XNNPACK partitions in INT8 (edgeact.fastpath.coverage, as convert reports
them), and float and INT8 batch-1 latency, timed interleaved (median of round means).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_families import cpu_header  # noqa: E402  (sibling scripts, not a package)
from bench_mobilenetv3 import timed_mean  # noqa: E402

SHAPE = (28, 28, 64)  # a middle stage of the 224x224 families


def models(keras) -> dict:
    layers = keras.layers

    def conv(x, name, activation=None):
        return layers.Conv2D(64, 1, activation=activation, name=name)(x)

    def build(name, body):
        keras.utils.set_random_seed(0)
        inputs = keras.Input(SHAPE, name="x")
        return keras.Model(inputs, body(inputs), name=name)

    def control(x):
        return conv(conv(x, "a", "relu"), "b")

    def standalone_relu(x):
        raw = conv(x, "a")
        return layers.Add()([conv(layers.ReLU()(raw), "b"), conv(raw, "c")])

    def avgpool_same(x):
        return conv(layers.AveragePooling2D(3, strides=1, padding="same")(conv(x, "a", "relu")), "b")

    def avgpool_valid(x):
        return conv(layers.AveragePooling2D(2, strides=2, padding="valid")(conv(x, "a", "relu")), "b")

    def concat_scales(x):
        small, large = conv(x, "a", "relu"), layers.Rescaling(8.0)(conv(x, "c", "relu"))
        return conv(layers.Concatenate()([small, large]), "b")

    def concat_six(x):  # NASNet's cells concatenate five or six branches
        return conv(layers.Concatenate()([conv(x, f"a{i}", "relu") for i in range(6)]), "b")

    def identity_depthwise(activation):  # what an INT8-only rewrite could write instead
        return layers.DepthwiseConv2D(1, use_bias=False, depthwise_initializer="ones", activation=activation)

    def relu_as_depthwise(x):
        raw = conv(x, "a")
        return layers.Add()([conv(identity_depthwise("relu")(raw), "b"), conv(raw, "c")])

    def avgpool_valid_as_depthwise(x):
        pool = layers.DepthwiseConv2D(2, strides=2, use_bias=False,
                                      depthwise_initializer=keras.initializers.Constant(0.25))
        return conv(pool(conv(x, "a", "relu")), "b")

    def layer_norm(x):
        return conv(layers.LayerNormalization(epsilon=1e-6)(conv(x, "a")), "b")

    return {name: build(name, body) for name, body in [
        ("control", control), ("standalone_relu", standalone_relu), ("avgpool_same", avgpool_same),
        ("avgpool_valid", avgpool_valid), ("concat_scales", concat_scales), ("concat_six", concat_six),
        ("layer_norm", layer_norm), ("relu_as_depthwise", relu_as_depthwise),
        ("avgpool_valid_as_depthwise", avgpool_valid_as_depthwise)]}


REWRITTEN = ("avgpool_same", "concat_six")  # also timed as edgeact's INT8 rewrite writes them


def calibration_data() -> np.ndarray:
    return np.random.default_rng(1).normal(0, 1, (32, *SHAPE)).astype(np.float32)


def rewritten_int8(fp32: bytes) -> bytes:
    """The float model calibrated on the same samples, with edgeact's XNNPACK rewrites, quantized."""
    from converters.tflite.calibrate import calibrate_float
    from converters.tflite.ranges import quantize_calibrated
    from converters.tflite.xnnpack_rewrites import xnnpack_rewrites
    from edgeact.config import IOType

    calibrated, _ = calibrate_float(fp32, [{"x": s[None]} for s in calibration_data()])
    rewritten, found = xnnpack_rewrites(calibrated)
    if not found:
        raise SystemExit("edgeact's rewrites found nothing to rewrite in a model built to have it")
    return quantize_calibrated(rewritten, IOType.INT8)


def convert_pair(model) -> tuple[bytes, bytes]:
    import tensorflow as tf

    fp32 = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    data = calibration_data()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in data)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return fp32, converter.convert()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    from converters.keras.loader import import_keras
    from edgeact.fastpath.coverage import model_coverage
    from edgeact.quiet import native_output_captured
    from edgeact.runtime import open_runner

    keras = import_keras()
    print(cpu_header(), f"platform {platform.platform()}", f"threads {args.threads}", sep="\n", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="repro-xnnpack-") as tmp:
        runners, coverage = {}, {}
        for base, model in models(keras).items():
            fp32, int8 = convert_pair(model)
            variants = [(base, int8)]
            if base in REWRITTEN:
                variants.append((f"{base} + edgeact rewrite", rewritten_int8(fp32)))
            for name, int8 in variants:
                file = name.replace(" ", "_").replace("+", "")
                for kind, data in (("fp32", fp32), ("int8", int8)):
                    (Path(tmp) / f"{file}_{kind}.tflite").write_bytes(data)
                    with native_output_captured():
                        runners[(name, kind)] = open_runner(Path(tmp) / f"{file}_{kind}.tflite", threads=args.threads)
                coverage[name] = model_coverage(Path(tmp) / f"{file}_int8.tflite", threads=args.threads)
        sample = np.random.default_rng(0).normal(0, 1, (1, *SHAPE)).astype(np.float32)
        prepared = {key: runner.prepare(sample) for key, runner in runners.items()}
        means: dict = {key: [] for key in runners}
        for _ in range(args.rounds):
            for key, runner in runners.items():
                means[key].append(timed_mean(runner, prepared[key], args.runs, args.warmup))
        for name, found in coverage.items():
            fp32_ms, int8_ms = (float(np.median(means[(name, kind)])) for kind in ("fp32", "int8"))
            left = "; ".join(f"{op.type}: {op.reason}" for op in {op.type: op for op in found.left}.values())
            rows.append(f"| {name} | {found.fast_ops}/{found.total_ops} in {found.partitions} | {fp32_ms:.3f} | "
                        f"{int8_ms:.3f} | {fp32_ms / int8_ms:.2f}x | {left or '-'} |")
    print("\n| model | INT8 ops delegated, partitions | float ms | INT8 ms | INT8/float | left to the reference "
          "kernels (edgeact's reason) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
