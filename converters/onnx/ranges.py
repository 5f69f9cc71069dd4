"""Per-tensor activation ranges for the INT8 ONNX model, through ONNX Runtime's range cache.

    values = sample_values(prepared, cache, reader)        # one pass of the float model
    chosen = shrunk_ranges(values)                          # converters.rounding.ranges
    write_cache(cache, chosen, target)                      # quantize_static(..., calibration_cache_path=target)

quantize_static's MinMax calibration reduces every tensor to its min and max inside the session
(ReduceMin/ReduceMax nodes), so its pass yields no values to choose a range on. `sample_values`
runs the prepared float model once more with the tensors of ORT's cache as outputs, drawing
VALUES_PER_SAMPLE values per sample from each (the graph's inputs and outputs keep min/max, as in
TFLite); the cache's own min/max are the exact ends. The candidate is a copy of ORT's cache with
the shrunk ranges, so the quantizer places the same QDQ pairs and only their scales move.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from converters.job import verify_threads
from converters.rounding.ranges import VALUES_PER_SAMPLE, SampledValues


def cache_ranges(cache: Path) -> dict[str, tuple[float, float]]:
    """{tensor: (lowest, highest)} of ORT's MinMax range cache."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    found = {}
    for name, data in load_tensors_data(cache).items():
        low, high = data.range_value
        found[name] = (float(np.min(low)), float(np.max(high)))
    return found


def sample_values(prepared: Path, cache: Path, reader) -> SampledValues:
    """VALUES_PER_SAMPLE random values per sample of each tensor in ORT's range cache that is neither a
    graph input nor a graph output, from the prepared float model on `reader`'s samples (rewound
    first); `ends` are the cache's (lowest, highest)."""
    import onnx
    import onnxruntime as ort

    ranges = cache_ranges(cache)
    model = onnx.load(str(prepared))
    graph = model.graph
    outside = {i.name for i in graph.input} | {o.name for o in graph.output}
    infos = {vi.name: vi for vi in graph.value_info}
    names = sorted(n for n in ranges if n not in outside and n in infos)  # ORT keeps them in set order
    values = SampledValues()
    if not names:
        return values
    graph.output.extend(infos[n] for n in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as ORT's calibrator runs it
    options.intra_op_num_threads = verify_threads()
    with tempfile.TemporaryDirectory(prefix="edgeact-ranges-") as tmp:
        path = Path(tmp) / "values.onnx"
        onnx.save(model, str(path))
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    reader.rewind()
    while (feed := reader.get_next()) is not None:
        for name, found in zip(names, session.run(names, feed)):
            flat = np.asarray(found, np.float32).reshape(-1)
            if flat.size:
                parts[name].append(flat[rng.integers(0, flat.size, VALUES_PER_SAMPLE)])
    values.update({n: np.concatenate(p) for n, p in parts.items() if p})
    values.ends.update({n: ranges[n] for n in values})
    return values


def write_cache(cache: Path, ranges: dict[str, tuple[float, float]], target: Path) -> None:
    """A copy of ORT's range cache at `target` with `ranges` in place of those tensors' min/max."""
    from onnxruntime.quantization.calibrate import TensorData, load_tensors_data, save_tensors_data

    data = load_tensors_data(cache)
    for name, (low, high) in ranges.items():
        data[name] = TensorData(lowest=np.float32(low), highest=np.float32(high))
    save_tensors_data(data, target)


__all__ = ["cache_ranges", "sample_values", "write_cache"]
