"""The frame API's cost over a bare `invoke()`, on MobileNetV2 224x224 INT8, resize timed apart.

    .venv/bin/python bench/bench_frame_api.py [--rounds 7] [--runs 30] [--threads 2] [--no-opencv]

Converts keras.applications.MobileNetV2(weights=None) twice with edgeact's own pipeline
(random calibration: fine for speed, meaningless for accuracy): an int8-IO model (the frame
API preprocesses and quantizes through its per-pixel table) and a `--io uint8` pixel-in model
(frames are copied in as they are). In interleaved rounds in one process it times, per call:

- bare:     `invoke()` alone, the input written once beforehand;
- classify: `model.classify(frame)` on a 224x224x3 uint8 frame (table lookup, invoke,
            dequantize, top-5, labels), no resize;
- resize:   the resize of a 640x480 camera frame to 224x224 (OpenCV if installed, else Pillow).

Overhead, two ways: the median ratio of classify to bare over calls alternated one by one
(on a shared machine this moves by several percent either way), and the work classify adds
timed alone (the same call with invoke() a no-op) over the median bare invoke.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def convert_models(folder: Path) -> dict[str, Path]:
    from converters import ConvertOptions, convert
    from converters.keras.loader import import_keras
    from edgeact.config import IOType
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.errors import VerificationError

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classes=1000)
    paths = {}
    for io in ("int8", "uint8"):
        options = ConvertOptions(io_type=IOType(io), preprocessing=make_preprocessing("mobilenet"),
                                 samples=16, holdout=8, labels=[f"class {i}" for i in range(1000)], name=f"mnv2_{io}")
        try:
            convert(model, "random", folder, options)
        except VerificationError:
            pass  # random weights and random calibration: the accuracy checks mean nothing here
        paths[io] = folder / f"mnv2_{io}_int8.tflite"
    return paths


def per_call_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    import edgeact
    from edgeact.frame_api import _resizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folder", type=Path, help="Keep the converted models here and reuse them on the next run.")
    parser.add_argument("--no-opencv", action="store_true",
                        help="Time the Pillow/numpy path as if OpenCV were missing.")
    args = parser.parse_args()
    if args.no_opencv:
        import sys

        sys.modules["cv2"] = None  # `import cv2` raises ImportError from here on
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    camera = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    resize = _resizer()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or Path(tmp)
        paths = {io: folder / f"mnv2_{io}_int8.tflite" for io in ("int8", "uint8")}
        if not all(p.exists() for p in paths.values()):
            paths = convert_models(folder)
        models = {io: edgeact.load(path, threads=args.threads) for io, path in paths.items()}
        times: dict[str, list[float]] = {}
        for model in models.values():  # warm-up, and the bare loop's input written once
            model.classify(frame)
        # Call by call, alternating, so that the machine's noise (other processes) hits both alike;
        # which of the two goes first swaps every time, so neither always finds the caches warm.
        for i in range(args.rounds * args.runs):
            for io, model in models.items():
                calls = [(f"{io} bare", model.runner.invoke), (f"{io} classify", lambda: model.classify(frame))]
                for name, fn in calls[::1 if i % 2 else -1]:
                    times.setdefault(name, []).append(per_call_ms(fn))
            times.setdefault("resize", []).append(per_call_ms(lambda: resize(camera, 224, 224)))
        # What classify adds, timed alone: the same call with invoke() made a no-op. Robust to a
        # busy machine, where the difference of two noisy ~2 ms medians is not.
        for io, model in models.items():
            invoke, model.runner.invoke = model.runner.invoke, lambda: None
            times[f"{io} added"] = [per_call_ms(lambda: model.classify(frame)) for _ in range(args.rounds * args.runs)]
            model.runner.invoke = invoke
    median = {k: float(np.median(v)) for k, v in times.items()}
    print(f"MobileNetV2 224x224 INT8, {args.threads} threads, median of {args.rounds * args.runs} alternated calls")
    for io in models:
        bare, full = median[f"{io} bare"], median[f"{io} classify"]
        added = median[f"{io} added"]
        ratios = np.array(times[f"{io} classify"]) / np.array(times[f"{io} bare"])
        print(f"  {io:5} input: bare invoke {bare:6.2f} ms   classify {full:6.2f} ms   "
              f"(median of per-pair ratios {100 * (np.median(ratios) - 1):+.1f}%)   "
              f"classify without invoke {1000 * added:6.1f} us = {100 * added / bare:.1f}% of invoke")
    print(f"  resize 640x480 -> 224x224 ({resize.library}): "
          f"{median['resize']:.2f} ms")


if __name__ == "__main__":
    main()
