"""What edgeact's calibration guard costs: the plain TFLite INT8 conversion against the guarded one.

    .venv/bin/python bench/bench_calibration_guard.py MODEL.keras CALIB.npy [--samples 100] [--rounds 2]

Both in one process, alternating (plain, guarded, plain, guarded, ...), the converter set up as
bench/bench_convert.py's plain script sets it up (full-integer INT8, int8 interface, the first
`--samples` rows of the .npy as the representative dataset). The guarded conversion is the same
converter inside `converters.tflite.ranges.convert_guarded`, which keeps every op output alive
during calibration so no in-place op overwrites an input's recorded range. bench_convert.py
writes the .keras and .npy it uses into its --workdir (e.g. /tmp/b8/VGG16.keras, VGG16_calib.npy).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("calibration", type=Path)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from converters.tflite.ranges import convert_guarded

    model = keras.models.load_model(args.model, compile=False)
    data = np.load(args.calibration)[:args.samples].astype(np.float32)

    def converter():
        c = tf.lite.TFLiteConverter.from_keras_model(model)
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([x[None]] for x in data)
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = c.inference_output_type = tf.int8
        return c

    times: dict[str, list[float]] = {"plain": [], "guarded": []}
    for _ in range(args.rounds):
        for label in times:
            started = time.perf_counter()
            if label == "plain":
                converter().convert()
            else:
                convert_guarded(converter(), args.model.stem)
            times[label].append(time.perf_counter() - started)
            print(f"{label}: {times[label][-1]:.1f} s", flush=True)
    plain, guarded = np.median(times["plain"]), np.median(times["guarded"])
    print(f"\n{args.model.name}, {len(data)} samples, {args.rounds} rounds, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: plain {plain:.1f} s, guarded {guarded:.1f} s "
          f"(median), guarded / plain {guarded / plain:.3f}")


if __name__ == "__main__":
    main()
