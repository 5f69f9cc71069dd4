"""Where the per-layer step's time goes: each column of `converters.layer_error.measure` timed alone.

    python bench/bench_layer_error_cost.py MODEL.keras CALIB.npy OUT/ NAME [--samples 8] [--preprocess none]

OUT holds `NAME_fp32/int8.tflite` and `NAME_fp32/int8.onnx` from `edgeact convert ... --layer-error
never`. The Keras model is prepared as convert prepares it (calibration split, graph passes), then
the TFLite accumulated column, the ONNX accumulated column and the own column (both formats) are
timed on the first --samples calibration samples, as `layer_errors_for_job` runs them. Run it with
PYTHONPATH pointing at another checkout to time that code on the same files.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    from converters.keras.loader import load_model
    from converters.layer_error import measure as le
    from converters.layer_error.keras import add_own_errors
    from converters.layer_error.onnx import onnx_layer_errors
    from converters.layer_error.tflite import tflite_layer_errors
    from converters.options import ConvertOptions
    from converters.pipeline import _prepare
    from edgeact.config import Format
    from edgeact.data.preprocess import make_preprocessing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("calibration")
    parser.add_argument("out", type=Path)
    parser.add_argument("name")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--preprocess", default="none")
    args = parser.parse_args()
    options = ConvertOptions(formats=(Format.TFLITE, Format.ONNX), preprocessing=make_preprocessing(args.preprocess),
                             progress=False)
    job = _prepare(load_model(args.model), args.name, args.out, args.calibration, options)
    samples = job.calibration.calibration.array()[:args.samples]
    names = [layer.name for layer in job.keras_model.layers]
    stem = args.out / args.name
    report = le.LayerErrorReport(samples=len(samples))
    start = time.perf_counter()
    rows, _ = tflite_layer_errors(f"{stem}_fp32.tflite", f"{stem}_int8.tflite", samples, names,
                                  le._output_layer(job.keras_model))
    print(f"tflite accumulated: {time.perf_counter() - start:.1f} s, {len(rows)} rows", flush=True)
    report.layers += rows
    start = time.perf_counter()
    rows, _ = onnx_layer_errors(f"{stem}_fp32.onnx", f"{stem}_int8.onnx", samples, names)
    print(f"onnx accumulated: {time.perf_counter() - start:.1f} s, {len(rows)} rows", flush=True)
    report.layers += rows
    start = time.perf_counter()
    add_own_errors(report, job.keras_model, samples)
    print(f"own (both formats): {time.perf_counter() - start:.1f} s, "
          f"{sum(r.own_sqnr_db is not None for r in report.layers)} rows", flush=True)


if __name__ == "__main__":
    main()
