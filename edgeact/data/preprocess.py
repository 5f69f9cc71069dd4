"""Preprocessing presets: how raw pixels (0..255) become the model's float input.

The preset used for calibration is stored in the model's report, so that `profile`
feeds the model exactly the way it was calibrated.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeact.errors import InputError


class Preset(str, enum.Enum):
    """Named preprocessing presets; `custom` means --mean/--std were given."""

    UNIT = "unit"
    MOBILENET = "mobilenet"
    CAFFE = "caffe"
    TORCH = "torch"
    NONE = "none"
    CUSTOM = "custom"


@dataclass(frozen=True)
class Preprocessing:
    """`y = (x * scale - mean) / std` per channel, after an optional RGB to BGR swap."""

    preset: str
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    bgr: bool = False
    description: str = field(default="", compare=False)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocess a batch or one image, channels last, as float32."""
        x = np.asarray(pixels, dtype=np.float32)
        channels = x.shape[-1]
        if self.bgr and channels == 3:
            x = x[..., ::-1]
        mean = self._per_channel(self.mean, channels, "mean")
        std = self._per_channel(self.std, channels, "std")
        if self.scale != 1.0:
            x = x * np.float32(self.scale)
        if np.any(mean != 0):
            x = x - mean
        if np.any(std != 1):
            x = x / std
        return np.ascontiguousarray(x, dtype=np.float32)

    def _per_channel(self, values: tuple[float, ...], channels: int, what: str) -> np.ndarray:
        if len(values) not in (1, channels):
            raise InputError(
                f"preprocessing '{self.preset}' has a {len(values)}-value {what} but the model "
                f"takes {channels} channel(s); give --mean/--std with 1 or {channels} values"
            )
        return np.asarray(values, dtype=np.float32)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(
            preset=data["preset"],
            scale=float(data.get("scale", 1.0)),
            mean=tuple(data.get("mean", (0.0,))),
            std=tuple(data.get("std", (1.0,))),
            bgr=bool(data.get("bgr", False)),
            description=data.get("description", ""),
        )


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

PRESETS: dict[Preset, Preprocessing] = {
    Preset.UNIT: Preprocessing("unit", scale=1 / 255, description="x / 255, in [0, 1]"),
    Preset.MOBILENET: Preprocessing(
        "mobilenet", scale=1 / 127.5, mean=(1.0,), description="x / 127.5 - 1, in [-1, 1]"
    ),
    Preset.CAFFE: Preprocessing(
        "caffe", mean=(103.939, 116.779, 123.68), bgr=True,
        description="RGB to BGR, minus the ImageNet BGR mean, no scaling",
    ),
    Preset.TORCH: Preprocessing(
        "torch", scale=1 / 255, mean=_IMAGENET_MEAN, std=_IMAGENET_STD,
        description="x / 255, minus the ImageNet mean, over the ImageNet std",
    ),
    Preset.NONE: Preprocessing("none", description="fed as is"),
}


def make_preprocessing(
    preset: str | Preset = Preset.UNIT,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Preprocessing:
    """A preset by name, or a custom `(x - mean) / std` on 0..255 pixels when mean/std are given."""
    if mean or std:
        mean = tuple(mean or (0.0,))
        std = tuple(std or (1.0,))
        if any(s == 0 for s in std):
            raise InputError("--std must not contain 0; give the per-channel standard deviation")
        return Preprocessing(
            "custom", mean=mean, std=std, description=f"(x - {list(mean)}) / {list(std)}"
        )
    try:
        return PRESETS[Preset(preset)]
    except (ValueError, KeyError):
        names = ", ".join(p.value for p in PRESETS)
        raise InputError(f"unknown preprocessing preset '{preset}'; choose one of {names}") from None
