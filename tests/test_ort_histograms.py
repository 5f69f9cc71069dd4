"""ORT's histogram calibration a chunk at a time: memory bounded by the chunk, ranges as ORT's own."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from .helpers import build_one_bad_layer


def _scales(path) -> dict[str, float]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    return {n.input[0]: float(constants[n.input[1]]) for n in graph.node if n.op_type == "QuantizeLinear"}


@pytest.mark.parametrize("method, tolerance", [("percentile", 0.01), ("entropy", 0.15)])
def test_chunked_histograms_hold_one_chunk_and_give_ort_s_ranges(keras, tmp_path, monkeypatch, method, tolerance):
    from onnxruntime.quantization import calibrate

    from converters.budget.onnx import onnx_job
    from converters.onnx.exporter import export_float_onnx, quantize_onnx
    from converters.onnx.histograms import streamed_histograms
    from edgeact.config import CalibrationMethod

    model, calibration, _ = build_one_bad_layer(keras, "relu")  # 48 calibration samples
    job = onnx_job(model, calibration, tmp_path, "m")
    job = dataclasses.replace(job, options=dataclasses.replace(job.options,
                                                               calibration_method=CalibrationMethod(method)))
    export_float_onnx(job, float_path := tmp_path / "m_fp32.onnx")
    quantize_onnx(job, float_path, whole := tmp_path / "whole.onnx")

    held = []  # samples per tensor handed to the histogram collector in one call
    collect = calibrate.HistogramCollector.collect
    monkeypatch.setattr(calibrate.HistogramCollector, "collect",
                        lambda self, arrays: (held.append(max(len(v) for v in arrays.values())), collect(self, arrays)))
    with streamed_histograms(chunk=8):
        quantize_onnx(job, float_path, chunked := tmp_path / "chunked.onnx")
    assert held == [8] * 6  # 48 samples, 8 at a time: never all of them at once
    quantize_onnx(job, float_path, tmp_path / "again.onnx")
    assert held[-1] == 48  # outside the context ORT's own collect_data is back

    whole_scales, chunked_scales = _scales(whole), _scales(chunked)
    assert set(whole_scales) == set(chunked_scales)
    for name, scale in whole_scales.items():
        assert chunked_scales[name] == pytest.approx(scale, rel=tolerance), name
    assert np.mean([abs(chunked_scales[k] / s - 1) for k, s in whole_scales.items()]) < tolerance / 2
