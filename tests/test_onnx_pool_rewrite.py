"""AveragePool written as a depthwise convolution in the ONNX graph about to be quantized
(converters.onnx.rewrites.average_pool_to_depthwise): the same function in float, ORT's INT8
depthwise QLinearConv instead of QLinearAveragePool, and INT8 outputs as close to float as the
pool's on samples the calibration never saw.
"""
from __future__ import annotations

import numpy as np
import pytest

from converters.onnx.rewrites import average_pool_to_depthwise
from tests.helpers import sqnr


def _graph(path, kernel, strides, pads, count_include_pad=0):
    """x (1, 8, 15, 15) -> 1x1 Conv -> Relu -> AveragePool -> 1x1 Conv."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"], name="a"), helper.make_node("Relu", ["a"], ["r"], name="r"),
             helper.make_node("AveragePool", ["r"], ["p"], name="pool", kernel_shape=kernel, strides=strides,
                              pads=pads, count_include_pad=count_include_pad),
             helper.make_node("Conv", ["p", "wb"], ["y"], name="b")]
    inits = [numpy_helper.from_array(rng.normal(0, 0.4, (8, 8, 1, 1)).astype(np.float32), n) for n in ("wa", "wb")]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 15, 15])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _run(path, samples, optimised=None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if optimised is not None:
        options.optimized_model_filepath = str(optimised)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": s[None]})[0] for s in samples]).astype(np.float64)


def _quantize(source, target, samples):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader:
        def __init__(self):
            self.items = iter(samples)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"x": item[None]}

    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)


@pytest.mark.parametrize("kernel,strides,pads,include", [
    ([3, 3], [1, 1], [1, 1, 1, 1], 0), ([3, 3], [2, 2], [1, 1, 1, 1], 0), ([5, 5], [1, 1], [2, 2, 2, 2], 0),
    ([2, 2], [2, 2], [0, 0, 1, 1], 0), ([3, 3], [1, 1], [1, 1, 1, 1], 1), ([2, 2], [2, 2], [0, 0, 0, 0], 0)])
def test_the_pool_becomes_a_depthwise_convolution_of_the_same_function(tmp_path, kernel, strides, pads, include):
    import onnx

    original, rewritten = tmp_path / "original.onnx", tmp_path / "rewritten.onnx"
    _graph(original, kernel, strides, pads, include)
    _graph(rewritten, kernel, strides, pads, include)
    assert average_pool_to_depthwise(rewritten) == ["pool"]
    types = [n.op_type for n in onnx.load(str(rewritten)).graph.node]
    border = include == 0 and any(pads)
    assert "AveragePool" not in types and types.count("Conv") == 3
    assert types.count("Mul") == types.count("Add") == (1 if border else 0)
    samples = np.random.default_rng(4).normal(0, 1, (8, 8, 15, 15)).astype(np.float32)
    np.testing.assert_allclose(_run(rewritten, samples), _run(original, samples), rtol=1e-5, atol=1e-5)


def test_int8_runs_the_depthwise_kernel_and_is_as_close_to_float_as_the_pool(tmp_path):
    """3x3 same-padded pool: ORT's INT8 graph has no QLinearAveragePool, and on samples the
    calibration never saw its outputs are no farther from float than the INT8 pool's (measured:
    36.5 dB the pool, 37.8 dB the depthwise form)."""
    import onnx

    original, rewritten = tmp_path / "original.onnx", tmp_path / "rewritten.onnx"
    _graph(original, [3, 3], [1, 1], [1, 1, 1, 1])
    _graph(rewritten, [3, 3], [1, 1], [1, 1, 1, 1])
    average_pool_to_depthwise(rewritten)
    data = np.random.default_rng(5).normal(0, 1, (96, 8, 15, 15)).astype(np.float32)
    calibration, unseen = data[:48], data[48:]
    for path in (original, rewritten):
        _quantize(path, tmp_path / f"{path.stem}_int8.onnx", calibration)
    want = _run(original, unseen)
    got = {p.stem: _run(tmp_path / f"{p.stem}_int8.onnx", unseen, tmp_path / f"{p.stem}_opt.onnx")
           for p in (original, rewritten)}
    kernels = {stem: [n.op_type for n in onnx.load(str(tmp_path / f"{stem}_opt.onnx")).graph.node] for stem in got}
    assert "QLinearAveragePool" in kernels["original"]
    assert "QLinearAveragePool" not in kernels["rewritten"] and kernels["rewritten"].count("QLinearConv") == 3
    assert sqnr(want, got["rewritten"]) >= sqnr(want, got["original"]) - 0.25


def test_a_pool_it_cannot_match_is_left_alone(tmp_path):
    import onnx
    from onnx import helper

    path = tmp_path / "ceil.onnx"
    _graph(path, [3, 3], [2, 2], [0, 0, 0, 0])
    model = onnx.load(str(path))
    model.graph.node[2].attribute.append(helper.make_attribute("ceil_mode", 1))
    onnx.save(model, str(path))
    before = path.read_bytes()
    assert average_pool_to_depthwise(path) == [] and path.read_bytes() == before


def test_the_summary_counts_the_int8_graph_rewrites():
    from edgeact.report.records import FormatReport
    from edgeact.report.render import render_format_section

    section = FormatReport("onnx", files={"int8": "m_int8.onnx"}, details={"rewrites": {
        "ReduceMean -> GlobalAveragePool": [], "AveragePool -> depthwise Conv": ["p1", "p2"]}})
    text = render_format_section("onnx", section)
    assert "int8 graph rewrites: AveragePool -> depthwise Conv x2" in text and "ReduceMean" not in text
