"""The same search for INT8 ONNX: ORT's calibration methods first, then `nodes_to_exclude`.

    result = search_onnx(job, out / "m_fp32.onnx", Samples({"image": x}, y), Budget(max_drop=0.5))

1. ORT's calibration methods (min/max, percentile, entropy), through the exporter's own
   `quantize_onnx`, so every attempt has edgeact's QDQ settings;
2. the integer-preserving fixes of the Keras model (equalization, bias correction), each
   exported again and kept only when it helps;
3. the layers with the worst own SQNR excluded from quantization one group at a time
   (`nodes_to_exclude`: ORT leaves those nodes float, with DequantizeLinear before them).

Rows, budget and refusal are `converters.budget.tflite`'s.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from converters.onnx.histograms import streamed_histograms
from converters.options import Budget
from edgeact.config import CalibrationMethod
from edgeact.data.samples import Samples

from .tflite import FIXES, Attempt, SearchResult, apply_fix, measure

METHODS = (CalibrationMethod.MINMAX, CalibrationMethod.PERCENTILE, CalibrationMethod.ENTROPY)


def _run(path: Path, x: np.ndarray) -> tuple[np.ndarray, float]:
    from edgeact.runtime.onnx import OnnxRunner

    from .tflite import outputs_and_latency

    return outputs_and_latency(OnnxRunner(path), x)


def producer_nodes(int8_path: Path, tensors: list[str]) -> list[str]:
    """The names of the nodes writing these (float-model) tensors in the QDQ model."""
    import onnx

    graph = onnx.load(str(int8_path), load_external_data=False).graph
    writers = {out: node.name for node in graph.node for out in node.output}
    names = []
    for tensor in tensors:
        # ORT renames a graph output's producer output to '<output>_QuantizeLinear_Input'.
        name = writers.get(tensor) or writers.get(f"{tensor}_QuantizeLinear_Input")
        if name:
            names.append(name)
    return names


def onnx_job(keras_model, calibration: np.ndarray, folder: Path, name: str = "model"):
    """A ConvertJob for searching outside `convert` (benchmarks, tests): NHWC, calibration as given."""
    from calibration import CalibrationSet
    from converters.job import ConvertJob
    from converters.keras.signature import keras_signature
    from converters.options import ConvertOptions
    from edgeact.config import Format

    signature = keras_signature(keras_model)
    source = Samples({signature.inputs[0].name: calibration})
    return ConvertJob(name, Path(folder), None, keras_model, signature, CalibrationSet(source, source.head(8)), {},
                      ConvertOptions(formats=(Format.ONNX,), progress=False))


def search_onnx(job, float_path: Path, data: Samples, budget: Budget, group_size: int = 1,
                max_fallback: int = 8, progress=None, fixes: dict | None = None) -> SearchResult:
    """Calibration methods first, then float fallback of the worst layers, until `budget` is met.

    Args:
        job: the ConvertJob the ONNX exporter quantized with (options, calibration, Keras model).
        float_path: the float .onnx.
        data: evaluation inputs, NHWC, and labels for --max-drop.
        fixes: a cache of fixed Keras models shared with the TFLite search (`fallback.apply_fix`).
    """
    from converters.layer_error.measure import layer_errors
    from converters.onnx.exporter import export_float_onnx, image_layout, quantize_onnx

    say = progress or (lambda text: None)
    keras_x = data.array()  # one input: the search refuses several (converters.budget.search.check_model)
    reference = np.asarray(job.keras_model.predict(keras_x, verbose=0), np.float64).reshape(len(keras_x), -1)
    x = image_layout(keras_x, job.options.onnx_layout)
    attempts: list[Attempt] = []
    models: dict[int, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="edgeact-fallback-onnx-") as tmp:
        def attempt(changed: str, method: CalibrationMethod, exclude: list[str], labels: list[str],
                    source: tuple = (job, float_path)) -> Attempt:
            path = Path(tmp) / f"attempt{len(attempts) + 1}.onnx"
            base_job, base_float = source
            trial = dataclasses.replace(base_job, options=dataclasses.replace(base_job.options,
                                                                               calibration_method=method))
            # Ranges depend only on the float model and the method: ORT's cache spares the fallback
            # attempts a calibration each (entropy on MobileNetV2: 90 s here).
            cache = Path(tmp) / f"ranges_{Path(base_float).name}_{method.value}.json"
            with streamed_histograms():  # ORT keeps every sample's tensors otherwise (OOM on MobileNetV2)
                quantize_onnx(trial, base_float, path, exclude=exclude, calibration_cache=cache)
            outputs, latency = _run(path, x)
            row = Attempt(len(attempts) + 1, changed, measure(budget, outputs, reference, data.labels),
                          not exclude, round(latency, 4), list(labels), method.value)
            attempts.append(row)
            models[row.attempt] = path.read_bytes()
            return row

        best = None
        for method in METHODS:
            say(f"calibration: {method.value}")
            row = attempt(f"{method.value} calibration", method, [], [])
            if best is None or budget.better(row.metric, best.metric):
                best = row
            if budget.met(row.metric):
                break
        source = base = (job, float_path)
        base_row = best
        for fix in FIXES if not budget.met(best.metric) else ():
            say(f"fix: {fix}")
            fixed, what = apply_fix(fix, source[0].keras_model, job.calibration.calibration.array(), fixes)
            if fixed is None:
                continue
            fixed_job = dataclasses.replace(job, keras_model=fixed)
            fixed_float = Path(tmp) / f"float{len(attempts) + 1}.onnx"
            export_float_onnx(fixed_job, fixed_float)
            method = CalibrationMethod(best.ranges)
            row = attempt(f"{fix} ({what}), {method.value} calibration", method, [], [], (fixed_job, fixed_float))
            if budget.better(row.metric, best.metric):  # kept only when it helps
                best, source = row, (fixed_job, fixed_float)
                if fix != "bias correction":  # see converters.budget.tflite: not under float layers
                    base, base_row = source, row
            if budget.met(row.metric):
                break
        if not budget.met(best.metric):
            say("ranking layers by their own error")
            base_job, base_float = base
            best_path = Path(tmp) / "best.onnx"  # the best model without bias correction
            best_path.write_bytes(models[base_row.attempt])
            report = layer_errors(job.calibration.calibration.array(), onnx=(base_float, best_path),
                                  keras_model=base_job.keras_model)
            ranked = [r for r in report.worst(None, "onnx", by_own=True) if r.op not in ("input", "Transpose")]
            method = CalibrationMethod(base_row.ranges)
            tensors: list[str] = []
            labels: list[str] = []
            for start in range(0, min(len(ranked), group_size * max_fallback), group_size):
                group = ranked[start:start + group_size]
                tensors += [r.tensor for r in group]
                labels += [r.layer or r.tensor for r in group]
                say(f"float: +{', '.join(r.layer or r.tensor for r in group)} ({len(labels)} layer(s) in float)")
                row = attempt(f"float: {', '.join(labels)}", method, producer_nodes(best_path, tensors), labels, base)
                if budget.better(row.metric, best.metric):
                    best = row
                if budget.met(row.metric):
                    break
    return SearchResult(budget, attempts, best, models[best.attempt], budget.met(best.metric))
