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
