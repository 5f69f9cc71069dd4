"""INT8 ONNX vs float ONNX vs INT8 TFLite latency on a MobileNetV2-shaped model, side by side.

    .venv/bin/python bench/bench_onnx_speed.py [--rounds 5] [--runs 50] [--threads 2]

Converts keras.applications.MobileNetV2(weights=None, 224x224x3) with edgeact's own
pipeline (random calibration: fine for speed, meaningless for accuracy), then times the
four models (ONNX and TFLite, float and INT8) in interleaved rounds in one process, batch 1,
so that machine noise hits all of them alike. Reports per-model median of the round means and the ratios.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def build_model(size: int):
    from converters.keras.loader import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3), classes=1000)


def timed_means(runner, sample: np.ndarray, runs: int, warmup: int) -> float:
    prepared = runner.prepare(sample)
    for _ in range(warmup):
        runner.set_inputs([prepared])
        runner.invoke()
    start = time.perf_counter()
    for _ in range(runs):
        runner.set_inputs([prepared])
        runner.invoke()
    return (time.perf_counter() - start) / runs * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    from converters import ConvertOptions, convert
    from edgeact.config import Format
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.runtime import open_runner

    warnings.simplefilter("ignore")  # the random-calibration warning: this bench is about speed only
    workdir = tempfile.TemporaryDirectory(prefix="edgeact-bench-")
    out = Path(workdir.name)
    started = time.perf_counter()
    report = convert(build_model(args.size), "random", out, ConvertOptions(
        formats=(Format.TFLITE, Format.ONNX), samples=32, holdout=4, name="mobilenetv2", progress=False,
        preprocessing=make_preprocessing("mobilenet")))
    print(f"converted in {time.perf_counter() - started:.0f} s: "
          f"{report['formats']['onnx']['integer_kernels']['summary']}")
    models = {
        "onnx fp32": out / "mobilenetv2_fp32.onnx",
        "onnx int8": out / "mobilenetv2_int8.onnx",
        "tflite int8": out / "mobilenetv2_int8.tflite",
        "tflite fp32": out / "mobilenetv2_fp32.tflite",
    }
    runners = {name: open_runner(path, threads=args.threads) for name, path in models.items()}
    sample = np.random.default_rng(0).uniform(-1, 1, (1, args.size, args.size, 3)).astype(np.float32)
    means: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, runner in runners.items():
            means[name].append(timed_means(runner, sample, args.runs, args.warmup))
    median = {name: float(np.median(v)) for name, v in means.items()}
    from edgeact.remote.probe import gather_facts

    facts = gather_facts()
    print(f"\n{facts['arch']} {facts['cpu_model']} ({facts['cpu_count']} cpus), {args.threads} threads, batch 1, "
          f"{args.rounds} rounds x {args.runs} runs, {time.strftime('%Y-%m-%d')}")
    for name, value in median.items():
        print(f"{name:<12} median of round means {value:8.2f} ms   (rounds: "
              + ", ".join(f"{v:.1f}" for v in means[name]) + ")")
    print(f"\nonnx int8 speed-up over onnx fp32: {median['onnx fp32'] / median['onnx int8']:.2f}x")
    print(f"versions: onnxruntime {runners['onnx int8'].runtime_version}, "
          f"{runners['tflite int8'].runtime} {runners['tflite int8'].runtime_version}")
    print(f"onnx int8 vs tflite int8 latency ratio: {median['onnx int8'] / median['tflite int8']:.2f}")
    print(f"tflite int8 speed-up over tflite fp32: {median['tflite fp32'] / median['tflite int8']:.2f}x")
    workdir.cleanup()


if __name__ == "__main__":
    main()
