"""Every zoo family in one run: INT8/float speed in both runtimes, and convert time against the plain scripts.

    .venv/bin/python bench/bench_families.py [--models MobileNet,MobileNetV2,...] [--rounds 5] [--runs 30]
        [--convert-rounds 1] [--threads 2] [--workdir /tmp/edgeact-bench-families]

For each keras.applications family (weights=None, default input size, BatchNorm statistics from
real photos: bench_convert.prepare) it

1. runs `edgeact convert MODEL -c CALIB.npy --preprocess none -f tflite -f onnx` and the plain
   script (TFLiteConverter float + INT8, tf2onnx + quant_pre_process + quantize_static, the same
   200 samples) alternately as whole processes (bench_convert.run_process: wall, CPU, peak RSS);
2. times the four files edgeact wrote (float and INT8, TFLite and ONNX) in one process, batch 1,
   `--threads` threads, interleaved: each round runs every model `--runs` times after a warm-up,
   so machine noise hits them alike; the figure is the median of the round means;
3. prints where the INT8 model leaves the fast path, from the coverage edgeact's reports use
   (XNNPACK partitions and the ops left on the reference kernels; ONNX nodes left in float).

The header names the CPU and its 8-bit dot-product features: INT8's speed-up over float is
bounded by them (2.5-4x with VNNI or SDOT, about 1.3-1.8x without). Untrained networks fail
edgeact's accuracy checks (exit 1); the files are written all the same, and speed is what this
measures. It needs `pip install -e ".[bench]"` (scikit-image).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convert import ROOT, commands, run_process  # noqa: E402  (sibling scripts, not a package)
from bench_mobilenetv3 import timed_mean  # noqa: E402

FAMILIES = ("MobileNet", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "ResNet50", "EfficientNetB0",
            "DenseNet121", "NASNetMobile", "ConvNeXtTiny")
DOT_FEATURES = ("avx512_vnni", "avx_vnni", "avx512bw", "avx2", "asimddp", "i8mm")


def cpu_header() -> str:
    """The CPU's name, its 8-bit dot-product features, cores and the runtimes' versions."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags.update(value.split())
    except OSError:
        pass
    import onnxruntime
    from ai_edge_litert import __version__ as litert

    found = [f for f in DOT_FEATURES if f in flags] or ["none of " + ", ".join(DOT_FEATURES)]
    cores = len(os.sched_getaffinity(0))
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {name}, {cores} cores, "
            f"features: {' '.join(found)}; LiteRT {litert}, ONNX Runtime {onnxruntime.__version__}")


def convert_times(family: str, workdir: Path, rounds: int) -> dict:
    subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "bench_convert.py"), "prepare", family,
                    str(workdir)], check=True, cwd=workdir, env={**os.environ, "PYTHONPATH": str(ROOT)})
    model_path, calib_path = workdir / f"{family}.keras", workdir / f"{family}_calib.npy"
    out = workdir / family
    edgeact, plain = commands(model_path, calib_path, ("tflite", "onnx"), out)
    a, b = [], []
    for _ in range(rounds):
        a.append(run_process(edgeact, workdir / "edgeact.log"))
        b.append(run_process(plain, workdir / "plain.log"))
    ratios = [x[0] / y[0] for x, y in zip(a, b) if y[2] == 0]
    return {"edgeact_s": statistics.median(x[0] for x in a), "plain_s": statistics.median(x[0] for x in b),
            "ratio": statistics.median(ratios) if ratios else None, "plain_exit": max(y[2] for y in b),
            "edgeact_exit": max(x[2] for x in a), "out": out / "edgeact"}


def speeds(folder: Path, family: str, args) -> dict:
    """Median of round means (ms) of the four written files, timed interleaved in this process."""
    from edgeact.runtime import open_runner

    paths = {(fmt, kind): folder / f"{family}_{kind}.{fmt}" for fmt in ("tflite", "onnx") for kind in ("fp32", "int8")}
    runners = {key: open_runner(path, threads=args.threads) for key, path in paths.items() if path.exists()}
    shape = runners[("tflite", "fp32")].inputs[0].shape[1:]
    sample = np.random.default_rng(0).uniform(-1, 1, (1, *shape)).astype(np.float32)
    prepared = {key: runner.prepare(sample) for key, runner in runners.items()}
    means: dict = {key: [] for key in runners}
    for _ in range(args.rounds):
        for key, runner in runners.items():
            means[key].append(timed_mean(runner, prepared[key], args.runs, args.warmup))
    return {key: float(np.median(v)) for key, v in means.items()}


def where(folder: Path, family: str, fmt: str, threads: int) -> str:
    from edgeact.fastpath.coverage import model_coverage

    path = folder / f"{family}_int8.{fmt}"
    if not path.exists():
        return "not written"
    coverage = model_coverage(path, threads=threads)
    left = ", ".join(f"{op} x{n}" for op, n in sorted(coverage.left_counts().items(), key=lambda kv: -kv[1])[:3])
    head = (f"{coverage.partitions} partitions" if fmt == "tflite"
            else f"{coverage.fast_ops}/{coverage.total_ops} integer")
    return f"{head}; left: {left}" if left else head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(FAMILIES))
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (interleaved)")
    parser.add_argument("--runs", type=int, default=30, help="invocations per model per round")
    parser.add_argument("--warmup", type=int, default=10,
                        help="invocations before each timed run (XNNPACK packs weights on the first)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--convert-rounds", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgeact-bench-families"))
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(cpu_header(), flush=True)
    print(f"threads {args.threads}, {args.rounds} rounds x {args.runs} runs, convert rounds {args.convert_rounds}")
    rows, results = [], {}
    for family in args.models.split(","):
        timing = convert_times(family, workdir, args.convert_rounds)
        ms = speeds(timing["out"], family, args)
        found = {"convert": {k: v for k, v in timing.items() if k != "out"},
                 "ms": {f"{fmt}_{kind}": v for (fmt, kind), v in ms.items()}}
        cells = []
        for fmt in ("tflite", "onnx"):
            fp32, int8 = ms.get((fmt, "fp32")), ms.get((fmt, "int8"))
            cells.append(f"{fp32:.2f} / {int8:.2f} = **{fp32 / int8:.2f}x**" if fp32 and int8 else "-")
            found[f"{fmt}_where"] = where(timing["out"], family, fmt, args.threads)
        ratio = f"{timing['ratio']:.2f}x" if timing["ratio"] else f"- (plain exit {timing['plain_exit']})"
        rows.append(f"| {family} | {cells[0]} | {cells[1]} | {timing['edgeact_s']:.1f} / {timing['plain_s']:.1f} "
                    f"= {ratio} | {found['tflite_where']} | {found['onnx_where']} |")
        results[family] = found
        print(rows[-1], flush=True)
    print("\n| family | TFLite ms float / INT8 | ONNX ms float / INT8 | convert s edgeact / plain (both formats) "
          "| TFLite INT8 off XNNPACK | ONNX INT8 |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
