"""What `profile` prints fits the terminal: 80, 100 and 160 columns, one row per metric for one or
two models, empty columns dropped, and a summary whose numbers are recomputed here."""
from __future__ import annotations

import pytest

from edgeact.errors import InputError
from edgeact.profile.render import COLUMNS, TableOptions, column_names, parse_columns, render_markdown, render_profile
from edgeact.profile.report import DeviceRecord
from edgeact.profile.summary import precision, summary_sentences
from edgeact.report.table import ELLIPSIS, layout_table, render_metrics, render_table, shorten

from .profile_fixtures import demo_rows, make_report, make_row

WIDTHS = (80, 100, 160)


def assert_fits(text: str, width: int) -> None:
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, f"{len(long)} line(s) longer than {width}: {long[0]!r}"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("count", [3, 5])
def test_profile_table_fits_the_width(width, count):
    rows = (demo_rows() + [make_row(f"resnet_variant_{i}_int8.tflite", 1.5 + i, 0.9, 0.95) for i in range(2)])[:count]
    text = render_profile(make_report(rows), TableOptions(width=width))
    assert_fits(text, width)
    header = next(line for line in text.splitlines() if line.startswith("model"))
    for needed in ("runtime", "p50", "top-1", "agree"):  # what a reader needs first is there at 80 too
        assert needed in header.split()
    for row in rows:  # one line per model, p50 as the table formats it
        assert any(line.startswith(row.name) and f"{row.latency_ms.p50:.4f}"[:5] in line
                   for line in text.splitlines()), row.name


def test_wider_terminals_show_more_columns_and_name_what_they_leave_out():
    report = make_report(demo_rows())
    headers = {}
    for width in WIDTHS:
        text = render_profile(report, TableOptions(width=width))
        headers[width] = next(line for line in text.splitlines() if line.startswith("model")).split()
    assert len(headers[80]) < len(headers[100]) <= len(headers[160])
    at_80 = render_profile(report, TableOptions(width=80))
    assert "not shown for width: p90,delegate,mean" in at_80 and "--wide" in at_80  # names --columns takes


def test_long_model_names_are_shortened_in_the_middle_and_still_fit():
    rows = [make_row("a_model_with_a_very_long_descriptive_file_name_trained_last_tuesday_int8.tflite", 1.0 + i,
                     0.9, 0.9) for i in range(3)]
    text = render_profile(make_report(rows), TableOptions(width=80))
    assert_fits(text, 80)
    assert ELLIPSIS in text and "int8.tflite" in text  # the end of a file name is kept


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("count", [1, 2])
def test_one_or_two_models_get_one_row_per_metric(width, count):
    rows = demo_rows()[:count]
    text = render_profile(make_report(rows), TableOptions(width=width))
    assert_fits(text, width)
    lines = text.splitlines()
    p50 = next(line for line in lines if line.startswith("p50 ms"))
    assert p50.split()[2:] == [f"{r.latency_ms.p50:.4f}" for r in rows]
    top1 = next(line for line in lines if line.startswith("top-1 accuracy"))
    assert top1.split()[2:] == [f"{100 * r.accuracy.top1:.2f}%" for r in rows]
    assert not any(line.startswith("model ") for line in lines)  # no row view


def test_columns_without_values_are_dropped():
    rows = [make_row("m_int8.tflite", 1.0), make_row("m_fp32.tflite", 2.0), make_row("n_int8.tflite", 3.0)]
    text = render_profile(make_report(rows), TableOptions(width=160))
    header = next(line for line in text.splitlines() if line.startswith("model")).split()
    assert "top-1" not in header and "agree" not in header and "cosine" not in header
    transposed = render_profile(make_report(rows[:1]), TableOptions(width=100))
    assert not any(line.startswith(("top-1", "cosine")) for line in transposed.splitlines())
    assert "agree" not in transposed  # nor in the legend


def test_wide_shows_every_column_with_a_value_and_columns_picks_them():
    report = make_report(demo_rows())
    wide = render_profile(report, TableOptions(width=80, wide=True))
    header = next(line for line in wide.splitlines() if line.startswith("model"))
    for column in COLUMNS:
        assert column.header in header, column.header
    picked = render_profile(report, TableOptions(width=80, columns=("model", "p99", "cosine")))
    header = next(line for line in picked.splitlines() if line.startswith("model")).split()
    assert header == ["model", "p99", "cosine"]


def test_unknown_column_names_the_valid_ones():
    assert parse_columns(" model, p50 ,top1") == ("model", "p50", "top1")
    with pytest.raises(InputError) as caught:
        parse_columns("model,latency")
    message = str(caught.value)
    assert "'latency'" in message and ",".join(column_names()) in message and "\n" not in message


def test_markdown_keeps_every_column_with_a_value():
    markdown = render_markdown(make_report(demo_rows()))
    header = next(line for line in markdown.splitlines() if line.startswith("| model"))
    assert "| p99 |" in header and "| init ms |" in header and "| max \\|diff\\| |" in header
    assert "Fastest: mnist_cnn_int8.tflite" in markdown


# --- the summary -------------------------------------------------------------------------------

def test_summary_names_the_fastest_and_what_int8_costs_against_the_reference():
    rows = demo_rows()
    sentences = summary_sentences(make_report(rows, reference_top1=0.994))
    assert 2 <= len(sentences) <= 3
    fastest = min(rows, key=lambda r: r.latency_ms.p50)
    slowest = max(rows, key=lambda r: r.latency_ms.p50)
    assert sentences[0].startswith(f"Fastest: {fastest.name} on {fastest.runtime}, p50 0.0161 ms")
    assert f"{slowest.latency_ms.p50 / fastest.latency_ms.p50:.1f}x" in sentences[0]
    # the worst INT8 row is the ONNX one: 99.20 % against the reference's 99.40 %, 1 sample of 500
    assert "INT8 costs top-1 accuracy against the float reference (keras): 99.20% vs 99.40%" in sentences[1]
    assert "-0.20 points, 1 of 500 samples" in sentences[1] and "mnist_cnn_int8.onnx" in sentences[1]
    assert "on 99.00% of samples" in sentences[1]  # the lowest agreement of the INT8 rows
    assert "without errors" in sentences[2]


def test_summary_without_reference_uses_the_float_row_and_without_labels_says_what_to_give():
    rows = demo_rows()
    for row in rows:
        row.reference = None
    text = " ".join(summary_sentences(make_report(rows)))
    assert "against the float mnist_cnn_fp32.tflite: 99.20% vs 99.40%" in text
    bare = [make_row("m_int8.tflite", 1.0), make_row("m_fp32.tflite", 2.0)]
    assert any("Give labelled --data" in s for s in summary_sentences(make_report(bare)))


def test_summary_reports_throttled_and_failed_devices():
    rows = [make_row("m_int8.tflite", 5.0, device="pi@lab-pi")]
    devices = [DeviceRecord("pi@lab-pi", throttled=True),
               DeviceRecord("pi@other", error="device pi@other: connection refused")]
    last = summary_sentences(make_report(rows, devices=devices))[-1]
    assert "1 of 2 device(s) failed: device pi@other: connection refused" in last
    assert "throttled (numbers not steady-state): pi@lab-pi" in last


@pytest.mark.parametrize("name, int8_io, expected", [
    ("m_int8.tflite", True, "int8"), ("m.tflite", True, "int8"), ("m_int8.onnx", False, "int8"),
    ("m_fp32.onnx", False, "float"), ("m_int8_edgetpu.tflite", False, "int8"), ("m.onnx", False, None),
])
def test_precision_from_the_inputs_or_the_convert_name(name, int8_io, expected):
    assert precision(make_row(name, 1.0, int8_io=int8_io)) == expected


# --- the generic table machinery (convert's tables can use it too) ------------------------------

def test_render_table_without_width_is_the_plain_padded_table():
    text = render_table(["name", "n"], [["a", 1], ["bbb", 22]])
    assert text.splitlines() == ["name   n", "----  --", "a      1", "bbb   22"]


def test_layout_keeps_columns_by_priority_and_never_cuts_numbers():
    headers = ["name", "a column with a long header", "b", "c"]
    rows = [["x" * 30, 1234.5678, 123456, None], ["y" * 30, 2.5, 7, None]]
    layout = layout_table(headers, rows, width=40, priorities=[0, 2, 1, 3], drop_empty=True)
    assert layout.shown == ["name", "b"] and layout.hidden == [headers[1]] and layout.dropped_empty == ["c"]
    assert layout.text.splitlines()[2] == "x" * 30 + "  123456"  # room enough: nothing shortened
    narrow = layout_table(headers, rows, width=20, priorities=[0, 1, 2, 3], drop_empty=True)
    assert narrow.shown == ["name", "b"] and narrow.hidden == [headers[1]]  # a number is left out, never cut
    assert narrow.text.splitlines()[2] == shorten("x" * 30, 12) + "  123456"  # the name gives way


def test_shorten_and_metrics_view():
    assert shorten("abcdefghij", 5) == "ab" + ELLIPSIS + "ij" and shorten("abc", 5) == "abc"
    text = render_metrics(["one", "two"], [("p50", [1.0, 2.0]), ("empty", [None, "-"])], width=30)
    assert [line.split() for line in text.splitlines()][2:] == [["p50", "1", "2"]]


@pytest.mark.parametrize("width", [80, 100, 160])
def test_convert_summary_fits_the_width(converted_small, width):
    """Every line of convert's summary, long paths and failing checks with advice included, fits."""
    import dataclasses

    from edgeact.report.render import render_convert_report

    _, report = converted_small
    failing = dataclasses.replace(report, checks=[*report.checks, dataclasses.replace(
        report.checks[0], passed=False, summary="x" * 300, advice="try " + "a very long piece of advice " * 10)])
    text = render_convert_report(failing, width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert text.splitlines()[-1].startswith("✗ 1 of")
    assert "a very long piece" in text  # wrapped, not cut


def test_convert_summary_gives_many_alike_pass_and_fusion_verdicts_one_line(converted_small):
    """ConvNeXtTiny printed 18 'gelu not changed' lines per pass and 18 'standalone GELU' lines per
    model: more than three alike become one line with a count; three or fewer stay one per layer;
    the report keeps every entry."""
    import dataclasses

    from edgeact.report.render import render_convert_report

    _, report = converted_small
    gelus = [{"layer": f"block_{i}_gelu", "reason": "Activation('gelu') has no fused form"} for i in range(18)]
    few = [{"layer": f"pool_{i}", "reason": "not after a convolution"} for i in range(3)]
    passes = [{**report.passes[0], "skipped": gelus + few}]
    tflite = report.formats["tflite"]
    fusion = {k: {**v, "standalone": [{"op": "GELU", "after": "RESHAPE", "reason": "no fused form"}] * 18}
              for k, v in tflite.details["fusion"].items()}
    grouped = dataclasses.replace(report, passes=passes, formats={
        "tflite": dataclasses.replace(tflite, details={**tflite.details, "fusion": fusion})})
    lines = render_convert_report(grouped, width=160).splitlines()
    gelu_lines = [line for line in lines if "gelu" in line]
    assert len(gelu_lines) == 1 and "18 layers not changed: Activation('gelu')" in gelu_lines[0]
    assert "block_0_gelu, block_1_gelu and 16 more" in gelu_lines[0]
    assert sum("pool_" in line for line in lines) == 3
    assert [line.strip() for line in lines if "standalone GELU" in line] == \
        ["standalone GELU after RESHAPE x18: no fused form"] * len(fusion)
    assert len(grouped.passes[0]["skipped"]) == 21  # rendering groups; the report is untouched
