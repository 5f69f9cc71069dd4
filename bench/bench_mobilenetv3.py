"""MobileNetV3 INT8 vs FP32, before and after the decompose_hard_swish pass: partitions, latency, parity.

    PYTHONPATH=. .venv/bin/python bench/bench_mobilenetv3.py [--models Small Large] [--rounds 5] [--runs 50]
        [--keep DIR [--reuse]]

For each model: keras.applications.MobileNetV3<Small|Large>(weights=None, 224x224x3, logits out:
a softmax over 1000 near-equal random-weight scores would make top-1 agreement a coin toss) with its
BatchNorm statistics re-estimated on the calibration images (random weights otherwise make
activations shrink by orders of magnitude layer after layer, quantization ranges a trained
model never has; the statistics pass makes the ranges realistic, not the accuracy). Then edgeact
convert (TFLite and ONNX, random pixels 0..255 for calibration: fine for speed, meaningless for
accuracy) twice: "before" with passes fold_batchnorm, fuse_activation; "after" with the default
pipeline, which adds decompose_hard_swish. The eight models are timed in interleaved rounds in
one process, batch 1, so machine noise hits them alike; the figures are the median of round means and,
in brackets, the best round (the machine is shared; the best round is the least disturbed).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

BEFORE = ("fold_batchnorm", "fuse_activation")
# wall: what a user waits. cpu: the process's CPU time (time.process_time), which on a shared
# machine leaves out the time the process waited for a core; with --threads 1 it is the kernels'
# own cost, the figure that stays put when other work loads the machine (with 2 threads it also
# counts the pool threads' spinning, so use it with 1).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def build_model(name: str, pixels: np.ndarray):
    from converters.keras.loader import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, f"MobileNetV3{name}")(weights=None, input_shape=(224, 224, 3),
                                                                  classifier_activation=None)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            seen = np.asarray(keras.Model(model.inputs, layer.input).predict(pixels, verbose=0))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([gamma, beta, seen.mean(axis=(0, 1, 2)), seen.var(axis=(0, 1, 2))])
    # Rebuilt from its config, as a saved .keras file loads: keras.applications' unnamed Input is a
    # tensor named 'keras_tensor' in memory but 'input_layer' once rebuilt (by the graph passes too),
    # and calibration samples keyed by one name do not feed a signature keyed by the other.
    rebuilt = keras.Model.from_config(model.get_config())
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def convert_variant(model, out: Path, name: str, passes) -> dict:
    from converters import ConvertOptions, convert
    from edgeact.config import Format
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.errors import VerificationError

    options = ConvertOptions(formats=(Format.TFLITE, Format.ONNX), samples=32, holdout=16, name=name, force=True,
                             progress=False, passes=passes, preprocessing=make_preprocessing("none"))
    started = time.perf_counter()
    try:
        convert(model, "random", out, options)
    except VerificationError as exc:  # written, but a check failed: reported below, not hidden
        print(f"  {name}: {exc}")
    report = json.loads((out / f"{name}.edgeact.json").read_text())
    report["_seconds"] = time.perf_counter() - started
    return report


def timed_mean(runner, prepared: np.ndarray, runs: int, warmup: int, clock=time.perf_counter) -> float:
    for _ in range(warmup):
        runner.set_inputs([prepared])
        runner.invoke()
    start = clock()
    for _ in range(runs):
        runner.set_inputs([prepared])
        runner.invoke()
    return (clock() - start) / runs * 1e3


def parity_text(report: dict, fmt: str) -> str:
    """The report's INT8-vs-Keras parity check of one format (the typed report's "checks" list)."""
    checks = [c for c in report.get("checks", []) if c["kind"] == "parity" and c["subject"] == f"{fmt} int8 vs keras"]
    if not checks:
        return "-"
    c = checks[0]
    return f"{'pass' if c['passed'] else 'FAIL'} (cos {c['metrics']['cosine']:.4f}, " \
           f"top-1 {c['metrics']['top1_agreement']:.2f})"


def bench_model(name: str, args, out: Path) -> list[str]:
    from edgeact.fastpath.coverage import model_coverage
    from edgeact.runtime import open_runner

    pixels = np.random.default_rng(0).integers(0, 256, (16, 224, 224, 3)).astype(np.float32)
    stem = f"v3{name.lower()}"
    if args.reuse and all((out / f"{stem}_{v}.edgeact.json").exists() for v in ("before", "after")):
        reports = {v: {**json.loads((out / f"{stem}_{v}.edgeact.json").read_text()), "_seconds": float("nan")}
                   for v in ("before", "after")}
    else:
        model = build_model(name, pixels)
        reports = {"before": convert_variant(model, out, f"{stem}_before", BEFORE),
                   "after": convert_variant(model, out, f"{stem}_after", None)}
    paths = {(variant, fmt, kind): out / f"v3{name.lower()}_{variant}_{kind}.{fmt}"
             for variant in reports for fmt in ("tflite", "onnx") for kind in ("fp32", "int8")}
    runners = {key: open_runner(path, threads=args.threads) for key, path in paths.items()}
    sample = pixels[:1]
    prepared = {key: runner.prepare(sample) for key, runner in runners.items()}
    means: dict = {key: [] for key in runners}
    for _ in range(args.rounds):
        for key, runner in runners.items():
            means[key].append(timed_mean(runner, prepared[key], args.runs, args.warmup, CLOCKS[args.clock]))
    median = {key: float(np.median(v)) for key, v in means.items()}
    best = {key: float(np.min(v)) for key, v in means.items()}
    lines = []
    for variant, report in reports.items():
        for fmt in ("tflite", "onnx"):
            fp32, int8 = median[(variant, fmt, "fp32")], median[(variant, fmt, "int8")]
            fp32_best, int8_best = best[(variant, fmt, "fp32")], best[(variant, fmt, "int8")]
            coverage = model_coverage(paths[(variant, fmt, "int8")], threads=args.threads)
            where = f"{coverage.partitions} partitions" if fmt == "tflite" else f"{len(coverage.left)} float nodes"
            lines.append(f"| MobileNetV3{name} | {variant} | {fmt} | {fp32:.2f} ({fp32_best:.2f}) "
                         f"| {int8:.2f} ({int8_best:.2f}) | {fp32 / int8:.2f}x ({fp32_best / int8_best:.2f}x) "
                         f"| {where} | {parity_text(report, fmt)} |")
        print(f"  {variant}: converted in {report['_seconds']:.0f} s")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["Small", "Large"], choices=["Small", "Large"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or the process's CPU time (use with --threads 1 on a loaded machine)")
    parser.add_argument("--keep", type=Path, help="Keep the converted models and reports in this folder.")
    parser.add_argument("--reuse", action="store_true", help="Time the models already in --keep, no conversion.")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the random-calibration warning: this bench is about speed

    from edgeact.remote.probe import gather_facts

    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeact-bench-v3-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            print(f"MobileNetV3{name} ...")
            rows += bench_model(name, args, out)
    facts = gather_facts()
    print(f"\n{facts['arch']} {facts['cpu_model']} ({facts['cpu_count']} cpus), {args.threads} threads, batch 1, "
          f"{args.rounds} rounds x {args.runs} runs, {args.clock} clock, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}\n")
    print("ms: median of round means (best round); speed-up = FP32 / INT8 of those\n")
    print("| model | passes | format | FP32 ms | INT8 ms | INT8 speed-up | INT8 fast path | INT8 parity vs Keras |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
