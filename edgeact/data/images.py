"""Decode image files into uint8 arrays the size and channel count of a model's input.

Pillow does the decoding (JPEG, PNG, BMP, ...). It is imported lazily, so devices that
are only sent preprocessed arrays do not need it.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeact.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _pillow():
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise InputError("reading image folders needs Pillow; pip install pillow (or edgeact[images])") from None
    return Image, UnidentifiedImageError


@dataclass
class DecodedImages:
    """Pixels (N, H, W, C) uint8, the files they came from, and files that were skipped and why."""

    pixels: np.ndarray
    files: list[Path]
    skipped: dict[str, int] = field(default_factory=dict)

    def skipped_text(self) -> str:
        return ", ".join(f"{n} {why}" for why, n in self.skipped.items()) or "none"


def list_files(folder: Path, recursive: bool = True) -> list[Path]:
    """All regular files below a folder, in a stable order; hidden files left out."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in Path(folder).glob(pattern)
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def decode_image(path: Path, height: int, width: int, channels: int) -> np.ndarray:
    """One file as (H, W, C) uint8, resized bilinearly; raises OSError/ValueError if not an image."""
    Image, _ = _pillow()
    with Image.open(path) as image:
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def decode_images(files: list[Path], height: int, width: int, channels: int,
                  limit: int | None = None, progress=None) -> DecodedImages:
    """Decode files in order until `limit` images are read; count the ones that are not images.

    Files without an image suffix are skipped as 'not an image' without opening them; files
    with one that Pillow cannot read are skipped as 'unreadable'.
    """
    _, unidentified = _pillow()
    skipped: dict[str, int] = {}
    candidates = []
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            candidates.append(path)
        else:
            skipped["not an image"] = skipped.get("not an image", 0) + 1
    images, used = [], []

    def decode(path):
        try:
            return decode_image(path, height, width, channels)
        except (OSError, ValueError, unidentified, SyntaxError):
            return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        # Decode in chunks so that `limit` stops the work early on a large folder.
        chunk = 256
        for start in range(0, len(candidates), chunk):
            batch = candidates[start:start + chunk]
            for path, array in zip(batch, pool.map(decode, batch)):
                if array is None:
                    skipped["unreadable"] = skipped.get("unreadable", 0) + 1
                    continue
                if limit is None or len(images) < limit:
                    images.append(array)
                    used.append(path)
                    if progress is not None:
                        progress.update(1)
            if limit is not None and len(images) >= limit:
                break
    pixels = np.stack(images) if images else np.zeros((0, height, width, channels), np.uint8)
    return DecodedImages(pixels, used, skipped)
