"""Real data: the example MNIST CNN converts to INT8 TFLite and ONNX and keeps its accuracy
on the 10,000 MNIST test images (at most 0.5 percentage points lost versus float)."""
from __future__ import annotations

import numpy as np
import pytest

from converters import ConvertOptions, convert
from edgeact.config import Format
from edgeact.data.preprocess import make_preprocessing
from edgeact.runtime import open_runner
from tests.helpers import only

from .conftest import EXAMPLE_CALIBRATION, EXAMPLE_MODEL

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.fixture(scope="module")
def mnist_converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist")
    report = convert(EXAMPLE_MODEL, EXAMPLE_CALIBRATION, out, ConvertOptions(
        formats=(Format.TFLITE, Format.ONNX), preprocessing=make_preprocessing("unit"), progress=False))
    return out, report


@pytest.fixture(scope="module")
def mnist_test(mnist):
    (_, _), (x_test, y_test) = mnist
    return make_preprocessing("unit").apply(x_test[..., None]), np.asarray(y_test)


@pytest.fixture(scope="module")
def float_accuracy(mnist_test, keras):
    x, y = mnist_test
    model = keras.models.load_model(EXAMPLE_MODEL)
    return float(np.mean(model.predict(x, verbose=0, batch_size=500).argmax(1) == y))


def test_report_proves_fusion(mnist_converted):
    _, report = mnist_converted
    assert report.checks_passed
    passes = {p["name"]: p for p in report.passes}
    assert len(passes["fold_batchnorm"]["changed"]) == 6
    assert len(passes["fuse_activation"]["changed"]) == 6
    assert report.formats["tflite"].details["fusion"]["int8"]["fused_total"] == 6
    assert report.formats["onnx"].details["integer_kernels"]["passed"]


@pytest.mark.parametrize("name", ["mnist_cnn_int8.tflite", "mnist_cnn_int8.onnx"])
def test_int8_loses_at_most_half_a_point(mnist_converted, mnist_test, float_accuracy, name):
    out, _ = mnist_converted
    x, y = mnist_test
    assert len(y) == 10_000
    int8_accuracy = float(np.mean(only(open_runner(out / name).predict(x)).argmax(1) == y))
    print(f"{name}: float {float_accuracy:.4f}, int8 {int8_accuracy:.4f}")
    assert float_accuracy > 0.98
    assert float_accuracy - int8_accuracy <= 0.005


def test_the_onnx_steps_the_judge_kept_gain_on_the_10000_test_images(mnist_converted, mnist_test, keras,
                                                                      tmp_path):
    """The default ONNX keeps per-tensor ranges (converters.onnx.ranges) on top of its weight step,
    judged on 100 calibration samples; on the 10,000 test images, which neither saw, the file is
    closer to float than edgeact's INT8 without the steps (measured 36.8 -> 41.0 dB on 3,000 of them)."""
    from converters.rounding.ranges import PER_TENSOR
    from edgeact.config import Int8Steps

    out, report = mnist_converted
    assert report.formats["onnx"].details["activation_ranges"]["kept"] == PER_TENSOR
    plain = convert(EXAMPLE_MODEL, EXAMPLE_CALIBRATION, tmp_path, ConvertOptions(
        formats=(Format.ONNX,), preprocessing=make_preprocessing("unit"), progress=False,
        int8_steps=Int8Steps.NONE, layer_error="never"))
    assert plain.formats["onnx"].details.get("activation_ranges") is None
    x, _ = mnist_test
    want = np.asarray(keras.models.load_model(EXAMPLE_MODEL).predict(x, verbose=0, batch_size=500), np.float64)

    def sqnr(path):
        got = np.asarray(only(open_runner(path).predict(x)), np.float64)
        return 10 * np.log10(np.sum(want ** 2) / np.sum((got - want) ** 2))

    # what each step cost is in its record and on one summary line, which a run without steps lacks
    from edgeact.report.render import render_convert_report

    text = " ".join(render_convert_report(report, width=1000).split())
    for fmt in ("tflite", "onnx"):
        details = report.formats[fmt].details
        parts = [details[k]["seconds"] for k in ("weight_rounding", "activation_ranges", "equalization")
                 if (details.get(k) or {}).get("seconds") is not None]
        assert len(parts) == 3, fmt
        assert f"{fmt} {sum(parts):.2f} s" in text or f"{fmt} {sum(parts):.1f} s" in text, fmt
    assert "time the steps took" in text
    assert "time the steps took" not in render_convert_report(plain, width=1000)
    kept, without = sqnr(out / "mnist_cnn_int8.onnx"), sqnr(tmp_path / "mnist_cnn_int8.onnx")
    print(f"onnx int8 SQNR on the test images: {without:.2f} dB without the steps, {kept:.2f} dB as kept")
    assert kept > without + 2.0


def test_the_equalization_the_judge_refused_would_have_lost_on_the_test_images(mnist_converted, mnist_test,
                                                                               keras, tmp_path):
    """The bundled CNN has conv -> ReLU -> conv pairs, and convert's judge refuses equalizing them in
    both formats. Rebuilt here by hand (the default passes, then the equalize pass, converted without
    steps), the equalized INT8 models are further from float on the 10,000 test images than the
    files convert kept: the refusal was right on data the judge never saw."""
    from converters.passes.pipeline import DEFAULT_PIPELINE, run_pipeline
    from converters.rounding.equalization import EQUALIZATION
    from edgeact.config import Int8Steps

    out, report = mnist_converted
    for fmt in ("tflite", "onnx"):
        step = report.formats[fmt].details["equalization"]
        assert step["kept"] == "none" and step["layers"] >= 2 and step["gain_db"][EQUALIZATION], fmt
    model = keras.models.load_model(EXAMPLE_MODEL)
    equalized, results = run_pipeline(model, [*DEFAULT_PIPELINE, "equalize"])
    assert results[-1].changed  # the pairs the judge was offered
    convert(equalized, EXAMPLE_CALIBRATION, tmp_path, ConvertOptions(
        formats=(Format.TFLITE, Format.ONNX), preprocessing=make_preprocessing("unit"), progress=False,
        int8_steps=Int8Steps.NONE, layer_error="never", name="equalized"))
    x, _ = mnist_test
    want = np.asarray(model.predict(x, verbose=0, batch_size=500), np.float64)

    def sqnr(path):
        got = np.asarray(only(open_runner(path).predict(x)), np.float64)
        return 10 * np.log10(np.sum(want ** 2) / np.sum((got - want) ** 2))

    for suffix in ("tflite", "onnx"):
        kept, rebuilt = sqnr(out / f"mnist_cnn_int8.{suffix}"), sqnr(tmp_path / f"equalized_int8.{suffix}")
        print(f"{suffix}: kept {kept:.2f} dB, equalized {rebuilt:.2f} dB on the test images")
        assert rebuilt < kept, suffix
