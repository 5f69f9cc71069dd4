"""Per-tensor activation ranges in the default INT8 TFLite (converters.tflite.exporter._judged_ranges).

Calibration keeps a random subset of every op output's values, with its exact ends; each tensor's
range is its min/max shrunk by the factor with the least rounding + clipping error on those
values, and the model with them is kept only where the judge samples resolve a gain. Checked here:
what calibration keeps, that the written INT8 file carries the chosen grids (read back, against
min/max recomputed from the float model), and that a shrink the judge refuses leaves the min/max
model untouched and does lose on samples neither calibration nor the judge saw.
"""
from __future__ import annotations

import numpy as np
import pytest

from converters.rounding.ranges import PER_TENSOR, VALUES_PER_SAMPLE, SampledValues, mse_ranges
from converters.tflite.calibrate import calibrate_float
from converters.tflite.ranges import calibrated_ranges
from edgeact.config import Format, Int8Steps
from tests.helpers import cubed_cnn


@pytest.fixture(scope="module")
def cubed(keras):
    """A conv whose output is cubed: a long tail (most values within +-3, the largest near 50) that
    min/max spends the INT8 grid on, and that the next layer reads."""
    return cubed_cnn(keras)


def _float(model) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _details(model_bytes: bytes) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    return {d["name"]: d for d in interpreter.get_tensor_details()}


def test_calibration_keeps_each_op_outputs_values_and_ends_but_not_the_model_outputs(cubed):
    model, data = cubed
    fp32 = _float(model)
    values = SampledValues()
    calibrated, found = calibrate_float(fp32, [{"image": s[None]} for s in data[:40]], values=values)
    names = {d["index"]: name for name, d in _details(fp32).items()}
    recorded = calibrated_ranges(calibrated)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=fp32)
    outputs = {d["index"] for d in interpreter.get_output_details()}
    inputs = {d["index"] for d in interpreter.get_input_details()}
    assert values and not set(values) & (outputs | inputs)
    # every op output but the model's is there: the recorded tensors less the inputs and outputs
    assert {names[i] for i in values} == set(recorded) - {names[i] for i in outputs | inputs}
    assert set(values.ends) == set(values)
    for index, v in values.items():
        assert v.size == 40 * VALUES_PER_SAMPLE
        low, high = values.ends[index]
        assert (low, high) == pytest.approx(recorded[names[index]], rel=1e-6, abs=1e-7)
        assert low <= float(v.min()) and float(v.max()) <= high  # a subset of the tensor's values


def _convert(model, data, tmp_path, steps: Int8Steps):
    from converters import ConvertOptions, convert

    np.save(tmp_path / "calibration.npy", data[:300])
    report = convert(model, str(tmp_path / "calibration.npy"), tmp_path / steps.value, ConvertOptions(
        formats=(Format.TFLITE,), int8_steps=steps, name="cubed", progress=False, force=True, layer_error="never"))
    return report, (tmp_path / steps.value / "cubed_int8.tflite").read_bytes()


def _cube_scale(model_bytes: bytes) -> float:
    found = [d for name, d in _details(model_bytes).items() if "cube" in name and d["dtype"] == np.int8]
    assert found, "the INT8 model has no int8 tensor named after the cube"
    return float(found[-1]["quantization"][0])


def test_the_int8_file_carries_the_shrunk_grid_and_min_max_elsewhere(cubed, tmp_path):
    model, data = cubed
    report, int8 = _convert(model, data, tmp_path, Int8Steps.ALL)
    step = report.formats["tflite"].details["activation_ranges"]
    assert step["kept"] == PER_TENSOR and step["shrunk"] >= 1
    # min/max of the cube on the samples convert calibrated on (its seeded 200 of the 300), recomputed
    # here from the Keras model: the written grid is finer than that, by the factor mse_ranges picks
    import keras

    cube = keras.Model(model.inputs, model.get_layer("cube").output).predict(data[:300], verbose=0)
    minmax_scale = (max(float(cube.max()), 0) - min(float(cube.min()), 0)) / 255
    assert _cube_scale(int8) < 0.8 * minmax_scale
    # the same on this test's own values: mse_ranges shrinks the cube's range well below its ends
    (low, high), = mse_ranges({"cube": cube.reshape(-1)[::7]}).values()
    assert (high - low) / 255 < 0.8 * minmax_scale


def test_ranges_the_judge_refuses_lose_on_samples_no_step_saw_and_leave_the_model_as_it_was(cubed, tmp_path):
    """The cube's range shrinks by its own rounding + clipping error, yet its large values are what
    the next layers read: the judge must refuse the step, and the refusal must be right on new data."""
    from ai_edge_litert.interpreter import Interpreter

    model, data = cubed
    report, auto = _convert(model, data, tmp_path, Int8Steps.AUTO)
    step = report.formats["tflite"].details["activation_ranges"]
    assert step["kept"] == "none" and step["shrunk"] >= 1
    low, high = step["gain_db"][PER_TENSOR]
    assert low <= 0 < step["samples"]
    rounding = report.formats["tflite"].details.get("weight_rounding") or {"kept": "none"}
    assert rounding["kept"] == "none", "this model's kernels were meant to keep round-to-nearest"
    _, every = _convert(model, data, tmp_path, Int8Steps.ALL)   # the step forced, unjudged
    _, minmax = _convert(model, data, tmp_path, Int8Steps.NONE)  # no step at all
    unseen = data[300:]
    want = np.asarray(model.predict(unseen, verbose=0), np.float64)

    def run(model_bytes):
        interpreter = Interpreter(model_content=model_bytes)
        interpreter.allocate_tensors()
        (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
        (s_in, z_in), (s_out, z_out) = inp["quantization"], outp["quantization"]
        rows = []
        for sample in unseen:
            interpreter.set_tensor(inp["index"], np.clip(np.round(sample[None] / s_in + z_in), -128, 127)
                                   .astype(np.int8))
            interpreter.invoke()
            rows.append((interpreter.get_tensor(outp["index"]).astype(np.float64) - z_out) * s_out)
        return np.concatenate(rows)

    def sqnr(got):
        return 10 * np.log10(np.sum(want ** 2) / np.sum((got - want) ** 2))

    kept = run(auto)
    assert np.array_equal(kept, run(minmax))  # refused: the min/max model, untouched
    assert sqnr(run(every)) < sqnr(kept)       # and the refused step does lose on samples it never saw
