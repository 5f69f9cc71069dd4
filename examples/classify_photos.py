"""Classify a folder of photos (or a video file's frames) with edgeact's frame API, and say how fast.

    python examples/classify_photos.py out/model_int8.tflite photos/ [--top-k 3] [--threads 2]
    python examples/classify_photos.py out/model_int8.tflite clip.mp4      # needs OpenCV

Photos of any size, colour or gray, go in as they are: `edgeact.load` reads from the model
how to resize, preprocess and quantize them, and which label belongs to which score.
Frames per second count the whole per-frame path (resize, preprocess, invoke, top-k),
not the decoding of the files. Needs numpy, a TFLite runtime and Pillow (or OpenCV).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import edgeact

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def photos(folder: Path):
    """(name, uint8 RGB or gray frame) for each photo in the folder, sorted by name."""
    from PIL import Image

    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES):
        image = Image.open(path)
        image = image.convert("L" if image.mode in ("L", "I;16", "1") else "RGB")
        yield path.name, np.asarray(image)


def video_frames(path: Path):
    """(frame number, RGB frame) of a video file, through OpenCV."""
    try:
        import cv2
    except ImportError:
        sys.exit(f"reading {path} needs OpenCV; pip install opencv-python-headless, or give a folder of photos")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        sys.exit(f"OpenCV cannot open {path}; give a video file it can decode or a folder of photos")
    number = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        yield f"frame {number}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        number += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a .tflite written by edgeact convert")
    parser.add_argument("source", type=Path, help="a folder of photos, or a video file")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    try:
        model = edgeact.load(args.model, threads=args.threads)
    except edgeact.EdgeactError as exc:
        sys.exit(f"error: {exc}")
    if not args.source.exists():
        sys.exit(f"error: {args.source} does not exist; give a folder of photos or a video file")
    frames = photos(args.source) if args.source.is_dir() else video_frames(args.source)
    busy, count = 0.0, 0
    for name, frame in frames:
        start = time.perf_counter()
        top = model.classify(frame, top_k=args.top_k)
        busy += time.perf_counter() - start
        count += 1
        shape = "x".join(str(d) for d in frame.shape)
        print(f"{name:28} {shape:>12}  " + "  ".join(f"{c.label} {c.score:.3f}" for c in top))
    if not count:
        sys.exit(f"error: no photos or frames found in {args.source}")
    print(f"{count} frames in {busy:.3f} s of classify: {count / busy:.1f} frames/s "
          f"({1000 * busy / count:.2f} ms per frame, {model.input.dtype} input {model.width}x{model.height})")


if __name__ == "__main__":
    main()
