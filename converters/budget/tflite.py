"""Winning INT8 accuracy back for TFLite: integer-preserving fixes first, float fallback to a budget.

    result = search_tflite(folded_model, calibration, Samples({"image": x}, y), Budget(max_drop=0.5))
    print(render_attempts(result)); require_budget(result)   # BudgetNotMetError: exit 1

1. Range methods (min/max, percentile, MSE; `converters.tflite.ranges`), each on the same
   calibrated model, kept only when it improves the metric.
2. Fixes of the Keras model that keep it integer (FIXES: cross-layer equalization, bias
   correction), each recalibrated with the best range method, kept only when they help.
3. If the budget is still missed: the layers are ranked by their own SQNR (only that layer
   quantized; `converters.layer_error.measure`), and the worst are kept in float one group at a
   time (the quantizer's denylist), re-measured after each, until the budget is met or the
   attempts run out. A model with a float op is no longer full-integer: an Edge TPU splits
   its graph at each one, and the table says so.

Every attempt is a row: what changed, the metric on the evaluation data, full-integer or
not, and the latency measured on this machine (LiteRT, XNNPACK, one sample, median).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from converters.options import Budget
from converters.tflite.ranges import (
    RangeMethod,
    calibrate_tflite,
    choose_ranges,
    named_model,
    quantize_calibrated,
    set_ranges,
)
from edgeact.config import IOType
from edgeact.data.samples import Samples
from edgeact.errors import InputError, VerificationError


class BudgetNotMetError(VerificationError):
    """No attempt met the accuracy budget; the best model was still written (exit 1)."""


@dataclass
class Attempt:
    attempt: int
    changed: str
    metric: float
    full_integer: bool
    latency_ms: float
    float_layers: list[str] = field(default_factory=list)
    ranges: str = RangeMethod.MINMAX.value

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResult:
    budget: Budget
    attempts: list[Attempt]
    best: Attempt
    model: bytes  # the best model's .tflite
    met: bool

    def to_dict(self) -> dict:
        return {"budget": asdict(self.budget), "metric": self.budget.metric, "met": self.met,
                "best": self.best.attempt, "attempts": [a.to_dict() for a in self.attempts]}


def _run(model: bytes, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Outputs on x, and the median latency (ms) of one sample over 20 runs."""
    from edgeact.quiet import native_output_captured
    from edgeact.runtime.tflite import TFLiteRunner

    with tempfile.TemporaryDirectory(prefix="edgeact-fallback-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        with native_output_captured():
            runner = TFLiteRunner(path)
        return outputs_and_latency(runner, x)


def outputs_and_latency(runner, x: np.ndarray) -> tuple[np.ndarray, float]:
    """A runner's first output on x, flattened per sample, and its median latency (ms) over 20 runs."""
    outputs = np.asarray(next(iter(runner.predict(x).values())), np.float64).reshape(len(x), -1)
    runner.write_input(runner.prepare(x[:1])[0])
    times = []
    for _ in range(20):
        start = time.perf_counter()
        runner.invoke()
        times.append(time.perf_counter() - start)
    return outputs, 1000 * float(np.median(times))


def measure(budget: Budget, outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> float:
    """The budget's metric for INT8 outputs against the float model's on the same inputs."""
    if budget.max_drop is not None:
        if labels is None:
            raise InputError("--max-drop needs labelled --eval-data (class folders, or .npz with x and y); "
                             "without labels use --min-agreement")
        float_acc = np.mean(reference.argmax(1) == labels)
        return 100.0 * float(float_acc - np.mean(outputs.argmax(1) == labels))
    if budget.min_agreement is not None:
        return float(np.mean(outputs.argmax(1) == reference.argmax(1)))
    from converters.layer_error.measure import sqnr_db

    return sqnr_db(float(np.sum(reference ** 2)), float(np.sum((reference - outputs) ** 2)))


def search_tflite(keras_model, calibration: np.ndarray, data: Samples, budget: Budget,
                  io_type: IOType = IOType.INT8, methods: tuple[RangeMethod, ...] = tuple(RangeMethod),
                  group_size: int = 1, max_fallback: int = 8, progress=None,
                  output_names: list[str] | None = None, fixes: dict | None = None) -> SearchResult:
    """Range methods first, then float fallback of the worst layers, until `budget` is met.

    Args:
        keras_model: the (folded) float model.
        calibration: calibration inputs (N, H, W, C).
        data: evaluation inputs (and labels); the metric is measured on them.
        group_size: layers moved to float per fallback attempt.
        max_fallback: at most this many fallback attempts.
        progress: called with a one-line description before each attempt.
        output_names: name the models' SignatureDef outputs like this (convert's names), so that
            the written model is read back by name; None keeps TFLite's output_0.
        fixes: a cache of fixed models shared with the ONNX search (see `apply_fix`).
    """
    from converters.layer_error.measure import layer_errors
    from edgeact.quiet import native_output_captured

    say = progress or (lambda text: None)
    x = data.array()  # one input: the search refuses several (converters.budget.search.check_model)
    reference = np.asarray(keras_model.predict(x, verbose=0), np.float64).reshape(len(x), -1)
    say("calibrating")
    calibrated = calibrate_tflite(keras_model, calibration, io_type, output_names)
    attempts: list[Attempt] = []
    models: dict[int, bytes] = {}

    def attempt(changed: str, model: bytes, ranges: RangeMethod, float_layers: list[str]) -> Attempt:
        outputs, latency = _run(model, x)
        row = Attempt(len(attempts) + 1, changed, measure(budget, outputs, reference, data.labels),
                      not float_layers, round(latency, 4), list(float_layers), ranges.value)
        attempts.append(row)
        models[row.attempt] = model
        return row

    best = None
    for method in methods:
        say(f"ranges: {method.value}")
        ranged = calibrated if method is RangeMethod.MINMAX else \
            set_ranges(calibrated, choose_ranges(calibrated, calibration, method))
        row = attempt(f"{method.value} ranges", quantize_calibrated(ranged, io_type), method, [])
        if best is None or budget.better(row.metric, best.metric):
            best = row
            base = (row, ranged, keras_model)
        if budget.met(row.metric):
            break
    model = keras_model
    for fix in FIXES if not budget.met(best.metric) else ():
        say(f"fix: {fix}")
        fixed, what = apply_fix(fix, model, calibration, fixes)
        if fixed is None:
            continue
        method = RangeMethod(best.ranges)
        recalibrated = calibrate_tflite(fixed, calibration, io_type, output_names)
        ranged = recalibrated if method is RangeMethod.MINMAX else \
            set_ranges(recalibrated, choose_ranges(recalibrated, calibration, method))
        row = attempt(f"{fix} ({what}), {method.value} ranges", quantize_calibrated(ranged, io_type), method, [])
        if budget.better(row.metric, best.metric):  # kept only when it helps
            best, model = row, fixed
            if fix != "bias correction":
                base = (row, ranged, fixed)
        if budget.met(row.metric):
            break
    if not budget.met(best.metric):
        # Float fallback starts from the best model without bias correction: a bias shifted
        # for rounded weights is wrong for the float weights of a layer moved to float.
        base_row, base_calibrated, model = base
        say("ranking layers by their own error")
        with tempfile.TemporaryDirectory(prefix="edgeact-fallback-") as tmp:
            fp32 = Path(tmp) / "fp32.tflite"
            with native_output_captured():
                import tensorflow as tf

                fp32.write_bytes(tf.lite.TFLiteConverter.from_keras_model(named_model(model, output_names)).convert())
            report = layer_errors(calibration, tflite=(fp32, models[base_row.attempt]), keras_model=model)
        ranked = [r for r in report.worst(None, "tflite", by_own=True)]
        floats: list[str] = []
        labels: list[str] = []
        method = RangeMethod(base_row.ranges)
        for start in range(0, min(len(ranked), group_size * max_fallback), group_size):
            group = ranked[start:start + group_size]
            floats += [r.tensor for r in group]
            labels += [r.layer or r.tensor for r in group]
            say(f"float: +{', '.join(r.layer or r.tensor for r in group)} ({len(labels)} layer(s) in float)")
            row = attempt(f"float: {', '.join(labels)}", quantize_calibrated(base_calibrated, io_type, floats),
                          method, labels)
            if budget.better(row.metric, best.metric):
                best = row
            if budget.met(row.metric):
                break
    return SearchResult(budget, attempts, best, models[best.attempt], budget.met(best.metric))


# Integer-preserving fixes of the Keras model, tried in this order after the range methods.
FIXES = ("equalize", "bias correction")


def apply_fix(fix: str, model, calibration: np.ndarray, cache: dict | None = None):
    """(fixed model, what changed) or (None, reason) when the fix finds nothing to change.

    `cache` (one dict shared by the TFLite and ONNX searches of one conversion, on the same
    calibration samples) keeps each fix of each model object: bias correction of MobileNetV2
    takes about a minute here, and both formats ask for it.
    """
    if cache is not None:
        key = (fix, id(model))
        if key not in cache or cache[key][0] is not model:
            cache[key] = (model, _apply_fix(fix, model, calibration))  # the model kept: its id stays unique
        return cache[key][1]
    return _apply_fix(fix, model, calibration)


def _apply_fix(fix: str, model, calibration: np.ndarray):
    if fix == "equalize":
        from converters.passes.pipeline import run_pipeline

        fixed, (result,) = run_pipeline(model, ["equalize"], None)
        return (fixed, f"{len(result.changed)} pair(s)") if result.changed else (None, "no pair")
    from .bias_correction import correct_biases

    fixed, shifts = correct_biases(model, calibration)
    return (fixed, f"{len(shifts)} layer(s)") if shifts else (None, "no biased layer")


def render_attempts(result: SearchResult) -> str:
    """The attempts table (one copy of it: edgeact.report.budget renders the report's too)."""
    from edgeact.report.budget import render_search_table

    return render_search_table(result.to_dict())


def require_budget(result: SearchResult) -> None:
    """BudgetNotMetError (exit 1) when no attempt met the budget."""
    if not result.met:
        raise BudgetNotMetError(f"no attempt met the budget ({result.budget.metric} best {result.best.metric} "
                                f"at attempt {result.best.attempt}); the best model was written, see the table")
