"""Winning INT8 accuracy back for TFLite: the search of `converters.budget.explore`, TFLite's side of it.

    result = search_tflite(folded_model, calibration, Samples({"image": x}, y), Budget(max_drop=0.5))
    print(render_attempts(result)); require_budget(result)   # BudgetNotMetError: exit 1

`TFLiteBackend` gives the search what it tries: the fixes of the Keras model (FIXES: cross-layer
equalization, bias correction, both) each calibrated once, every range method on them
(min/max, percentile, MSE; `converters.tflite.ranges`), the whole model in 16x8 mode, and ops
kept in float by the quantizer's denylist (named by their output tensor). A model with a float
op is no longer full-integer: an Edge TPU splits its graph at each one, and the table says so.

Every attempt is a row: what changed, the metric on the selection samples, full-integer or not,
its INT8 share of the conv/dense MACs, and the latency measured on this machine (LiteRT, one
sample, median of 20).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from calibration.adapters import representative_dataset
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

from .explore import Attempt, SearchLimits, SearchResult, explore, finish


class BudgetNotMetError(VerificationError):
    """No attempt met the accuracy budget; the best model was still written (exit 1)."""


def _run(model: bytes, x) -> tuple[np.ndarray, float]:
    """The first output on x (flattened per sample), and the median latency (ms) of one sample over 20 runs."""
    outputs, latency = run_tflite(model, x)
    first = next(iter(outputs.values()))
    return np.asarray(first, np.float64).reshape(len(first), -1), latency


def run_tflite(model: bytes, x) -> tuple[dict[str, np.ndarray], float]:
    """Outputs by name on x (an array, a {input: array} dict or Samples), and the median latency (ms)."""
    from edgeact.quiet import native_output_captured
    from edgeact.runtime.tflite import TFLiteRunner

    with tempfile.TemporaryDirectory(prefix="edgeact-fallback-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        with native_output_captured():
            runner = TFLiteRunner(path)
        return outputs_and_latency(runner, x)


def outputs_and_latency(runner, x) -> tuple[dict[str, np.ndarray], float]:
    """A runner's outputs on x by name, and its median latency (ms) of one sample over 20 runs."""
    batch = x.arrays if isinstance(x, Samples) else x
    outputs = {name: np.asarray(o, np.float64) for name, o in runner.predict(batch).items()}
    arrays = runner.input_arrays(batch)
    if len(arrays) == 1:
        runner.write_input(runner.prepare(arrays[0][:1])[0])
    else:
        runner.write_inputs(tuple(runner.prepare(a[:1], i)[0] for i, a in enumerate(arrays)))
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


def as_samples(keras_model, data) -> Samples:
    """Samples keyed by the Keras model's input names (a bare array for a single-input model)."""
    if isinstance(data, Samples):
        return data
    return Samples({str(keras_model.inputs[0].name): np.asarray(data, np.float32)})


class _Variant:
    """A fixed Keras model, calibrated once, with the ranges each method chose on it."""

    def __init__(self, model, calibrated: bytes) -> None:
        self.model, self.calibrated, self.ranged = model, calibrated, {}


class TFLiteBackend:
    """What the search tries for TFLite (see converters.budget.explore)."""

    range_word = "ranges"

    def __init__(self, keras_model, calibration: Samples, io_type: IOType = IOType.INT8,
                 methods: tuple[RangeMethod, ...] = tuple(RangeMethod), output_names: list[str] | None = None,
                 fixes: dict | None = None, depthwise: bool = False) -> None:
        self.keras_model, self.calibration, self.io_type = keras_model, calibration, io_type
        self.depthwise = depthwise  # converters.tflite.xnnpack_rewrites, as the exporter's INT8 file has them
        self.methods = [RangeMethod(m).value for m in methods]
        self.output_names = list(output_names or keras_model.output_names)
        self.fixes = fixes if fixes is not None else {}

    def prepare(self, chain) -> tuple[_Variant | None, list[str] | str]:
        model, whats = self.keras_model, []
        for fix in chain:
            if fix == "bias correction" and len(self.calibration.arrays) > 1:
                return None, "bias correction feeds single-input models"
            fixed, what = apply_fix(fix, model, self.calibration.array() if len(self.calibration.arrays) == 1
                                    else self.calibration, self.fixes)
            if fixed is None:
                return None, f"{fix}: {what}"
            model = fixed
            whats.append(what)
        return _Variant(model, calibrate_tflite(model, self.calibration, self.output_names)), whats

    def _ranged(self, variant: _Variant, method: str) -> bytes:
        if method not in variant.ranged:
            method_ = RangeMethod(method)
            variant.ranged[method] = variant.calibrated if method_ is RangeMethod.MINMAX else \
                set_ranges(variant.calibrated, ranges_for(variant.calibrated, self.calibration, method_))
        return variant.ranged[method]

    def quantize(self, variant: _Variant, method: str, float_keys=()) -> bytes:
        calibrated = self._ranged(variant, method)
        if self.depthwise:
            from converters.tflite.xnnpack_rewrites import xnnpack_rewrites

            calibrated, _ = xnnpack_rewrites(calibrated)
        return quantize_calibrated(calibrated, self.io_type, list(float_keys))

    def wide(self, variant: _Variant, method: str) -> bytes:
        """The whole model in 16x8 mode (int16 activations, int8 weights, float in and out), TFLite's own
        min/max calibration: the quantizer takes one inference type per model, not per layer."""
        import tensorflow as tf

        from edgeact.quiet import native_output_captured

        converter = tf.lite.TFLiteConverter.from_keras_model(named_model(variant.model, self.output_names))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset(self.calibration)
        ops = tf.lite.OpsSet
        converter.target_spec.supported_ops = [ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        with native_output_captured():  # the old quantizer path: edgeact's in-place calibration guard does not apply
            return bytes(converter.convert())

    def run(self, model: bytes, samples: Samples) -> tuple[dict[str, np.ndarray], float]:
        return run_tflite(model, samples)

    def candidates(self, variant: _Variant, method: str, model: bytes) -> list[tuple[str, str]]:
        """(layer, output tensor) of the quantized ops, worst own error first (op order for several inputs)."""
        from converters.layer_error.measure import keras_layer_name, layer_errors
        from converters.layer_error.tflite import open_interpreter, quantized_outputs
        from edgeact.quiet import native_output_captured

        if len(self.calibration.arrays) > 1:  # per-layer error feeds one input: the ops in order
            interpreter = open_interpreter(model)
            names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
            outputs = {d["index"] for d in interpreter.get_output_details()}
            layers = [layer.name for layer in variant.model.layers]
            found = []
            for _, _, index, _, _ in quantized_outputs(interpreter):
                if index not in outputs:
                    found.append((keras_layer_name(names[index], layers) or names[index], names[index]))
            return found
        with native_output_captured():
            import tensorflow as tf

            fp32 = tf.lite.TFLiteConverter.from_keras_model(named_model(variant.model, self.output_names)).convert()
        report = layer_errors(self.calibration.array(), tflite=(fp32, model), keras_model=variant.model)
        return [(r.layer or r.tensor, r.tensor) for r in report.worst(None, "tflite", by_own=True)]


def ranges_for(calibrated: bytes, calibration: Samples, method: RangeMethod) -> dict:
    """`choose_ranges` on the calibration samples; for several inputs the values are observed here."""
    if len(calibration.arrays) == 1:
        return choose_ranges(calibrated, calibration.array(), method)
    from converters.layer_error.tflite import open_interpreter
    from converters.tflite.ranges import MAX_VALUES, calibrated_ranges, mse_ranges, percentile_ranges

    interpreter = open_interpreter(calibrated)
    wanted = set(calibrated_ranges(calibrated))
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details() if d["name"] in wanted}
    inputs = interpreter.get_input_details()
    feeds = [(d["index"], next(n for n in calibration.names if n in d["name"])) for d in inputs]
    per_sample = max(1, MAX_VALUES // max(1, len(calibration)))
    rng = np.random.default_rng(0)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in index}
    for sample in calibration:
        for i, name in feeds:
            interpreter.set_tensor(i, sample[name].astype(np.float32))
        interpreter.invoke()
        for name, i in index.items():
            values = interpreter.get_tensor(i).ravel()
            if values.size > per_sample:
                values = rng.choice(values, per_sample, replace=False)
            chunks[name].append(values.astype(np.float32))
    values = {name: np.concatenate(parts) for name, parts in chunks.items() if parts}
    return percentile_ranges(values) if method is RangeMethod.PERCENTILE else mse_ranges(values)


def search_tflite(keras_model, calibration, data: Samples, budget: Budget,
                  io_type: IOType = IOType.INT8, methods: tuple[RangeMethod, ...] = tuple(RangeMethod),
                  max_fallback: int = 8, progress=None, output_names: list[str] | None = None,
                  fixes: dict | None = None, holdout: Samples | None | str = "split",
                  limits: SearchLimits | None = None, kinds: dict | None = None,
                  default: bytes | None = None, depthwise: bool = False) -> SearchResult:
    """The search of `converters.budget.explore` for TFLite, until `budget` is met.

    Args:
        keras_model: the (folded) float model.
        calibration: calibration inputs: an array (N, ...) for one input, or Samples by input name.
        data: evaluation inputs (and labels); the search selects on them.
        holdout: samples to judge the chosen model on; "split" (the default) keeps
            `converters.budget.evaluate.HOLDOUT_FRACTION` of `data` aside, None uses no holdout.
        max_fallback: at most this many cumulative float-fallback attempts (`limits.max_fallback`).
        progress: called with a one-line description before each attempt.
        output_names: name the models' SignatureDef outputs like this (convert's names); None: the Keras names.
        fixes: a cache of fixed models shared with the ONNX search (see `apply_fix`).
        kinds: {output name: OutputKind}, which outputs a top-1 budget judges.
        default: the exporter's INT8 file, tried first (`explore`).
        depthwise: apply converters.tflite.xnnpack_rewrites (standalone RELU/RELU6, average pools,
            long concatenations) to every attempt, as the exporter does for a target that is not an
            Edge TPU.
    """
    from .evaluate import layer_macs

    limits = limits or SearchLimits(max_fallback=max_fallback)
    calibration = as_samples(keras_model, calibration)
    selection, holdout = _split(data, holdout)
    backend = TFLiteBackend(keras_model, calibration, io_type, methods, output_names, fixes, depthwise)
    return run_search(backend, keras_model, budget, selection, holdout, layer_macs(keras_model), limits,
                      progress, kinds, default)


def _split(data: Samples, holdout) -> tuple[Samples, Samples | None]:
    from .evaluate import split_holdout

    if isinstance(holdout, str):
        return split_holdout(data)
    return data, holdout


def run_search(backend, keras_model, budget: Budget, selection: Samples, holdout: Samples | None, macs: dict,
               limits: SearchLimits, progress=None, kinds: dict | None = None,
               default: bytes | None = None) -> SearchResult:
    """explore() on the selection samples, then finish() on the holdout."""
    from .evaluate import Scorer

    say = progress or (lambda text: None)
    scorer = Scorer.for_model(keras_model, budget, selection, kinds)
    held_scorer = Scorer.for_model(keras_model, budget, holdout, kinds) if holdout is not None else None
    search, best = explore(backend, budget, scorer, selection, macs, limits, say, default)
    say("judging the chosen model on the held-out samples" if holdout is not None else "judging the chosen model")
    return finish(search, best, holdout, held_scorer)


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


__all__ = ["Attempt", "BudgetNotMetError", "SearchLimits", "SearchResult", "TFLiteBackend", "apply_fix", "measure",
           "render_attempts", "require_budget", "run_search", "run_tflite", "search_tflite"]
