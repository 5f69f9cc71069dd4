"""The runtime layer: every installed runtime runs the same model and agrees; copy-free I/O is right."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeact.errors import InputError, ModelLoadError, RuntimeUnavailableError
from edgeact.runtime import (
    Delegate,
    IOSpec,
    RuntimeName,
    check_delegate,
    dequantize,
    installed_runtimes,
    open_runner,
    quantize,
)
from tests.helpers import export_float_onnx, only

TFLITE_RUNTIMES = [r for r in (RuntimeName.LITERT, RuntimeName.TFLITE_RUNTIME, RuntimeName.TF_LITE)
                   if r in installed_runtimes()]


@pytest.fixture(scope="session")
def small_onnx(small_cnn, tmp_path_factory) -> Path:
    return export_float_onnx(small_cnn, tmp_path_factory.mktemp("onnx") / "small_cnn_fp32.onnx")


@pytest.fixture(scope="module")
def samples():
    return np.random.default_rng(5).uniform(0, 1, (12, 16, 16, 3)).astype(np.float32)


def test_every_installed_tflite_runtime_gives_the_same_int8_outputs(converted_small, samples):
    out, _ = converted_small
    assert len(TFLITE_RUNTIMES) >= 2, "CI installs ai-edge-litert and TensorFlow"
    results = {r: only(open_runner(out / "small_cnn_int8.tflite", runtime=r).predict(samples)) for r in TFLITE_RUNTIMES}
    first = results[TFLITE_RUNTIMES[0]]
    for runtime, got in results.items():
        assert np.array_equal(got, first), runtime  # same kernels, same integer arithmetic


def test_float_models_agree_across_formats_and_runtimes(converted_small, small_cnn, small_onnx, samples):
    out, _ = converted_small
    expected = small_cnn.predict(samples, verbose=0)
    runs = [open_runner(out / "small_cnn_fp32.tflite", runtime=r) for r in TFLITE_RUNTIMES]
    runs.append(open_runner(small_onnx))
    for runner in runs:
        got = only(runner.predict(samples))
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"{runner.format} {runner.runtime}")


def test_copy_free_path_matches_set_tensor_and_changes_with_each_sample(converted_small, samples):
    out, _ = converted_small
    runner = open_runner(out / "small_cnn_int8.tflite")
    prepared = runner.prepare(samples)
    fast = runner.run_prepared(prepared)[0]
    interpreter = runner.interpreter
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    slow = []
    for sample in prepared:
        interpreter.set_tensor(input_index, sample[None])
        interpreter.invoke()
        slow.append(interpreter.get_tensor(output_index)[0])
    assert np.array_equal(fast, np.stack(slow))
    assert len({row.tobytes() for row in fast}) > 1  # each step really wrote a new input


def test_litert_refuses_to_invoke_while_a_buffer_view_is_held(converted_small):
    """Why the runner keeps tensor() functions, never views: the runtime checks and raises."""
    out, _ = converted_small
    runner = open_runner(out / "small_cnn_int8.tflite", runtime=TFLITE_RUNTIMES[0])
    view = runner.interpreter.tensor(runner.interpreter.get_input_details()[0]["index"])()
    with pytest.raises(RuntimeError, match="reference to internal data"):
        runner.interpreter.invoke()
    del view
    runner.interpreter.invoke()


def test_onnx_iobinding_path_matches_session_run(small_onnx, samples):
    runner = open_runner(small_onnx)
    fast = runner.run_prepared(runner.prepare(samples))[0]
    name = runner.session.get_inputs()[0].name
    direct = np.concatenate([runner.session.run(None, {name: s[None]})[0] for s in samples])
    np.testing.assert_array_equal(fast, direct)
    assert len({row.tobytes() for row in fast}) > 1


def test_onnx_nchw_model_runs_with_transposed_inputs(small_cnn, tmp_path, samples):
    from edgeact.measure.profiler import fit_inputs

    runner = open_runner(export_float_onnx(small_cnn, tmp_path / "nchw.onnx", nchw=True))
    assert runner.inputs[0].shape == (1, 3, 16, 16)
    got = only(runner.predict(fit_inputs(samples, runner.inputs[0])))
    np.testing.assert_allclose(got, small_cnn.predict(samples, verbose=0), atol=1e-5)


def test_quantize_and_dequantize_known_values():
    spec = IOSpec("x", (1, 4), np.dtype(np.int8), scale=0.5, zero_point=-10)
    q = quantize(np.array([0.0, 1.0, -70.0, 100.0]), spec)
    assert q.tolist() == [-10, -8, -128, 127]  # 100 / 0.5 - 10 = 190 clips to 127
    assert dequantize(q, spec).tolist() == [0.0, 1.0, -59.0, 68.5]
    float_spec = IOSpec("x", (1,), np.dtype(np.float32))
    assert quantize(np.array([0.3]), float_spec).dtype == np.float32


def test_delegate_names_and_paths():
    assert check_delegate("xnnpack") == Delegate.XNNPACK.value
    assert check_delegate("/opt/lib/libarmnnDelegate.so") == "/opt/lib/libarmnnDelegate.so"
    with pytest.raises(InputError, match="unknown delegate 'gpu'"):
        check_delegate("gpu")


# ai-edge-litert's Delegate.__del__ fails on a delegate that never loaded (AttributeError: _library).
def test_edgetpu_delegate_that_cannot_load_says_what_to_install(converted_small):
    out, _ = converted_small
    with pytest.raises(RuntimeUnavailableError, match="libedgetpu1-std"):
        open_runner(out / "small_cnn_int8.tflite", delegate="edgetpu")


# ai-edge-litert's Delegate.__del__ fails on a delegate that never loaded (AttributeError: _library).
def test_missing_delegate_library_is_a_clear_error(converted_small, tmp_path):
    out, _ = converted_small
    with pytest.raises(RuntimeUnavailableError, match="cannot load delegate library"):
        open_runner(out / "small_cnn_int8.tflite", delegate=str(tmp_path / "libnothing.so"))


def test_no_delegate_runs_reference_kernels(converted_small, samples):
    out, _ = converted_small
    plain = open_runner(out / "small_cnn_int8.tflite", delegate="none")
    assert plain.delegate == "none"
    int8 = open_runner(out / "small_cnn_int8.tflite")
    np.testing.assert_allclose(only(plain.predict(samples)), only(int8.predict(samples)),
                               atol=2 * plain.outputs[0].scale)


@pytest.mark.skipif(RuntimeName.TFLITE_RUNTIME in installed_runtimes(), reason="tflite-runtime is installed")
def test_runtime_that_is_not_installed(converted_small):
    out, _ = converted_small
    with pytest.raises(RuntimeUnavailableError, match="pip install 'numpy<2' tflite-runtime"):
        open_runner(out / "small_cnn_int8.tflite", runtime="tflite-runtime")


def test_runtime_for_the_wrong_format(small_onnx, converted_small):
    out, _ = converted_small
    with pytest.raises(InputError, match="does not run .onnx"):
        open_runner(small_onnx, runtime="litert")
    with pytest.raises(InputError, match="does not run .tflite"):
        open_runner(out / "small_cnn_int8.tflite", runtime="onnxruntime")


@pytest.mark.parametrize("damage", ["truncate", "text", "flip"])
def test_damaged_tflite_is_an_error_not_a_crash(converted_small, tmp_path, damage):
    out, _ = converted_small
    data = (out / "small_cnn_int8.tflite").read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "text":
        data = b"this is not a model\n" * 10
    else:  # keep the header, break the tables behind it
        data = data[:8] + bytes(b ^ 0xFF for b in data[8:64]) + data[64:]
    path = tmp_path / "damaged.tflite"
    path.write_bytes(data)
    with pytest.raises(ModelLoadError):
        open_runner(path)


def test_damaged_onnx_is_an_error(small_onnx, tmp_path):
    path = tmp_path / "damaged.onnx"
    path.write_bytes(small_onnx.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match="(ONNX Runtime cannot load|not a valid ONNX model)"):
        open_runner(path)
