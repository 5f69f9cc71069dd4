"""Per-tensor activation ranges in the default INT8 ONNX (converters.onnx.ranges, judged in
converters.onnx.exporter._judged_ranges).

ORT's MinMax calibration keeps only each tensor's min and max; edgeact runs the float model once
more for a random subset of each cached tensor's values, chooses ranges on them
(converters.rounding.ranges) and hands them to quantize_static through a copy of ORT's range cache.
Checked here on a graph small enough to recompute in numpy: which tensors are sampled, that their
ends are ORT's min/max and equal the recomputed ones, and that the quantized file carries the
written range as its scale (read back) with min/max everywhere else. The effect on held-out data is
checked on the MNIST example (tests/test_mnist_realdata.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters.onnx.ranges import cache_ranges, sample_values, write_cache
from converters.rounding.ranges import VALUES_PER_SAMPLE


def _graph(path):
    """x (1, 3, 6, 6) -> 1x1 Conv (y) -> y * y * y (cube) -> 1x1 Conv (z): a long-tailed cube that
    numpy recomputes exactly enough."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    w1 = rng.normal(0, 0.5, (4, 3, 1, 1)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (2, 4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["y"], name="c1"),
             helper.make_node("Mul", ["y", "y"], ["square"], name="m1"),
             helper.make_node("Mul", ["square", "y"], ["cube"], name="m2"),
             helper.make_node("Conv", ["cube", "w2"], ["z"], name="c2")]
    graph = helper.make_graph(nodes, "cubed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 16, 16])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save(model, str(path))
    return w1, w2


class _Reader:
    def __init__(self, samples):
        self.samples, self.position = samples, 0

    def get_next(self):
        if self.position >= len(self.samples):
            return None
        self.position += 1
        return {"x": self.samples[self.position - 1][None]}

    def rewind(self):
        self.position = 0


@pytest.fixture(scope="module")
def cubed(tmp_path_factory):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    folder = tmp_path_factory.mktemp("onnx-ranges")
    model = folder / "cubed.onnx"
    w1, w2 = _graph(model)
    samples = np.random.default_rng(6).normal(0, 1, (60, 3, 16, 16)).astype(np.float32)
    settings = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    cache = folder / "ranges.json"
    quantize_static(str(model), str(folder / "minmax.onnx"), _Reader(samples), calibration_cache_path=cache,
                    **settings)
    y = np.einsum("oc,nchw->nohw", w1[:, :, 0, 0], samples.astype(np.float64))
    return {"folder": folder, "model": model, "cache": cache, "samples": samples, "settings": settings,
            "recomputed": {"y": y, "square": y * y, "cube": y ** 3}}


def test_values_are_sampled_from_every_cached_tensor_but_the_graphs_inputs_and_outputs(cubed):
    values = sample_values(cubed["model"], cubed["cache"], _Reader(cubed["samples"]))
    cached = cache_ranges(cubed["cache"])
    assert {"x", "z"} <= set(cached)  # ORT calibrates them too; they keep min/max
    assert set(values) == {"y", "square", "cube"} == set(values.ends)
    for name, v in values.items():
        assert v.size == len(cubed["samples"]) * VALUES_PER_SAMPLE
        want = cubed["recomputed"][name]
        assert values.ends[name] == cached[name]
        assert values.ends[name] == pytest.approx((want.min(), want.max()), rel=1e-4)
        low, high = values.ends[name]
        assert low <= v.min() and v.max() <= high
    # the same samples again give the same subset: the range chosen does not depend on the run
    again = sample_values(cubed["model"], cubed["cache"], _Reader(cubed["samples"]))
    assert all(np.array_equal(values[n], again[n]) for n in values)


def _activation_scales(path) -> dict[str, float]:
    """{tensor: scale} of each QuantizeLinear on an activation, read back from the file."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: float(init[n.input[1]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in init}


def test_the_written_cache_sets_the_files_scales_and_leaves_the_others_at_min_max(cubed):
    from onnxruntime.quantization import quantize_static

    cached = cache_ranges(cubed["cache"])
    low, high = cached["cube"]
    shrunk = {"cube": (low / 2, high / 2)}  # what shrunk_ranges would hand over, made plain
    target = cubed["folder"] / "shrunk.json"
    write_cache(cubed["cache"], shrunk, target)
    assert json.loads(target.read_text())["calibration_method"] == json.loads(cubed["cache"].read_text())[
        "calibration_method"]
    out = cubed["folder"] / "shrunk.onnx"
    quantize_static(str(cubed["model"]), str(out), None, calibration_cache_path=target, **cubed["settings"])
    scales, minmax = _activation_scales(out), _activation_scales(cubed["folder"] / "minmax.onnx")
    for name, (low, high) in cached.items():
        if name not in minmax:
            continue
        low, high = shrunk.get(name, (low, high))
        want = (max(high, 0.0) - min(low, 0.0)) / 255  # uint8 asymmetric: the range over 255 steps
        assert scales[name] == pytest.approx(want, rel=1e-5), name
    cube = cubed["recomputed"]["cube"]
    recomputed = (cube.max() - min(cube.min(), 0)) / 255
    assert minmax["cube"] == pytest.approx(recomputed, rel=1e-4)  # ORT's own min/max grid
    assert scales["cube"] == pytest.approx(recomputed / 2, rel=1e-4)  # the written grid, where the step put it



def test_an_equalization_not_placed_in_full_is_not_tried_and_the_report_says_which_kernel(cubed, tmp_path):
    """Half an equalized pair computes another function: when one changed kernel is not in the .onnx
    (here c2's new kernel refers to a kernel the graph does not hold), the exporter builds and judges
    nothing, leaves the file alone, and names the kernel."""
    import shutil
    from types import SimpleNamespace

    import onnx
    from onnx import numpy_helper

    from converters.onnx.exporter import _judged_equalization
    from converters.rounding.layers import KernelChange

    graph = onnx.load(str(cubed["model"])).graph
    w1 = next(numpy_helper.to_array(i) for i in graph.initializer if i.name == "w1")
    keras_w1 = w1.transpose(2, 3, 1, 0)  # OIHW -> Keras HWIO
    stranger = np.full((1, 1, 4, 2), 0.123, np.float32)  # no initializer holds this
    changes = [KernelChange("c1", keras_w1, keras_w1 * 2), KernelChange("c2", stranger, stranger / 2)]
    prepared = tmp_path / "prepared.onnx"
    shutil.copyfile(cubed["model"], prepared)
    int8 = tmp_path / "kept_int8.onnx"
    shutil.copyfile(cubed["folder"] / "minmax.onnx", int8)
    before = int8.read_bytes()

    def refuse(*args, **kwargs):
        raise AssertionError("nothing is quantized when the change cannot be placed in full")

    job = SimpleNamespace(equalization=changes)
    verdict = _judged_equalization(job, prepared, int8, reader=None, quantize_static=refuse, settings={},
                                   run=refuse)
    assert verdict["kept"] == "none" and verdict["layers"] == 2
    assert "c2" in verdict["why"] and "c1" not in verdict["why"]
    assert int8.read_bytes() == before


def test_ranges_the_onnx_judge_refuses_lose_on_samples_no_step_saw_and_leave_the_file_as_it_was(keras, tmp_path):
    """The ONNX twin of tests/test_activation_ranges.py's refusal: a conv whose output is cubed (a long
    tail the next layer reads). The ranges chosen by their own rounding + clipping error shrink the
    cube's; the judge must refuse them, the file must give the min/max file's outputs, and the step
    forced (`--int8-steps all`, which forces the weight step too) must lose on samples that neither
    calibration nor the judge saw. Measured: judge 35.9 -> 32.1 dB; unseen 35.2 dB kept, 31.9 forced."""
    import onnxruntime as ort

    from converters import ConvertOptions, convert
    from edgeact.config import Format, Int8Steps
    from tests.helpers import cubed_cnn, sqnr

    model, data = cubed_cnn(keras)
    np.save(tmp_path / "calibration.npy", data[:300])
    unseen = data[300:]
    want = model.predict(unseen, verbose=0)
    outputs, reports = {}, {}
    for steps in (Int8Steps.AUTO, Int8Steps.ALL, Int8Steps.NONE):
        reports[steps] = convert(model, str(tmp_path / "calibration.npy"), tmp_path / steps.value, ConvertOptions(
            formats=(Format.ONNX,), int8_steps=steps, name="cubed", progress=False, force=True, layer_error="never"))
        session = ort.InferenceSession(str(tmp_path / steps.value / "cubed_int8.onnx"),
                                       providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        outputs[steps] = np.concatenate([session.run(None, {name: s[None]})[0] for s in unseen])
    step = reports[Int8Steps.AUTO].formats["onnx"].details["activation_ranges"]
    assert step["kept"] == "none" and step["shrunk"] >= 1 and step["samples"] > 0
    assert step["gain_db"]["per-tensor ranges"][0] <= 0
    assert step["sqnr_db"]["per-tensor ranges"] < step["sqnr_db"]["none"]
    rounding = reports[Int8Steps.AUTO].formats["onnx"].details.get("weight_rounding") or {"kept": "none"}
    assert rounding["kept"] == "none", "this model's kernels were meant to keep round-to-nearest"
    assert np.array_equal(outputs[Int8Steps.AUTO], outputs[Int8Steps.NONE])  # refused: the min/max file
    assert sqnr(want, outputs[Int8Steps.ALL]) < sqnr(want, outputs[Int8Steps.AUTO])  # and it does lose
