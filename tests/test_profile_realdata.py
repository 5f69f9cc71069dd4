"""The MNIST example model, converted and profiled on the full MNIST test set (10,000 images)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import EXAMPLE_CALIBRATION, EXAMPLE_MODEL, EXAMPLE_TEST_IMAGES

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


@pytest.fixture(scope="module")
def mnist_models(tmp_path_factory):
    from converters import ConvertOptions, convert
    from edgeact.config import Format

    if not EXAMPLE_MODEL.exists():
        pytest.fail(f"{EXAMPLE_MODEL} is missing; run python examples/mnist/train.py")
    out = tmp_path_factory.mktemp("mnist")
    convert(EXAMPLE_MODEL, EXAMPLE_CALIBRATION, out,
            ConvertOptions(formats=(Format.TFLITE, Format.ONNX), samples=300, holdout=100, progress=False))
    return out


@pytest.fixture(scope="module")
def mnist_test_npz(mnist, tmp_path_factory):
    """The MNIST test split as uint8 pixels (N, 28, 28): the profile adds the channel axis."""
    _, (x, y) = mnist
    path = tmp_path_factory.mktemp("mnist_data") / "mnist_test.npz"
    np.savez(path, x=x, y=y)
    return path


def test_int8_top1_within_half_a_point_of_float_on_10000_images(mnist_models, mnist_test_npz):
    from edgeact.profile.session import ProfileOptions, profile_models

    models = [mnist_models / "mnist_cnn_int8.tflite", mnist_models / "mnist_cnn_fp32.tflite",
              mnist_models / "mnist_cnn_int8.onnx"]
    report = profile_models(models, ProfileOptions(data=mnist_test_npz, reference=EXAMPLE_MODEL, runs=50,
                                                   warmup=5, threads=2, progress=False))
    rows = {r.name: r for r in report.models}
    float_top1 = rows["mnist_cnn_fp32.tflite"].accuracy.top1
    assert report.data.samples == 10000
    assert float_top1 > 0.98, "the example model is trained"
    assert rows["mnist_cnn_fp32.tflite"].reference.max_abs_diff < 1e-4  # the float export is the Keras model
    for name in ("mnist_cnn_int8.tflite", "mnist_cnn_int8.onnx"):
        row = rows[name]
        assert row.accuracy.samples == 10000
        assert row.accuracy.top1 >= float_top1 - 0.005, (name, row.accuracy, float_top1)
        assert row.reference.top1_agreement > 0.99 and row.reference.cosine > 0.99


def test_example_image_folder_profiles_from_the_command_line(mnist_models, tmp_path):
    from click.testing import CliRunner

    from edgeact.cli import cli

    result = CliRunner().invoke(cli, ["profile", str(mnist_models / "mnist_cnn_int8.tflite"),
                                      "--data", str(EXAMPLE_TEST_IMAGES), "--runs", "20",
                                      "--markdown", str(tmp_path / "mnist.md")])
    assert result.exit_code == 0, result.output
    assert "10 classes" in result.stdout and "mnist_cnn_int8.tflite" in result.stdout
    assert "| mnist_cnn_int8.tflite |" in (tmp_path / "mnist.md").read_text()
