"""Where INT8 loses accuracy: per-layer error of the INT8 TFLite and INT8 ONNX models.

    report = layer_errors(samples, tflite=("m_fp32.tflite", "m_int8.tflite"),
                          onnx=("m_fp32.onnx", "m_int8.onnx"), keras_model=folded)
    report.worst(10)

For every quantized tensor (the output of each INT8 TFLite op, each QDQ-quantized ONNX
activation), matched by name to the same tensor of the float model of the same format:

- `sqnr_db`: the whole model in INT8 against the whole model in float: the error as it has
  accumulated up to this layer (LiteRT with `experimental_preserve_all_tensors`, ONNX
  Runtime with every intermediate tensor made a graph output, as its `qdq_loss_debug` does);
- `own_sqnr_db`: only this layer quantized: the Keras layer fed the float model's input,
  rounded to the input's INT8 grid, run with its weights rounded as the converter does
  (int8, symmetric, per output channel; the integers and bias of the weight step the format
  kept, where it kept one), and its output rounded to this tensor's grid
  (`converters.layer_error.keras`); None without the Keras model;
- `rounding_sqnr_db`: the float activation rounded and clipped to this tensor's grid, no
  weight error and no upstream error: the floor any INT8 model of this range reaches;
- the grid (scale, zero point, representable range), the float range seen, and the
  fraction of float activations outside the representable range (clipped).

SQNR is 10*log10(sum signal^2 / sum noise^2) over all samples, capped at +-SQNR_CAP_DB so
that it stays a finite JSON number: a tensor computed exactly reads +100 dB, a tensor whose
float value is all zero but whose INT8 value is not reads -100 dB.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgeact.report.layer_errors import COLUMNS, LayerError, LayerErrorReport

SQNR_CAP_DB = 100.0
DEFAULT_SAMPLES = 32  # `edgeact layers`: accumulated error settles within a few dozen samples
# Every convert report: on MobileNetV2, disjoint sets of 8 photo crops rank the layers as all 64
# do (accumulated: Spearman >= 0.999, 4 of the 5 worst the same; own: >= 0.96) and land a median
# 0.5 dB from them (bench/bench_layer_error_samples.py, README), at a quarter of the cost of 32.
REPORT_SAMPLES = 8


def sqnr_db(signal_energy: float, noise_energy: float) -> float:
    """10*log10(signal/noise), capped to +-SQNR_CAP_DB (exact -> +cap, noise on silence -> -cap)."""
    if noise_energy <= signal_energy * 10 ** (-SQNR_CAP_DB / 10):
        return SQNR_CAP_DB  # also 0/0: nothing to lose, nothing lost
    if signal_energy <= noise_energy * 10 ** (-SQNR_CAP_DB / 10):
        return -SQNR_CAP_DB
    return float(10 * math.log10(signal_energy / noise_energy))


class ErrorAccumulator:
    """Streams (float, approximation) pairs of one tensor over samples: energies, range, clipping.

    In float32, in place, with float32 dot products: the arithmetic of the runtimes themselves,
    and on MobileNetV2 (7 million activations per sample) 7-10 times faster than float64
    copies, which made this the largest cost of the per-layer step. A float32 dot product of a
    million terms is within 1e-5 of the float64 one, 1e-4 dB of SQNR; energies are summed
    over samples in Python floats.
    """

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0
        self.rounding_noise = 0.0
        self.clipped = 0
        self.count = 0
        self.low = math.inf
        self.high = -math.inf

    def add(self, reference: np.ndarray, approximation: np.ndarray, grid: "QuantGrid | None" = None) -> None:
        """One sample (or a batch) of the tensor: the float value and what the INT8 model made of it."""
        reference = np.ascontiguousarray(reference, np.float32).reshape(-1)
        if not reference.size:
            return
        work = np.subtract(reference, np.asarray(approximation, np.float32).reshape(-1))
        self.signal += _energy(reference)
        self.noise += _energy(work)
        self.count += reference.size
        low, high = float(reference.min()), float(reference.max())
        self.low, self.high = min(self.low, low), max(self.high, high)
        if grid is None:
            return
        # The float value rounded to the grid, minus itself: clip(rint(x/s) + z, qmin, qmax) - z
        # is clip(rint(x/s), qmin - z, qmax - z) for an integer zero point.
        np.divide(reference, np.float32(grid.scale), out=work)
        np.rint(work, out=work)
        np.clip(work, grid.qmin - grid.zero_point, grid.qmax - grid.zero_point, out=work)
        np.multiply(work, np.float32(grid.scale), out=work)
        np.subtract(work, reference, out=work)
        self.rounding_noise += _energy(work)
        # Beyond half a step past either end: saturated, not merely rounded to the end point.
        margin = grid.scale / 2
        below, above = grid.low - margin, grid.high + margin
        if low < below or high > above:  # most tensors clip nothing: no need to count
            self.clipped += int(np.count_nonzero(reference < below)) + int(np.count_nonzero(reference > above))


def _energy(x: np.ndarray) -> float:
    """sum(x**2) of a float32 vector, as a Python float."""
    return float(np.dot(x, x))


def dequantize(q: np.ndarray, grid: "QuantGrid") -> np.ndarray:
    """Integer tensor -> float32 values on its grid."""
    out = np.asarray(q, np.float32) - np.float32(grid.zero_point)
    out *= np.float32(grid.scale)
    return out


@dataclass(frozen=True)
class QuantGrid:
    """An affine INT8/UINT8 grid: real = scale * (q - zero_point), q in [qmin, qmax]."""

    scale: float
    zero_point: int
    qmin: int = -128
    qmax: int = 127

    @property
    def low(self) -> float:
        return self.scale * (self.qmin - self.zero_point)

    @property
    def high(self) -> float:
        return self.scale * (self.qmax - self.zero_point)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        q = np.round(np.asarray(x, np.float64) / self.scale) + self.zero_point
        return np.clip(q, self.qmin, self.qmax)

    def fake_quantize(self, x: np.ndarray) -> np.ndarray:
        return (self.quantize(x) - self.zero_point) * self.scale


def make_layer_error(fmt: str, depth: int, tensor: str, layer: str, op: str, acc: ErrorAccumulator,
                     grid: QuantGrid, own: float | None = None) -> LayerError:
    return LayerError(
        format=fmt, depth=depth, tensor=tensor, layer=layer, op=op,
        sqnr_db=round(sqnr_db(acc.signal, acc.noise), 3),
        own_sqnr_db=None if own is None else round(own, 3),
        rounding_sqnr_db=round(sqnr_db(acc.signal, acc.rounding_noise), 3),
        scale=float(grid.scale), zero_point=int(grid.zero_point),
        range_min=float(grid.low), range_max=float(grid.high),
        float_min=float(acc.low) if acc.count else 0.0, float_max=float(acc.high) if acc.count else 0.0,
        clipped_fraction=acc.clipped / acc.count if acc.count else 0.0,
    )


# TensorFlow names tensors by name scope, "<model>_1/<layer>_1/<op>", several joined by ";"
# when ops were fused; tf2onnx keeps those names. Keras 3 appends "_<n>" to each scope.
_SCOPE_SUFFIX = re.compile(r"_\d+$")


def keras_layer_name(tensor_name: str, layer_names: Sequence[str] | None = None) -> str:
    """The Keras layer a converted tensor comes from, '' when none can be told.

    With the model's layer names: the first scope (over every ';'-joined name) that is a
    layer name plus Keras' '_<n>' suffix, or a layer name. Without: the second scope of the
    first name, its suffix removed.
    """
    parts = [name.split("/") for name in tensor_name.split(";")]
    if layer_names:
        known = set(layer_names)
        for scopes in parts:
            for scope in scopes[1:-1] or scopes:
                # Keras 3 scopes layer "conv2d" as "conv2d_1" and "conv2d_1" as "conv2d_1_1":
                # the name without one suffix first.
                stripped = _SCOPE_SUFFIX.sub("", scope)
                if stripped in known:
                    return stripped
                if scope in known:
                    return scope
        return ""
    first = parts[0]
    return _SCOPE_SUFFIX.sub("", first[1]) if len(first) >= 3 else ""


def layer_errors(samples: np.ndarray, tflite: tuple[str | Path | bytes, str | Path | bytes] | None = None,
                 onnx: tuple[str | Path, str | Path] | None = None, keras_model=None,
                 max_samples: int = DEFAULT_SAMPLES, tflite_twins: dict[str, float] | None = None,
                 weight_changes: dict[str, list] | None = None) -> LayerErrorReport:
    """Per-layer error of the INT8 models against their float twins, on NHWC float `samples`.

    Args:
        samples: model inputs (N, H, W, C), float32, as the Keras model takes them; for an
            NCHW ONNX model they are transposed here.
        tflite: (float .tflite, INT8 .tflite), as paths or bytes.
        onnx: (float .onnx, INT8 QDQ .onnx) paths.
        keras_model: the (folded) Keras model both were converted from: names the layers and
            gives the own-error column; None leaves `own_sqnr_db` empty.
        max_samples: at most this many samples are run (each is one full run of each model).
        weight_changes: format -> the KernelChanges of the weight step its INT8 file holds
            (converters.rounding): the own-error column then rounds those layers as the file does.
        tflite_twins: layers the INT8-only passes rewrote, with the factor between the INT8 and the
            float outputs (ConvertJob.int8_rewrites); their rows pair the two spellings.
    Raises:
        InputError when the models do not fit each other or the samples.
    """
    from edgeact.errors import InputError

    samples = np.asarray(samples, np.float32)
    if samples.ndim < 2 or len(samples) == 0:
        raise InputError("per-layer error needs at least one sample; give --data with images or arrays")
    samples = samples[:max_samples]
    if tflite is None and onnx is None:
        raise InputError("per-layer error needs a TFLite or an ONNX model pair")
    layer_names = [layer.name for layer in keras_model.layers] if keras_model is not None else None
    report = LayerErrorReport(samples=len(samples),
                              columns=[c for c in COLUMNS if c != "own_sqnr_db" or keras_model is not None])
    if tflite is not None:
        from .tflite import tflite_layer_errors

        rows, unmatched = tflite_layer_errors(tflite[0], tflite[1], samples, layer_names, _output_layer(keras_model),
                                              layer_twins=tflite_twins)
        report.layers += rows
        report.unmatched["tflite"] = unmatched
    if onnx is not None:
        from .onnx import onnx_layer_errors

        rows, unmatched = onnx_layer_errors(onnx[0], onnx[1], samples, layer_names)
        report.layers += rows
        report.unmatched["onnx"] = unmatched
    if keras_model is not None:
        from .keras import add_own_errors

        levels = {}
        if onnx is not None:
            from .onnx import weight_levels

            levels["onnx"] = weight_levels(onnx[1])
        add_own_errors(report, keras_model, samples, weight_levels=levels, weight_changes=weight_changes)
    return report


def layer_errors_for_job(job, tflite: tuple | None = None, onnx: tuple | None = None,
                         max_samples: int = REPORT_SAMPLES) -> LayerErrorReport:
    """The per-layer section of a convert report: on the job's calibration samples (the
    clipped fraction is that of the calibration activations), named after the folded model.

    For `converters.convert` after the exporters ran, with the staged (fp32, int8) paths:
        report["layer_errors"] = layer_errors_for_job(job, tflite=(fp32, int8), onnx=(...)).to_dict()
    """
    pairs = {fmt: pair for fmt, pair in (("tflite", tflite), ("onnx", onnx)) if pair is not None}
    # A format whose INT8 model is the cross-layer equalized one is measured against the equalized
    # float model (its float file there, ConvertJob.equalized_float; its Keras model for the own
    # column): between an equalized pair its tensors are per-channel rescaled copies of the float's.
    equalized = {fmt for fmt in pairs if (job.equalization_steps.get(fmt) or {}).get("kept", "none") != "none"
                 and fmt in job.equalized_float and job.equalized_keras_model is not None}
    changes = kept_weight_changes(job)
    samples = job.calibration.calibration.array()
    report = None
    for group, keras_model in ((set(pairs) - equalized, job.keras_model), (equalized, job.equalized_keras_model)):
        if not group:
            continue
        chosen = {fmt: (job.equalized_float[fmt], pairs[fmt][1]) if fmt in equalized else pairs[fmt] for fmt in group}
        found = layer_errors(samples, tflite=chosen.get("tflite"), onnx=chosen.get("onnx"), keras_model=keras_model,
                             max_samples=max_samples, tflite_twins=job.int8_rewrites or None,
                             weight_changes={fmt: c for fmt, c in changes.items() if fmt in group})
        if report is None:
            report = found
        else:
            report.layers += found.layers
            report.unmatched.update(found.unmatched)
    if report is None:
        raise ValueError("per-layer error needs a TFLite or an ONNX model pair")
    return report


def kept_weight_changes(job) -> dict[str, list]:
    """format -> the KernelChanges of the weight step its exporter kept (none: no entry)."""
    from edgeact.config import ONNX_WEIGHT_LEVELS

    rounding, found = job.weight_rounding, {}
    if rounding is None:
        return found
    for fmt, choice in job.weight_steps.items():
        kept = None if (choice or {}).get("superseded") else (choice or {}).get("kept")
        levels = 127 if fmt == "tflite" else ONNX_WEIGHT_LEVELS[job.options.onnx_weight_bits]
        changes = rounding.candidates(levels).get(kept) if kept and kept != "none" else None
        if changes:
            found[fmt] = changes
    return found


def _output_layer(keras_model) -> str:
    """The name of the layer that gives a single-output Keras model its output ('' otherwise)."""
    if keras_model is None or len(keras_model.outputs) != 1:
        return ""
    history = getattr(keras_model.outputs[0], "_keras_history", None)
    return history[0].name if history else ""


__all__ = ["REPORT_SAMPLES", "ErrorAccumulator", "QuantGrid", "dequantize", "keras_layer_name", "layer_errors",
           "layer_errors_for_job", "sqnr_db", "SQNR_CAP_DB"]
