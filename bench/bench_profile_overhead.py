"""How far edgeact's timed loop is from a bare `interpreter.invoke()` / `session.run` loop.

    .venv/bin/python bench/bench_profile_overhead.py [--threads 2] [--rounds 10] [--workdir /tmp/edgeact-bench]

For each model, two loops run on the same interpreter (or ORT session), interleaved:
- bare: input set once, then `for _ in range(n): interpreter.invoke()` timed as a whole
  (`session.run(None, feed)` for ORT);
- edgeact: `edgeact.runtime.open_runner` + `edgeact.measure.profiler.time_invocations`, the loop
  `edgeact profile` uses, which writes a new sample into the input buffer before every
  invoke and times each invoke on its own.
Blocks of each alternate (the order flips every round, to cancel drift on a shared
machine); the figure is edgeact's reported mean latency over the bare loop's mean time
per call, over all blocks ("ratio"), as the median of per-round ratios ("median"), and
between the fastest block of each ("fastest": other work on the machine only ever adds
time, so the fastest blocks are the least disturbed). "loop/bare" also counts edgeact's
per-step input copy, which is not in the reported latency.

Models (built once into --workdir): MobileNetV2 (224x224, random weights) as INT8 .tflite
calibrated on random data, and as float .onnx via tf2onnx; the MNIST example model as
INT8 .tflite and float .onnx when examples/mnist/mnist_cnn.keras exists.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeact.measure.profiler import time_invocations  # noqa: E402
from edgeact.quiet import native_output_captured  # noqa: E402
from edgeact.runtime import open_runner  # noqa: E402

MNIST_MODEL = ROOT / "examples" / "mnist" / "mnist_cnn.keras"
MNIST_CALIBRATION = ROOT / "examples" / "mnist" / "calibration"


def build_models(workdir: Path) -> list[Path]:
    """Convert the benchmark models once; later runs reuse the files."""
    workdir.mkdir(parents=True, exist_ok=True)
    wanted = [workdir / "mobilenetv2_int8.tflite", workdir / "mobilenetv2_fp32.onnx"]
    if MNIST_MODEL.exists():
        wanted += [workdir / "mnist_cnn_int8.tflite", workdir / "mnist_cnn_fp32.onnx"]
    if all(p.exists() for p in wanted):
        return wanted
    from converters import ConvertOptions, convert
    from converters.keras.loader import import_keras
    from edgeact.data.preprocess import make_preprocessing

    keras = import_keras()
    import warnings

    warnings.simplefilter("ignore")
    if not wanted[0].exists():
        model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
        convert(model, "random", workdir, ConvertOptions(samples=32, holdout=8, name="mobilenetv2", force=True,
                                                         preprocessing=make_preprocessing("mobilenet"),
                                                         progress=False))
    if not wanted[1].exists():
        export_onnx(keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3)), wanted[1])
    if MNIST_MODEL.exists():
        if not wanted[2].exists():
            convert(MNIST_MODEL, MNIST_CALIBRATION, workdir,
                    ConvertOptions(samples=200, holdout=50, name="mnist_cnn", force=True, progress=False))
        if not wanted[3].exists():
            export_onnx(keras.models.load_model(MNIST_MODEL), wanted[3])
    return wanted


def export_onnx(model, path: Path) -> None:
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32, name="input"),)
    with native_output_captured():
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(path))


def bare_loop(runner):
    """A function timing n calls of the runtime's own API on the runner's own interpreter/session.

    The same native object as edgeact's loop: two interpreters (or ORT sessions) would each keep
    a thread pool whose idle spinning slows the other down on a small machine.
    """
    if runner.format == "tflite":
        interpreter = runner.interpreter
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        invoke = interpreter.invoke

        def run(n: int) -> float:
            start = time.perf_counter_ns()
            for _ in range(n):
                invoke()
            return (time.perf_counter_ns() - start) / 1e6 / n

        return run
    session = runner.session
    model_input = session.get_inputs()[0]
    feed = {model_input.name: np.zeros([d if isinstance(d, int) else 1 for d in model_input.shape], np.float32)}
    session_run = session.run

    def run(n: int) -> float:
        start = time.perf_counter_ns()
        for _ in range(n):
            session_run(None, feed)
        return (time.perf_counter_ns() - start) / 1e6 / n

    return run


def edgeact_loop(path: Path, threads: int):
    """edgeact's reported mean latency, and its loop's wall time per step, for n timed runs."""
    runner = open_runner(path, threads=threads)
    spec = runner.inputs[0]
    rng = np.random.default_rng(0)
    prepared = runner.prepare(rng.uniform(0, 1, (16, *spec.shape[1:])).astype(np.float32))

    def run(n: int) -> tuple[float, float]:
        start = time.perf_counter_ns()
        times = time_invocations(runner, prepared, n)
        wall = (time.perf_counter_ns() - start) / 1e6 / n
        return float(times.mean()), wall

    return runner, run


def bench_model(path: Path, threads: int, rounds: int, block_seconds: float) -> dict:
    runner, ours = edgeact_loop(path, threads)
    bare = bare_loop(runner)
    bare(20), ours(20)  # warm-up both
    block = max(20, int(block_seconds / max(bare(20), 1e-6) * 1e3))
    bare_means, our_means, our_walls = [], [], []
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                bare_means.append(bare(block))
            else:
                mean, wall = ours(block)
                our_means.append(mean)
                our_walls.append(wall)
    bare_ms, our_ms, wall_ms = (float(np.mean(v)) for v in (bare_means, our_means, our_walls))
    per_round = np.asarray(our_means) / np.asarray(bare_means)
    return {"model": path.name, "runtime": f"{runner.runtime} {runner.runtime_version}",
            "api": "invoke()" if path.suffix == ".tflite" else "session.run",
            "threads": threads, "rounds": rounds, "block": block,
            "bare_ms": bare_ms, "edgeact_ms": our_ms, "ratio": our_ms / bare_ms,
            "ratio_median_of_rounds": float(np.median(per_round)),
            "ratio_of_fastest_blocks": float(min(our_means) / min(bare_means)),
            "loop_ms": wall_ms, "loop_ratio": wall_ms / bare_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block-seconds", type=float, default=0.25, help="length of each timed block")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgeact-bench"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    models = build_models(args.workdir)
    results = [bench_model(p, args.threads, args.rounds, args.block_seconds) for p in models]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'model':<26}{'runtime / api':<32}{'bare ms':>10}{'edgeact ms':>12}{'ratio':>8}"
          f"{'median':>8}{'fastest':>9}{'loop/bare':>11}")
    for r in results:
        print(f"{r['model']:<26}{r['runtime'] + ' ' + r['api']:<32}{r['bare_ms']:>10.4f}{r['edgeact_ms']:>12.4f}"
              f"{r['ratio']:>8.3f}{r['ratio_median_of_rounds']:>8.3f}{r['ratio_of_fastest_blocks']:>9.3f}"
              f"{r['loop_ratio']:>11.3f}")
    print(f"threads {args.threads}, {args.rounds} interleaved rounds; ratio = edgeact mean latency / bare mean "
          "per call over all blocks; median = median of per-round ratios; fastest = fastest edgeact block / "
          "fastest bare block; loop/bare includes edgeact's input copy")


if __name__ == "__main__":
    main()
