"""Per-layer error in every convert report: what a passing conversion stores and prints, checked
against numbers recomputed here from the written files, and the float32 accumulator against float64.

The reference numbers are computed without converters.layer_error.measure: LiteRT's interpreter with
preserved intermediates and float64 numpy for TFLite, and for ONNX the written INT8 model cut
at the tensor and run by ONNX Runtime's integer kernels.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from converters.layer_error.measure import REPORT_SAMPLES, ErrorAccumulator, QuantGrid, sqnr_db
from edgeact.cli import cli


def _sqnr(reference, approximation) -> float:
    reference = np.asarray(reference, np.float64)
    noise = reference - np.asarray(approximation, np.float64)
    return float(10 * np.log10(np.sum(reference ** 2) / np.sum(noise ** 2)))


def _calibration_samples(pixels_npy, samples: int, holdout: int) -> np.ndarray:
    """The samples convert calibrated on (its reader shuffles with the seed), preprocessed 'unit'."""
    from calibration import read_calibration
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.data.samples import ModelInput

    calib = read_calibration(pixels_npy, ModelInput("image", (16, 16, 3)), make_preprocessing("unit"),
                             samples, holdout, seed=0)
    return calib.calibration.array()


def _tflite_tensors(path, samples: np.ndarray, name: str) -> tuple[np.ndarray, dict]:
    """The named tensor on each sample (dequantized when integer) and its quantization parameters."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    detail = next(d for d in interpreter.get_tensor_details() if d["name"] == name)
    values = []
    for sample in samples:
        x = sample[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale) + zero, -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        value = interpreter.get_tensor(detail["index"]).astype(np.float64)
        if detail["dtype"] != np.float32:
            scale, zero = detail["quantization"]
            value = (value - zero) * scale
        values.append(value)
    return np.stack(values), detail


@pytest.fixture(scope="module")
def passing(small_cnn_file, pixels_npy, tmp_path_factory):
    """A plain successful convert, both formats, default options."""
    out = tmp_path_factory.mktemp("passing")
    result = CliRunner().invoke(cli, ["convert", str(small_cnn_file), "-c", str(pixels_npy), "-o", str(out),
                                      "-f", "tflite", "-f", "onnx", "--samples", "40", "--holdout", "10"])
    assert result.exit_code == 0, result.output
    return out, result, json.loads((out / "small_cnn.edgeact.json").read_text())


def test_a_passing_convert_stores_every_column_of_both_formats(passing):
    _, _, report = passing
    assert report["checks_passed"] is True
    section = report["layer_errors"]
    assert section["samples"] == REPORT_SAMPLES
    assert section["columns"] == ["sqnr_db", "own_sqnr_db", "rounding_sqnr_db"]
    rows = section["layers"]
    assert {r["format"] for r in rows} == {"tflite", "onnx"}
    for fmt in ("tflite", "onnx"):
        mine = [r for r in rows if r["format"] == fmt]
        assert [r["depth"] for r in mine] == list(range(len(mine)))
        first_conv = mine[0]["layer"]  # the layer names come from the file: Keras numbers auto-named ones per process
        assert first_conv.startswith("conv2d"), first_conv
        assert any(r["own_sqnr_db"] is not None for r in mine if r["layer"] == first_conv), fmt
        assert all(-100 <= r["sqnr_db"] <= 100 and r["scale"] > 0 for r in mine)


def test_tflite_rows_equal_a_recomputation_from_the_written_files(passing, pixels_npy):
    out, _, report = passing
    samples = _calibration_samples(pixels_npy, 40, 10)[:REPORT_SAMPLES]
    rows = [r for r in report["layer_errors"]["layers"] if r["format"] == "tflite"]
    assert len(rows) >= 5
    for row in rows:  # every quantized tensor
        reference, _ = _tflite_tensors(out / "small_cnn_fp32.tflite", samples, row["tensor"])
        approximation, detail = _tflite_tensors(out / "small_cnn_int8.tflite", samples, row["tensor"])
        assert row["sqnr_db"] == pytest.approx(_sqnr(reference, approximation), abs=0.01), row["tensor"]
        scale, zero = detail["quantization"]
        rounded = (np.clip(np.round(reference / scale) + zero, -128, 127) - zero) * scale
        assert row["rounding_sqnr_db"] == pytest.approx(_sqnr(reference, rounded), abs=0.01), row["tensor"]
        assert row["float_min"] == pytest.approx(reference.min(), abs=1e-5)
        assert row["float_max"] == pytest.approx(reference.max(), abs=1e-5)


def test_an_onnx_row_equals_the_int8_model_cut_at_its_tensor(passing, pixels_npy, tmp_path):
    import onnx.utils
    import onnxruntime as ort

    out, _, report = passing
    samples = _calibration_samples(pixels_npy, 40, 10)[:REPORT_SAMPLES]
    row = next(r for r in report["layer_errors"]["layers"] if r["format"] == "onnx" and r["op"] == "Conv")
    float_cut, int8_cut = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    name = onnx.load(str(out / "small_cnn_fp32.onnx")).graph.input[0].name
    onnx.utils.extract_model(str(out / "small_cnn_fp32.onnx"), str(float_cut), [name], [row["tensor"]])
    onnx.utils.extract_model(str(out / "small_cnn_int8.onnx"), str(int8_cut), [name],
                             [f"{row['tensor']}_DequantizeLinear_Output"])
    reference = ort.InferenceSession(str(float_cut), providers=["CPUExecutionProvider"]).run(None, {name: samples})[0]
    integer = ort.InferenceSession(str(int8_cut), providers=["CPUExecutionProvider"]).run(None, {name: samples})[0]
    # The report runs ORT's QDQ simulation; the integer kernels round a step differently here and there.
    assert row["sqnr_db"] == pytest.approx(_sqnr(reference, integer), abs=0.5)


def test_a_passing_convert_prints_one_line_per_format(passing):
    _, result, report = passing
    text = result.stdout
    assert "where INT8 loses" not in text  # the tables are for failed checks
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("per-layer INT8 error"))
    section = lines[start + 1:start + 3]
    assert [line.split(":")[0].strip() for line in section] == ["tflite", "onnx"]
    for fmt, line in zip(("tflite", "onnx"), section):
        rows = [r for r in report["layer_errors"]["layers"] if r["format"] == fmt]
        worst = min(rows, key=lambda r: r["sqnr_db"])
        assert f"lowest {worst['sqnr_db']:.1f} dB at {worst['layer'] or worst['tensor']}" in line
        own = min((r for r in rows if r["own_sqnr_db"] is not None), key=lambda r: r["own_sqnr_db"])
        assert f"lowest own {own['own_sqnr_db']:.1f} dB" in line
        assert f"({len(rows)} tensors)" in line


@pytest.mark.parametrize("width", [80, 100, 160])
def test_the_passing_summary_fits_the_width(passing, width):
    from edgeact.report.render import render_convert_report

    _, _, report = passing
    text = render_convert_report(report, width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "per-layer INT8 error" in text


@pytest.mark.parametrize("mode", ["never", "auto"])
def test_never_and_auto_leave_a_passing_conversion_without_it(small_cnn_file, pixels_npy, tmp_path, mode):
    """auto measures only when an INT8 check fails (tests/test_verdicts.py has a failing one)."""
    result = CliRunner().invoke(cli, ["convert", str(small_cnn_file), "-c", str(pixels_npy), "-o", str(tmp_path),
                                      "--samples", "40", "--holdout", "10", "--layer-error", mode])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "small_cnn.edgeact.json").read_text())["layer_errors"] is None
    assert "per-layer INT8 error" not in result.stdout


def test_float32_accumulator_agrees_with_float64():
    """The accumulator runs in float32 for speed; on a million values with outliers it must agree
    with a float64 recomputation to 1e-3 dB, and count the same clipped values."""
    rng = np.random.default_rng(7)
    reference = rng.standard_normal((4, 250_000)) * 2.0
    reference[0, :100] = 40.0  # beyond the grid: clipped
    approximation = reference + rng.standard_normal(reference.shape) * 0.05
    grid = QuantGrid(0.05, 3)
    acc = ErrorAccumulator()
    for ref, approx in zip(reference, approximation):
        acc.add(ref.astype(np.float32), approx.astype(np.float32), grid)
    ref32 = reference.astype(np.float32).astype(np.float64)  # what the runtime hands over
    approx32 = approximation.astype(np.float32).astype(np.float64)
    assert sqnr_db(acc.signal, acc.noise) == pytest.approx(_sqnr(ref32, approx32), abs=1e-3)
    rounded = (np.clip(np.round(ref32 / 0.05) + 3, -128, 127) - 3) * 0.05
    assert sqnr_db(acc.signal, acc.rounding_noise) == pytest.approx(_sqnr(ref32, rounded), abs=1e-3)
    low, high = 0.05 * (-128 - 3), 0.05 * (127 - 3)
    assert acc.clipped == int(np.sum((ref32 < low - 0.025) | (ref32 > high + 0.025)))
    assert acc.clipped >= 100
    assert (acc.low, acc.high) == (pytest.approx(ref32.min()), pytest.approx(ref32.max()))


def test_accumulator_degenerate_tensors():
    acc = ErrorAccumulator()
    acc.add(np.zeros(10, np.float32), np.zeros(10, np.float32), QuantGrid(0.1, 0))
    assert sqnr_db(acc.signal, acc.noise) == 100.0 and acc.clipped == 0  # nothing to lose, nothing lost
    acc.add(np.zeros(0, np.float32), np.zeros(0, np.float32), QuantGrid(0.1, 0))  # an empty tensor adds nothing
    assert acc.count == 10
    dead = ErrorAccumulator()
    dead.add(np.zeros(4, np.float32), np.ones(4, np.float32))
    assert sqnr_db(dead.signal, dead.noise) == -100.0  # INT8 brings a dead tensor to life
    flat = ErrorAccumulator()
    flat.add(np.full(8, np.nan, np.float32), np.zeros(8, np.float32))
    assert np.isnan(flat.signal)  # NaN is not hidden as a perfect score


def test_a_report_without_the_own_column_says_so(passing):
    """A SavedModel input has no Keras layers: the report's columns and the summary say own is missing;
    a version 1 section (no `columns`) reads as measured where its rows have an own SQNR."""
    from edgeact.report.layer_errors import LayerErrorReport, render_layer_summary

    _, _, report = passing
    section = dict(report["layer_errors"])
    old = LayerErrorReport.from_dict({k: v for k, v in section.items() if k != "columns"})
    assert old.columns == ["sqnr_db", "own_sqnr_db", "rounding_sqnr_db"]
    without = {**section, "columns": ["sqnr_db", "rounding_sqnr_db"],
               "layers": [{**row, "own_sqnr_db": None} for row in section["layers"]]}
    assert LayerErrorReport.from_dict({k: v for k, v in without.items() if k != "columns"}).columns == \
        ["sqnr_db", "rounding_sqnr_db"]
    text = render_layer_summary(LayerErrorReport.from_dict(without))
    assert text.count("own not measured (no Keras model)") == 2  # one line per format
    assert "lowest own" not in text


def test_own_error_passes_through_operations_written_as_arithmetic(tmp_path):
    """MobileNetV3's hard-sigmoid is `ReLU6(x + 3.0) * (1 / 6)`: `x + 3.0` is a Keras Operation
    with no weights, and the own column stopped with "'Add' object has no attribute
    'get_weights'", leaving the whole per-layer section out of the report."""
    import keras

    from converters import ConvertOptions, convert
    from edgeact.config import Format

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = x * (keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0))  # hard-swish, as keras.applications writes it
    x = keras.layers.Conv2D(8, 1, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="scores")(x))
    calibration = np.random.default_rng(0).uniform(0, 1, (60, 12, 12, 3)).astype(np.float32)
    report = convert(model, calibration, tmp_path / "out", ConvertOptions(
        formats=(Format.TFLITE,), passes=(), layer_error="always"))
    assert not [n for n in report.notes if "per-layer" in n], report.notes
    rows = {r["layer"]: r for r in report.layer_errors["layers"]}
    assert rows["conv"]["own_sqnr_db"] is not None  # fed by the model input
    # conv2 reads the product of two tensors: no single chain to re-run, so accumulated error only
    assert rows["conv2"]["sqnr_db"] is not None and rows["conv2"]["own_sqnr_db"] is None
