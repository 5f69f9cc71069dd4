"""`profile --plot`: the accuracy-latency chart puts known points where they belong, at a known size."""
from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the plot extra (edgeact[plot]) is part of the dev install")

from edgeact.profile.plot import (
    ACCURACY_DPI,
    ACCURACY_FIGSIZE,
    FLOAT_STYLE,
    INT8_STYLE,
    REFERENCE_STYLE,
    AccuracyPoint,
    accuracy_figure,
    accuracy_points,
    plot_accuracy_vs_latency,
)

from .profile_fixtures import demo_rows, make_report, make_row  # noqa: E402

EXPECTED_PIXELS = (round(ACCURACY_FIGSIZE[0] * ACCURACY_DPI), round(ACCURACY_FIGSIZE[1] * ACCURACY_DPI))


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def rgb(name: str) -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.array(to_rgb(name))


def test_known_points_land_on_their_pixels(tmp_path):
    import matplotlib.image
    import matplotlib.pyplot as plt

    points = [AccuracyPoint("a_int8 on litert", 0.5, 0.90), AccuracyPoint("b_int8 on onnxruntime", 2.0, 0.95),
              AccuracyPoint("c_fp32 on litert", 8.0, 0.97, is_float=True)]
    fig, axes = accuracy_figure(points, "top-1 accuracy (%)", reference=0.98)
    fig.set_dpi(ACCURACY_DPI)
    path = tmp_path / "accuracy.png"
    fig.savefig(path, dpi=ACCURACY_DPI)  # lays the figure out; the transforms below are the saved ones
    image = matplotlib.image.imread(path)[..., :3]
    assert png_size(path) == EXPECTED_PIXELS == (image.shape[1], image.shape[0])

    def pixel(x: float, y_percent: float) -> np.ndarray:
        px, py = axes.transData.transform((x, y_percent))
        return image[int(round(image.shape[0] - py)), int(round(px))]

    for point in points:
        style = FLOAT_STYLE if point.is_float else INT8_STYLE
        assert np.allclose(pixel(point.latency_ms, 100 * point.accuracy), rgb(style["color"]), atol=0.03), point
    along = np.geomspace(*axes.get_xlim(), 200)[1:-1]  # the legend may cover part of the line
    red = [np.allclose(pixel(x, 98.0), rgb(REFERENCE_STYLE["color"]), atol=0.1) for x in along]
    assert 0.2 < np.mean(red) < 0.9  # the reference: a dashed line at 98 %
    assert np.allclose(pixel(0.55, 93.0), 1.0, atol=0.02)  # nothing drawn where no point is: white
    # log latency axis: equal ratios are equal distances
    x = [axes.transData.transform((p.latency_ms, 90))[0] for p in points]
    assert x[1] - x[0] == pytest.approx(x[2] - x[1], abs=0.5)
    plt.close(fig)  # after the transforms: closing resets the figure's dpi


def test_points_come_from_the_report_and_the_file_has_the_expected_size(tmp_path):
    rows = demo_rows()
    report = make_report(rows, reference_top1=0.994)
    points, axis, reference = accuracy_points(report)
    assert [(p.latency_ms, p.accuracy, p.is_float) for p in points] == [
        (r.latency_ms.p50, r.accuracy.top1, "fp32" in r.name) for r in rows]
    assert "top-1 accuracy" in axis and reference == 0.994
    written = plot_accuracy_vs_latency(report, tmp_path / "profile.png")
    assert written == tmp_path / "profile_accuracy.png" and png_size(written) == EXPECTED_PIXELS


def test_without_labels_agreement_is_plotted_and_without_either_nothing():
    rows = [make_row("m_int8.tflite", 1.0, agree=0.97), make_row("m_fp32.tflite", 2.0, agree=1.0)]
    points, axis, reference = accuracy_points(make_report(rows))
    assert [p.accuracy for p in points] == [0.97, 1.0] and "agreement" in axis and reference == 1.0
    assert accuracy_points(make_report([make_row("m_int8.tflite", 1.0)]))[0] == []
    assert plot_accuracy_vs_latency(make_report([make_row("m_int8.tflite", 1.0)]), "unused.png") is None
