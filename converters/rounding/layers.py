"""Adaptive rounding and bias correction of a folded Keras model: the candidates both exporters judge.

    result = round_weights(keras_model, calibration, levels=(127, 64), mode=Int8Steps.AUTO)
    result.candidates(127)   # {"rounding": [KernelChange...], "rounding + bias correction": [...]}
    result.judge             # the samples each exporter runs its candidate INT8 models on

For each kernel of a Conv2D, Conv1D, DepthwiseConv2D, SeparableConv2D (both) and Dense layer used
once (groups 1, depth multiplier 1, channels last), its inputs in the float model are read on
the first half of the calibration samples (at most MAX_CALIBRATION; patch rows of the
im2col matrix, a seeded sample of positions, bounded per batch), its integers are chosen by
`converters.rounding.adaround`, and the mean error they leave is computed as a bias shift.

What is kept is judged on the calibration samples after those (at most MAX_JUDGE), which
neither step saw, and which are not the held-out samples convert verifies on:

1. here, per kernel (`auto`): the chosen integers only where that layer's output error on the
   judge samples is lower than round-to-nearest's;
2. in each exporter, for the model: the INT8 file of each candidate, and the one without, run on
   the judge samples with the format's own kernels (`converters.rounding.judge`). Two cheaper
   judges were tried and misled. Bias correction of each layer's own mean error lowered every
   layer's error on MNIST's CNN and lowered the model's SQNR (47.8 against 49.4 dB with rounding
   alone, weights simulated in Keras): errors that cancelled through the layers stopped
   cancelling. A Keras simulation that also rounded every convolution's input on its INT8 grid
   matched the real TFLite model without a step (40.8 dB both) but promised +2 to +4 dB for the
   steps where the real model lost 0.2-0.7 dB (its rounding noise is not the runtime's).

The rounding fits the float model's inputs, not the INT8 model's: an objective that also
compensated each input's own rounding error (AdaRound's variant on quantized inputs) fitted
that error as Keras computes it, which is not what the runtime's upstream rounding leaves, and
lost on real files. `all` offers the last candidate only, unjudged; `none` offers nothing.
Skipped, and said so: layers used more than once, grouped or channels-first convolutions,
depth multipliers above 1, and kernels with more than MAX_ROWS_IN inputs per output (the
statistics grow as K^2 per row: 3x3x512 and wider).
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeact.config import Int8Steps
from edgeact.data.samples import Samples

from .adaround import MomentSum, adaround, bias_shift, corrected_error, nearest, output_error, snapped

BATCH = 16
ROWS_PER_BATCH = 2048       # patch rows a batch adds to a layer's statistics, at most
ROWS_PER_INPUT = 32         # ... and at least this many per kernel input (row of H), whichever is fewer
MAX_CALIBRATION = 128       # samples the statistics are read on (the rest add little to H)
ROUNDING, BIAS = "rounding", "rounding + bias correction"
MAX_JUDGE = 256            # later calibration samples the steps are judged on (the fit never sees them)
MIN_JUDGE = 8              # fewer: `auto` cannot judge, keeps nothing
MAX_ROWS_IN = 2304          # K = kh * kw * Cin above this: skipped (the statistics grow as K^2)
_TARGETS = {"Conv2D", "Conv1D", "DepthwiseConv2D", "Dense", "SeparableConv2D"}


@dataclass
class LayerRounding:
    """One kernel at the first grid: what the search flipped, and its output error on the judge samples."""

    layer: str
    weights: int
    flipped: int          # integers that differ from round-to-nearest
    error_ratio: float    # judge samples' output error: chosen integers / round-to-nearest (below 1 helps)
    rounding_kept: bool   # in the candidates (auto: only where error_ratio < 1)
    bias_ratio: float     # judge samples' output error with / without the bias shift

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class KernelChange:
    """One layer's kernel and bias in Keras layout, before and after (bias None when unchanged)."""

    layer: str
    kernel: np.ndarray
    new_kernel: np.ndarray
    bias: np.ndarray | None = None
    new_bias: np.ndarray | None = None
    weight: str = "kernel"  # or a SeparableConv2D's depthwise_kernel / pointwise_kernel
    integers: np.ndarray | None = None  # (K, C) the integers new_kernel rounds to, at the change's grid


@dataclass
class RoundingResult:
    mode: str
    layers: list[LayerRounding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # layer -> why
    notes: list[str] = field(default_factory=list)
    calibration_samples: int = 0
    judge: Samples | None = None  # the calibration samples the fit never saw: the steps are judged on them
    judge_outputs: list[np.ndarray] = field(default_factory=list, repr=False)  # the float model's, in its output order
    _candidates: dict[int, dict[str, list[KernelChange]]] = field(default_factory=dict, repr=False)

    def candidates(self, levels: int) -> dict[str, list[KernelChange]]:
        """Step name -> the kernels and biases it changes at this grid (`all` mode: only the last)."""
        found = self._candidates.get(levels, {})
        return {BIAS: found[BIAS]} if self.mode == Int8Steps.ALL.value and BIAS in found else dict(found)

    def changes(self, levels: int) -> list[KernelChange]:
        """The changes of the last (fullest) candidate at this grid."""
        found = self.candidates(levels)
        return found[BIAS] if BIAS in found else found.get(ROUNDING, [])

    def to_dict(self) -> dict:
        return {"mode": self.mode, "calibration_samples": self.calibration_samples,
                "judge_samples": 0 if self.judge is None else len(self.judge),
                "candidates": {str(k): {name: len(c) for name, c in v.items()} for k, v in self._candidates.items()},
                "layers_tried": len(self.layers),
                "layers": [r.to_dict() for r in self.layers], "skipped": dict(self.skipped),
                "notes": list(self.notes)}


@dataclass
class _Target:
    """One kernel of a layer: `kernel` (Conv2D, Conv1D, Dense, DepthwiseConv2D), or a SeparableConv2D's
    `depthwise_kernel` (its input's patches) or `pointwise_kernel` (the depthwise output, per position)."""

    layer: object
    weight: str = "kernel"

    @property
    def name(self) -> str:
        return self.layer.name if self.weight == "kernel" else f"{self.layer.name}/{self.weight}"

    @property
    def variable(self):
        return getattr(self.layer, self.weight)

    @property
    def depthwise(self) -> bool:
        return self.weight == "depthwise_kernel" or type(self.layer).__name__ == "DepthwiseConv2D"

    def matrix(self) -> np.ndarray:
        """The kernel as (K, C): rows the inputs one output reads, columns the output channels."""
        kernel = self.variable.numpy()
        return kernel.reshape(-1, kernel.shape[2]) if self.depthwise else kernel.reshape(-1, kernel.shape[-1])

    @property
    def inputs(self) -> int:
        """K: the length of one patch row (per channel for depthwise), the side of H."""
        shape = self.variable.shape
        return int(np.prod(shape[:-2])) if self.depthwise else int(np.prod(shape[:-1]))

    def bias(self) -> np.ndarray | None:
        if self.weight == "depthwise_kernel" or not getattr(self.layer, "use_bias", False) or self.layer.bias is None:
            return None
        return self.layer.bias.numpy()

    def rows(self, x: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        if self.weight == "pointwise_kernel":
            import keras

            layer = self.layer
            x = keras.ops.convert_to_numpy(keras.ops.depthwise_conv(
                x, layer.depthwise_kernel, strides=layer.strides, padding=layer.padding,
                dilation_rate=layer.dilation_rate)).astype(np.float32)
            return _sample(x.reshape(-1, x.shape[-1]), count, rng)
        return patch_rows(self.layer, x, count, rng, self.depthwise)


def _sample(flat: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return flat[np.sort(rng.choice(len(flat), size=min(count, len(flat)), replace=False))]


def _why_not(layer) -> str | None:
    kind = type(layer).__name__
    if len(getattr(layer, "_inbound_nodes", [])) != 1:
        return "used more than once"
    if kind != "Dense" and getattr(layer, "data_format", "channels_last") != "channels_last":
        return "channels first"
    if getattr(layer, "groups", 1) != 1:
        return "a grouped convolution"
    if kind in ("DepthwiseConv2D", "SeparableConv2D") and layer.depth_multiplier != 1:
        return "a depth multiplier above 1"
    k = max(_Target(layer, w).matrix().shape[0] for w in _weights(layer))
    if k > MAX_ROWS_IN:
        return f"{k} inputs per output (above {MAX_ROWS_IN}: its statistics would cost {k}^2 per row)"
    return None


def _weights(layer) -> tuple[str, ...]:
    return ("depthwise_kernel", "pointwise_kernel") if type(layer).__name__ == "SeparableConv2D" else ("kernel",)


def _targets(model) -> tuple[list[_Target], dict[str, str]]:
    targets, skipped = [], {}
    for layer in model.layers:
        if type(layer).__name__ not in _TARGETS:
            continue
        why = _why_not(layer)
        if why:
            skipped[layer.name] = why
        else:
            targets += [_Target(layer, w) for w in _weights(layer)]
    return targets, skipped


def _positions(spatial, layer) -> tuple[list[int], list[tuple[int, int]]]:
    """Output sizes and (before, after) padding per spatial axis, as TF's convolution computes them."""
    sizes, pads = [], []
    for n, k, s, d in zip(spatial, layer.kernel_size, layer.strides, layer.dilation_rate):
        span = (k - 1) * d + 1
        if layer.padding == "valid":
            out, pad = (n - span) // s + 1, (0, 0)
        elif layer.padding == "causal":
            out, pad = (n - 1) // s + 1, (span - 1, 0)
        else:
            out = -(-n // s)
            total = max((out - 1) * s + span - n, 0)
            pad = (total // 2, total - total // 2)
        sizes.append(out)
        pads.append(pad)
    return sizes, pads


def patch_rows(layer, x: np.ndarray, rows: int, rng: np.random.Generator, depthwise: bool = False) -> np.ndarray:
    """Up to `rows` rows of the layer's im2col matrix on input batch x: (R, K), or (R, kk, C) depthwise.

    Rows are a seeded sample of output positions; a patch is ordered (kh, kw, Cin) like the kernel."""
    if type(layer).__name__ == "Dense":
        return _sample(x.reshape(-1, x.shape[-1]), rows, rng)
    sizes, pads = _positions(x.shape[1:-1], layer)
    spatial = x.shape[1:-1]
    total = x.shape[0] * int(np.prod(sizes))
    flat = np.sort(rng.choice(total, size=min(rows, total), replace=False))
    index = np.unravel_index(flat, (x.shape[0], *sizes))
    sample, outs = index[0], index[1:]
    taps = []
    for offset in itertools.product(*(range(k) for k in layer.kernel_size)):
        # where the tap reads, unpadded: a read in the zero padding is 0 (the whole map is never padded:
        # np.pad copied every input map to read a few rows of it, 2.7 of DenseNet121's 58 s)
        at = [o * s + i * d - p[0] for o, s, i, d, p in zip(outs, layer.strides, offset, layer.dilation_rate, pads)]
        inside = np.logical_and.reduce([(a >= 0) & (a < n) for a, n in zip(at, spatial)])
        tap = np.zeros((len(sample), x.shape[-1]), x.dtype)
        tap[inside] = x[(sample[inside], *(a[inside] for a in at))]
        taps.append(tap)  # (R, Cin)
    patches = np.stack(taps, axis=1)  # (R, kk, Cin)
    return patches if depthwise else patches.reshape(len(patches), -1)


def _inputs(model, samples: Samples):
    names = [str(t.name) for t in model.inputs]
    if len(names) == 1 and names[0] not in samples.arrays:
        return [samples.array()]
    return [samples.arrays[n] for n in names]


def _taps(model, targets: list, parts: list[Samples]):
    """Part after part, batch after batch: (part index, each target layer's float input, then the
    model's outputs), as numpy, from one compiled function (converters.keras.forward; eagerly,
    layer by layer, it took 11 of MobileNetV2's 37 s; traced once per part, 8 of DenseNet121's 58 s)."""
    import keras

    from converters.keras.forward import model_forward

    forward = model_forward(keras.Model(model.inputs, [t.layer.input for t in targets] + list(model.outputs)))
    for part, samples in enumerate(parts):
        for batch in samples.batches(BATCH):
            found = forward(*[np.ascontiguousarray(a, np.float32) for a in _inputs(model, batch)])
            yield part, [np.asarray(x, np.float32) for x in found]


def _moments(model, targets: list, parts: list[Samples], seed: int) -> tuple[list[list], list]:
    """Each target's input moments in the float model on each part of the samples (part i's rows
    drawn with seed + i), and the model's outputs on the last part (the judge's reference, from
    the same pass).

    A batch adds ROWS_PER_INPUT rows per kernel input (at most ROWS_PER_BATCH): a depthwise
    channel's 3x3 H needs far fewer rows than a 960-input pointwise kernel's, and its products
    cost a small matrix product per channel."""
    sums = [[MomentSum() for _ in targets] for _ in parts]
    counts = [min(ROWS_PER_BATCH, ROWS_PER_INPUT * t.inputs) for t in targets]
    rngs = [np.random.default_rng(seed + i) for i in range(len(parts))]
    last = []
    for part, found in _taps(model, targets, parts):
        for target, x, total, count in zip(targets, found, sums[part], counts):
            total.add(target.rows(x, count, rngs[part]))
        if part == len(parts) - 1:
            last.append(found[len(targets):])
    return [[s.moments() for s in part] for part in sums], [np.concatenate(p) for p in zip(*last)]


def _split(calibration: Samples, mode: Int8Steps) -> tuple[Samples, Samples]:
    """(fit, judge): the samples the integers are chosen on, and later ones neither step sees."""
    n = len(calibration)
    if mode is not Int8Steps.AUTO:
        return calibration.head(MAX_CALIBRATION), calibration.head(0)
    fit = min(MAX_CALIBRATION, max(1, n // 2))
    return calibration.head(fit), calibration.take(slice(fit, fit + MAX_JUDGE))


def round_weights(model, calibration: Samples, levels=(127,), mode: Int8Steps = Int8Steps.AUTO,
                  seed: int = 0) -> RoundingResult:
    """Each target kernel's integers and bias shift at every grid in `levels`: the candidates
    (`RoundingResult.candidates`) the exporters judge on `RoundingResult.judge` (module docstring)."""
    mode = Int8Steps(mode)
    result = RoundingResult(mode.value)
    if mode is Int8Steps.NONE:
        return result
    targets, result.skipped = _targets(model)
    if not targets:
        result.notes.append("no convolution or dense layer to round")
        return result
    fit, judge = _split(calibration, mode)
    result.calibration_samples, result.judge = len(fit), judge
    judged = mode is Int8Steps.AUTO
    if judged and len(judge) < MIN_JUDGE:
        result.notes.append(f"{len(calibration)} calibration samples leave {len(judge)} to judge the weight steps "
                            f"on (at least {MIN_JUDGE}): none kept; give more calibration samples, or "
                            "--int8-steps all")
        return result
    if judged:
        (fitted, held), result.judge_outputs = _moments(model, targets, [fit, judge], seed)
    else:
        (fitted,), _ = _moments(model, targets, [fit], seed)
        held = fitted
    for level in dict.fromkeys(levels):
        rounded, corrected = [], []
        for target, moments, check in zip(targets, fitted, held):
            row, change, shifted = _round_layer(target, moments, check, level, judged)
            if level == levels[0]:
                result.layers.append(row)
            if change is not None:
                rounded.append(change)
            if shifted is not None:
                corrected.append(shifted)
        found = {ROUNDING: rounded, BIAS: corrected}
        result._candidates[level] = {name: changes for name, changes in found.items() if changes}
    return result


def _round_layer(target: _Target, moments, check, level: int, judged: bool):
    """The kernel's row, its change with the chosen integers (None: none kept), and with its bias shift too."""
    kernel, bias, original = target.matrix(), target.bias(), target.variable.numpy()
    rtn = nearest(kernel, level)
    chosen = adaround(kernel, moments, level)
    before, after = output_error(kernel, rtn, level, check), output_error(kernel, chosen, level, check)
    keep = after < before or not judged
    q, current = (chosen, after) if keep else (rtn, before)
    row = LayerRounding(target.name, int(kernel.size), int(np.count_nonzero(chosen != rtn)),
                        after / before if before > 0 else 1.0, keep, 1.0)
    new_kernel = snapped(kernel, q, level).reshape(original.shape) if keep else original
    change = KernelChange(target.layer.name, original, new_kernel, weight=target.weight, integers=q) if keep else None
    shifted = change
    if bias is not None:
        shift = bias_shift(kernel, q, level, moments)
        row.bias_ratio = corrected_error(kernel, q, level, check, shift) / current if current > 0 else 1.0
        shifted = KernelChange(target.layer.name, original, new_kernel, bias, (bias - shift).astype(np.float32),
                               weight=target.weight, integers=q)
    return row, change, shifted


__all__ = ["BIAS", "ROUNDING", "Int8Steps", "KernelChange", "LayerRounding", "RoundingResult", "patch_rows",
           "round_weights"]
