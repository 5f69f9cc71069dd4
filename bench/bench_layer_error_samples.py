"""How many samples does the per-layer error need? Disjoint subsets of n samples against all of them.

    python bench/bench_layer_error_samples.py OUT/m_int8.tflite OUT/m_int8.onnx --data CALIB \
        --keras m.keras [--total 64] [--sizes 4,8,16,32] [--preprocess none]

Reads `--total` samples as `edgeact layers` does, measures every column on all of them, then on
each disjoint subset of n samples (64/n subsets per n), and prints per format and per n, over
the subsets: the median and largest |SQNR difference| to the all-samples figure (accumulated,
own, rounding), the smallest Spearman rank correlation of the layers, and the smallest overlap
of the five worst layers. `convert` measures on `converters.layer_error.measure.REPORT_SAMPLES`.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 1 else 1.0


def compare(full, part, fmt: str, column: str) -> tuple[list[float], float, int]:
    """|differences| of one column, the rank correlation and the worst-5 overlap, over rows both have."""
    ref = {r.depth: getattr(r, column) for r in full.of_format(fmt)}
    got = {r.depth: getattr(r, column) for r in part.of_format(fmt)}
    keys = [k for k in ref if ref[k] is not None and got.get(k) is not None]
    diffs = [abs(got[k] - ref[k]) for k in keys]
    worst = lambda d: set(sorted(keys, key=d.get)[:5])  # noqa: E731
    return diffs, spearman([got[k] for k in keys], [ref[k] for k in keys]), len(worst(ref) & worst(got))


def main() -> None:
    from converters.keras.loader import load_model
    from converters.layer_error.files import LayerJob, _check_models, read_samples
    from converters.layer_error.measure import layer_errors
    from edgeact.data.preprocess import make_preprocessing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--keras", type=Path, required=True)
    parser.add_argument("--total", type=int, default=64)
    parser.add_argument("--sizes", default="4,8,16,32")
    parser.add_argument("--preprocess", default=None, help="a preset; default: the convert report's")
    args = parser.parse_args()
    job = LayerJob(models=tuple(args.models), data=args.data, keras_model=args.keras, samples=args.total,
                   preprocessing=make_preprocessing(args.preprocess) if args.preprocess else None)
    pairs = _check_models(job)
    samples = read_samples(job, job.models[0])
    keras_model = load_model(args.keras).keras_model
    run = lambda x: layer_errors(x, tflite=pairs.get("tflite"), onnx=pairs.get("onnx"),  # noqa: E731
                                 keras_model=keras_model, max_samples=len(x))
    start = time.perf_counter()
    full = run(samples)
    print(f"all {len(samples)} samples: {time.perf_counter() - start:.1f} s", flush=True)
    print("| format | n | subsets | accumulated: median / max abs diff dB | Spearman min | worst-5 overlap min "
          "| own: median / max dB | Spearman min | worst-5 min | rounding: max dB |")
    print("| --- | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |")
    for n in (int(s) for s in args.sizes.split(",")):
        parts = [run(samples[i:i + n]) for i in range(0, len(samples) - n + 1, n)]
        for fmt in full.formats():
            acc = [compare(full, p, fmt, "sqnr_db") for p in parts]
            own = [compare(full, p, fmt, "own_sqnr_db") for p in parts]
            rnd = [compare(full, p, fmt, "rounding_sqnr_db") for p in parts]
            cell = lambda rows: (f"{statistics.median(d for r in rows for d in r[0]):.2f} / "  # noqa: E731
                                 f"{max(d for r in rows for d in r[0]):.2f}")
            print(f"| {fmt} | {n} | {len(parts)} | {cell(acc)} | {min(r[1] for r in acc):.3f} | "
                  f"{min(r[2] for r in acc)}/5 | {cell(own)} | {min(r[1] for r in own):.3f} | "
                  f"{min(r[2] for r in own)}/5 | {max(d for r in rnd for d in r[0]):.2f} |", flush=True)


if __name__ == "__main__":
    main()
