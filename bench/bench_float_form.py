"""The float reference's form: MobileNetV3 float TFLite with and without decompose_hard_swish, timed interleaved.

Issue 26: rewrites made for INT8's sake (converters.passes.pipeline.INT8_ONLY_PASSES) no longer reach the
float reference. This measures what they would cost it: both float files from the same folded Keras
model (weights=None: speed only, no accuracy claim), LiteRT with XNNPACK, `--threads` threads, the two
models' runs interleaved in `--rounds` rounds of `--runs` invokes; median of the rounds' medians.

    .venv/bin/python bench/bench_float_form.py --rounds 5 --runs 50 --threads 2
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np


def _float_tflite(model) -> bytes:
    import contextlib
    import io

    import tensorflow as tf

    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints the SavedModel it wrote
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["small", "large"], default="small")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import keras
    from ai_edge_litert.interpreter import Interpreter

    from converters.passes.pipeline import DEFAULT_PIPELINE, INT8_ONLY_PASSES, run_pipeline
    from edgeact.cpu_features import cpu_flags

    build = keras.applications.MobileNetV3Small if args.family == "small" else keras.applications.MobileNetV3Large
    model = build(input_shape=(224, 224, 3), weights=None, include_preprocessing=False)
    float_passes = [p for p in DEFAULT_PIPELINE if p not in INT8_ONLY_PASSES]
    kept, _ = run_pipeline(model, float_passes)
    rewritten, _ = run_pipeline(kept, [p for p in DEFAULT_PIPELINE if p in INT8_ONLY_PASSES])
    files = {"float reference (HARD_SWISH kept)": _float_tflite(kept),
             "with decompose_hard_swish": _float_tflite(rewritten)}
    interpreters = {}
    for name, data in files.items():
        interpreter = Interpreter(model_content=data, num_threads=args.threads)
        interpreter.allocate_tensors()
        interpreters[name] = interpreter
    x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)

    def invoke(interpreter) -> float:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        start = time.perf_counter()
        interpreter.invoke()
        return time.perf_counter() - start

    for interpreter in interpreters.values():
        for _ in range(10):
            invoke(interpreter)
    medians = {name: [] for name in interpreters}
    for _ in range(args.rounds):
        for name, interpreter in interpreters.items():
            medians[name].append(float(np.median([invoke(interpreter) for _ in range(args.runs)])) * 1e3)
    flags = sorted((cpu_flags() or set()) & {"avx2", "avx512_vnni", "avx_vnni", "asimddp"})
    print(f"# MobileNetV3{args.family.capitalize()} float TFLite, {platform.machine()}, {args.threads} threads, "
          f"flags {flags}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    base = float(np.median(medians["float reference (HARD_SWISH kept)"]))
    for name, values in medians.items():
        ms = float(np.median(values))
        print(f"{name:36s} {ms:7.3f} ms  ({ms / base:.3f}x the reference; rounds {np.round(values, 3).tolist()})")


if __name__ == "__main__":
    main()
