"""What the budget search measures: the metric per named output, how sure it is, and the INT8 share.

    scorer = Scorer.for_model(keras_model, budget, selection)     # float reference on the samples
    metric, per_output = scorer.score(outputs)                    # outputs: {output name: (N, ...)}
    sure = scorer.confidence(outputs)                             # interval, resolution, samples to certify

- **Per named output.** A top-1 budget (`--max-drop`, `--min-agreement`) holds on every class-score
  output (`--max-drop` reads the one label array, so it needs exactly one), `--min-sqnr` on every
  output; an attempt's metric is its worst output, and the row keeps each output's value.
- **Paired intervals** (`edgeact.stats`): the top-1 drop's exact McNemar interval, the agreement's
  Clopper-Pearson interval, the SQNR's paired bootstrap; with the smallest drop the samples can
  resolve, and how many samples at the same rates would certify the budget.
- **Holdout.** `split_holdout` keeps a seeded share of the evaluation samples aside: the search
  selects on the rest and the chosen model is judged on both.
- **INT8 share.** The multiply-accumulates of the Keras model's Conv/Dense/DepthwiseConv layers
  (`layer_macs`); a layer kept in float takes its MACs out of the integer share.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converters.options import Budget
from edgeact.data.samples import Samples
from edgeact.errors import InputError
from edgeact.stats import (
    agreement_interval,
    bootstrap_sqnr,
    paired_drop,
    samples_to_certify_agreement,
    samples_to_certify_drop,
    samples_to_certify_sqnr,
)

HOLDOUT_FRACTION = 0.3
MIN_HOLDOUT = 20  # fewer held-out samples than this: no holdout, and the report says so
MIN_INT8_SHARE = 0.5


def split_holdout(data: Samples, fraction: float = HOLDOUT_FRACTION, seed: int = 0) -> tuple[Samples, Samples | None]:
    """(selection samples, holdout samples), a seeded random split; no holdout when it would be too small."""
    n = len(data)
    count = int(round(n * fraction))
    if fraction <= 0 or count < MIN_HOLDOUT or n - count < MIN_HOLDOUT:
        return data, None
    order = np.random.default_rng(seed).permutation(n)
    return data.take(np.sort(order[count:])), data.take(np.sort(order[:count]))


def model_inputs(keras_model, data: Samples):
    """The samples as the Keras model takes them: one array, or a list in the model's input order."""
    names = [str(t.name) for t in keras_model.inputs]
    if len(names) == 1:
        return data.arrays.get(names[0], data.array() if len(data.arrays) == 1 else None)
    missing = [n for n in names if n not in data.arrays]
    if missing:
        raise InputError(f"the evaluation data has no input '{missing[0]}' (it has {', '.join(data.names)})")
    return [data.arrays[n] for n in names]


def keras_outputs(keras_model, data: Samples) -> dict[str, np.ndarray]:
    """The float model's outputs on the samples, by output name."""
    outputs = keras_model.predict(model_inputs(keras_model, data), verbose=0)
    if isinstance(outputs, dict):
        return {name: np.asarray(outputs[name], np.float64) for name in keras_model.output_names}
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {name: np.asarray(o, np.float64) for name, o in zip(keras_model.output_names, outputs)}


def judged_outputs(budget: Budget, shapes: dict[str, tuple], kinds: dict[str, object] | None = None) -> list[str]:
    """The outputs the budget holds on: class-score outputs for a top-1 budget, every output for SQNR."""
    if not budget.top1:
        return list(shapes)
    from edgeact.report.records import OutputKind

    kinds = kinds or {}
    names = [n for n, s in shapes.items() if len(s) == 1 and s[0] >= 2 and kinds.get(n) in (None,
                                                                                         OutputKind.CLASS_SCORES)]
    if not names:
        raise InputError(f"--{budget.option} compares top-1 classes, but no output is class scores "
                         f"({', '.join(shapes)}); use --min-sqnr, which works for any output")
    if budget.max_drop is not None and len(names) > 1:
        raise InputError(f"--max-drop reads one label per sample, but {len(names)} outputs are class scores "
                         f"({', '.join(names)}); use --min-agreement or --min-sqnr, which hold on each output")
    return names


@dataclass
class Scorer:
    """The budget's metric for candidate outputs against the float model's, on one set of samples."""

    budget: Budget
    reference: dict[str, np.ndarray]
    labels: np.ndarray | None
    outputs: list[str]

    @classmethod
    def for_model(cls, keras_model, budget: Budget, data: Samples, kinds: dict | None = None) -> "Scorer":
        reference = keras_outputs(keras_model, data)
        names = judged_outputs(budget, {n: r.shape[1:] for n, r in reference.items()}, kinds)
        if budget.max_drop is not None and data.labels is None:
            raise InputError("--max-drop needs labelled --eval-data (class folders, or .npz with x and y); "
                             "without labels use --min-agreement")
        return cls(budget, reference, data.labels, names)

    def _pick(self, outputs: dict[str, np.ndarray], name: str) -> np.ndarray:
        n = len(self.reference[name])
        if name in outputs:
            found = outputs[name]
        elif len(outputs) == 1 and len(self.reference) == 1:
            found = next(iter(outputs.values()))
        else:
            raise InputError(f"the INT8 model has no output '{name}' (it has {', '.join(outputs)})")
        return np.asarray(found, np.float64).reshape(n, -1)

    def score(self, outputs: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
        """(the worst judged output's metric, {output: metric})."""
        from .tflite import measure

        per = {name: measure(self.budget, self._pick(outputs, name), self.reference[name].reshape(
            len(self.reference[name]), -1), self.labels) for name in self.outputs}
        worst = min(per.values()) if not self.budget.better(0.0, 1.0) else max(per.values())
        return float(worst), {k: round(float(v), 6) for k, v in per.items()}

    def confidence(self, outputs: dict[str, np.ndarray]) -> dict:
        """The worst output's metric with its 95 % interval, what the samples can resolve, and whether
        the interval certifies the budget (else how many samples at the same rates would)."""
        budget, worst = self.budget, None
        for name in self.outputs:
            found = self._pick(outputs, name)
            reference = self.reference[name].reshape(len(found), -1)
            if budget.max_drop is not None:
                drop = paired_drop(reference.argmax(1) == self.labels, found.argmax(1) == self.labels)
                entry = {"output": name, "value": drop.drop_pp, "low": drop.low_pp, "high": drop.high_pp,
                         "resolution": drop.resolution_pp, "p_value": drop.p_value,
                         "float_only": drop.float_only, "int8_only": drop.int8_only,
                         "certified": drop.high_pp <= budget.max_drop + 1e-9,
                         "samples_to_certify": samples_to_certify_drop(drop, budget.max_drop)}
                key = entry["high"]
            elif budget.min_agreement is not None:
                rate = agreement_interval(found.argmax(1) == reference.argmax(1))
                entry = {"output": name, "value": rate.value, "low": rate.low, "high": rate.high,
                         "resolution": 1.0 - agreement_interval(np.ones(rate.samples, bool)).low,
                         "certified": rate.low >= budget.min_agreement - 1e-9,
                         "samples_to_certify": samples_to_certify_agreement(rate, budget.min_agreement)}
                key = -entry["low"]
            else:
                rate = bootstrap_sqnr(reference, found)
                entry = {"output": name, "value": rate.value, "low": rate.low, "high": rate.high,
                         "resolution": None, "certified": rate.low >= budget.min_sqnr - 1e-9,
                         "samples_to_certify": samples_to_certify_sqnr(rate, budget.min_sqnr)}
                key = -entry["low"]
            if worst is None or key > worst[0]:
                worst = (key, entry)
        entry = worst[1]
        entry = {k: (round(v, 4) if isinstance(v, float) and np.isfinite(v) else v) for k, v in entry.items()}
        entry["samples"] = len(next(iter(self.reference.values())))
        entry["confidence"] = 0.95
        entry["resolvable"] = entry["resolution"] is None or _resolvable(budget, entry["resolution"])
        return entry


def _resolvable(budget: Budget, resolution: float) -> bool:
    """Whether a zero error would be told apart from the budget on these samples."""
    if budget.max_drop is not None:
        return resolution <= budget.max_drop + 1e-9
    return 1.0 - resolution >= budget.min_agreement - 1e-9


_MAC_LAYERS = {"Conv2D", "Conv1D", "DepthwiseConv2D", "Dense", "SeparableConv2D", "Conv2DTranspose"}


def layer_macs(keras_model) -> dict[str, int]:
    """Multiply-accumulates per sample of each Conv/Dense/DepthwiseConv layer, by layer name."""
    macs = {}
    for layer in keras_model.layers:
        kind = type(layer).__name__
        if kind not in _MAC_LAYERS or not layer.weights:
            continue
        try:
            out = tuple(int(d) for d in layer.output.shape[1:])
        except (AttributeError, TypeError, ValueError):
            continue
        kernel = layer.weights[0].shape
        positions = int(np.prod(out[:-1])) if len(out) > 1 else 1
        if kind == "DepthwiseConv2D":
            per_position = int(np.prod(kernel))  # kh * kw * channels * multiplier: one MAC per output value
        elif kind == "SeparableConv2D":
            depthwise, pointwise = layer.weights[0].shape, layer.weights[1].shape
            per_position = int(np.prod(depthwise)) + int(np.prod(pointwise))
        elif kind == "Conv2DTranspose":
            inp = tuple(int(d) for d in layer.input.shape[1:])
            positions, per_position = int(np.prod(inp[:-1])), int(np.prod(kernel))
        else:
            per_position = int(np.prod(kernel))  # kh * kw * in/groups * out
        macs[layer.name] = positions * per_position
    return macs


def int8_share(macs: dict[str, int], float_layers, integer: bool = True) -> float:
    """The share of the conv/dense MACs computed in INT8 when `float_layers` stay float (0 when not INT8)."""
    total = sum(macs.values())
    if not integer:
        return 0.0
    if not total:
        return 1.0
    kept = sum(macs.get(name, 0) for name in set(float_layers))
    return round(1.0 - kept / total, 4)


__all__ = ["HOLDOUT_FRACTION", "MIN_HOLDOUT", "MIN_INT8_SHARE", "Scorer", "int8_share", "judged_outputs",
           "keras_outputs", "layer_macs", "model_inputs", "split_holdout"]
