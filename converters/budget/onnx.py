"""The search of `converters.budget.explore` for INT8 ONNX: ORT's calibrators, fixes, `nodes_to_exclude`.

    result = search_onnx(job, out / "m_fp32.onnx", Samples({"image": x}, y), Budget(max_drop=0.5))

`OnnxBackend` gives the search: ORT's calibration methods (min/max, percentile, entropy) through
the exporter's own `quantize_onnx`, so every attempt has edgeact's QDQ settings; the fixes of
the Keras model (equalization, bias correction, both), each exported again and tried with every
method (equalization + percentile included); and nodes kept in float by `nodes_to_exclude`
(ORT leaves them float, with DequantizeLinear before them). ORT has no per-node 16x8 on its CPU
kernels (an int16 QDQ tensor runs as float Conv between Dequantize/Quantize), so there is no
wider-activation attempt here.

Rows, budget and refusal are `converters.budget.explore`'s.
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

from .explore import SearchLimits, SearchResult
from .tflite import apply_fix

METHODS = (CalibrationMethod.MINMAX, CalibrationMethod.PERCENTILE, CalibrationMethod.ENTROPY)


def _run(path: Path, x) -> tuple[dict[str, np.ndarray], float]:
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


def onnx_job(keras_model, calibration, folder: Path, name: str = "model"):
    """A ConvertJob for searching outside `convert` (benchmarks, tests): NHWC, calibration as given
    (an array for a single-input model, or Samples by input name)."""
    from calibration import CalibrationSet
    from converters.job import ConvertJob
    from converters.keras.signature import keras_signature
    from converters.options import ConvertOptions
    from edgeact.config import Format

    signature = keras_signature(keras_model)
    source = calibration if isinstance(calibration, Samples) else Samples({signature.inputs[0].name: calibration})
    return ConvertJob(name, Path(folder), None, keras_model, signature, CalibrationSet(source, source.head(8)), {},
                      ConvertOptions(formats=(Format.ONNX,), progress=False))


class OnnxBackend:
    """What the search tries for ONNX (see converters.budget.explore); files live in `folder`."""

    range_word = "calibration"

    def __init__(self, job, float_path: Path, folder: Path, fixes: dict | None = None) -> None:
        self.job, self.float_path, self.folder = job, Path(float_path), Path(folder)
        self.methods = [m.value for m in METHODS]
        self.fixes = fixes if fixes is not None else {}
        self.count = 0

    def prepare(self, chain):
        from converters.onnx.exporter import export_float_onnx

        job, model, whats = self.job, self.job.keras_model, []
        calibration = job.calibration.calibration
        for fix in chain:
            if fix == "bias correction" and len(calibration.arrays) > 1:
                return None, "bias correction feeds single-input models"
            fixed, what = apply_fix(fix, model, calibration.array() if len(calibration.arrays) == 1 else calibration,
                                    self.fixes)
            if fixed is None:
                return None, f"{fix}: {what}"
            model = fixed
            whats.append(what)
        if not chain:
            return (job, self.float_path), whats
        fixed_job = dataclasses.replace(job, keras_model=model)
        self.count += 1
        fixed_float = self.folder / f"float{self.count}.onnx"
        export_float_onnx(fixed_job, fixed_float)
        return (fixed_job, fixed_float), whats

    def quantize(self, variant, method: str, float_nodes=()) -> bytes:
        from converters.onnx.exporter import quantize_onnx

        base_job, base_float = variant
        self.count += 1
        path = self.folder / f"attempt{self.count}.onnx"
        trial = dataclasses.replace(base_job, options=dataclasses.replace(
            base_job.options, calibration_method=CalibrationMethod(method)))
        # Ranges depend only on the float model and the method: ORT's cache spares the fallback
        # attempts a calibration each (entropy on MobileNetV2: 90 s here).
        cache = self.folder / f"ranges_{Path(base_float).name}_{method}.json"
        with streamed_histograms():  # ORT keeps every sample's tensors otherwise (OOM on MobileNetV2)
            quantize_onnx(trial, base_float, path, exclude=list(float_nodes), calibration_cache=cache)
        return path.read_bytes()

    def run(self, model: bytes, samples: Samples):
        from converters.onnx.exporter import to_layout

        path = self.folder / "run.onnx"
        path.write_bytes(model)
        return _run(path, to_layout(self.job, samples))

    def candidates(self, variant, method: str, model: bytes) -> list[tuple[str, str]]:
        """(layer, node) of the quantized nodes, worst own error first (graph order for several inputs)."""
        from converters.layer_error.measure import keras_layer_name, layer_errors

        base_job, base_float = variant
        int8 = self.folder / "candidates.onnx"
        int8.write_bytes(model)
        calibration = self.job.calibration.calibration
        if len(calibration.arrays) > 1:
            import onnx

            graph = onnx.load(str(int8), load_external_data=False).graph
            layers = [layer.name for layer in base_job.keras_model.layers]
            readers = {name for node in graph.node if node.op_type == "QuantizeLinear" for name in node.input[:1]}
            return [(keras_layer_name(node.output[0], layers) or node.name, node.name) for node in graph.node
                    if node.op_type not in ("QuantizeLinear", "DequantizeLinear", "Transpose")
                    and any(out in readers for out in node.output)]
        report = layer_errors(calibration.array(), onnx=(base_float, int8), keras_model=base_job.keras_model)
        found = []
        for row in report.worst(None, "onnx", by_own=True):
            if row.op in ("input", "Transpose"):
                continue
            nodes = producer_nodes(int8, [row.tensor])
            if nodes:
                found.append((row.layer or row.tensor, nodes[0]))
        return found


def search_onnx(job, float_path: Path, data: Samples, budget: Budget, max_fallback: int = 8, progress=None,
                fixes: dict | None = None, holdout: Samples | None | str = "split",
                limits: SearchLimits | None = None, kinds: dict | None = None,
                default: bytes | None = None) -> SearchResult:
    """The search of `converters.budget.explore` for ONNX, until `budget` is met.

    Args:
        job: the ConvertJob the ONNX exporter quantized with (options, calibration, Keras model).
        float_path: the float .onnx.
        data: evaluation inputs by input name (NHWC images), and labels for --max-drop.
        holdout: as for `converters.budget.tflite.search_tflite`.
        fixes: a cache of fixed Keras models shared with the TFLite search (`tflite.apply_fix`).
        default: the exporter's INT8 file, tried first (`explore`).
    """
    from .evaluate import layer_macs
    from .tflite import _split, run_search

    limits = limits or SearchLimits(max_fallback=max_fallback)
    selection, holdout = _split(data, holdout)
    with tempfile.TemporaryDirectory(prefix="edgeact-fallback-onnx-") as tmp:
        backend = OnnxBackend(job, float_path, Path(tmp), fixes)
        return run_search(backend, job.keras_model, budget, selection, holdout, layer_macs(job.keras_model),
                          limits, progress, kinds, default)
