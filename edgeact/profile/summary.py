"""The plain sentences `edgeact profile` ends with: which model is fastest, what INT8 costs in
accuracy against float, and whether anything was throttled or failed.

Every number in a sentence is read from the report the table shows, so the two cannot disagree.
Whether a row is INT8 or float is read from the model itself where it can be (integer inputs),
else from the `_int8`/`_fp32` name `edgeact convert` gives its outputs (an INT8 ONNX model
keeps float inputs and outputs around its QDQ graph).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import ProfileReport
    from .row import ProfileRow

_NAME_PRECISION = re.compile(r"_(int8|uint8|fp32|float32|fp16|float16)(_edgetpu)?$")
INT8, FLOAT = "int8", "float"


def precision(row: ProfileRow) -> str | None:
    """'int8', 'float' or None (cannot tell) for one profile row."""
    if any(io.dtype in ("int8", "uint8") for io in row.inputs + row.outputs):
        return INT8
    stem = row.name.rsplit(".", 1)[0]
    found = _NAME_PRECISION.search(stem)
    if found:
        return INT8 if "int8" in found.group(1) else FLOAT
    return None


def row_label(row: ProfileRow, rows: list[ProfileRow]) -> str:
    """`mnist_int8.tflite on litert`, plus the delegate or device where rows need it to differ."""
    label = f"{row.name} on {row.runtime}"
    same = [r for r in rows if (r.name, r.runtime) == (row.name, row.runtime)]
    if len({r.delegate for r in same}) > 1:
        label += f"/{row.delegate}"
    if row.device:
        label += f" on {row.device.name}"
    return label


def _ms(value: float) -> str:
    return f"{value:.4f} ms" if value < 1 else f"{value:.3f} ms" if value < 100 else f"{value:.1f} ms"


def speed_sentence(rows: list[ProfileRow]) -> str | None:
    timed = rows  # every row has its timed loop (ProfileRow.latency_ms is required)
    if not timed:
        return None
    fastest = min(timed, key=lambda r: r.latency_ms.p50)
    p50 = fastest.latency_ms.p50
    ips = fastest.throughput_ips
    text = f"Fastest: {row_label(fastest, rows)}, p50 {_ms(p50)}" + (f" ({ips:,.0f} img/s)" if ips else "")
    if len(timed) == 1:
        return text.replace("Fastest: ", "Measured: ", 1) + "."
    slowest = max(timed, key=lambda r: r.latency_ms.p50)
    return (text + f"; the slowest, {row_label(slowest, rows)}, takes "
            f"{slowest.latency_ms.p50 / p50:.1f}x as long (p50 {_ms(slowest.latency_ms.p50)}).")


def _float_baseline(report: ProfileReport, rows: list[ProfileRow]) -> tuple[float, str] | None:
    """The float top-1 INT8 is judged against: the --reference's, else the best float row's."""
    reference = report.reference
    if reference and reference.accuracy:
        return reference.accuracy.top1, f"the float reference ({reference.kind})"
    floats = [r for r in rows if precision(r) == FLOAT and r.accuracy]
    if floats:
        best = max(floats, key=lambda r: r.accuracy.top1)
        return best.accuracy.top1, f"the float {best.name}"
    return None


def int8_sentence(report: ProfileReport, rows: list[ProfileRow]) -> str | None:
    int8 = [r for r in rows if precision(r) == INT8]
    if not int8:
        return None
    scored = [r for r in int8 if r.accuracy]
    agreeing = [r for r in int8 if r.reference and r.reference.top1_agreement is not None]
    baseline = _float_baseline(report, rows)
    parts = []
    if scored and baseline:
        top1, against = baseline
        worst = min(scored, key=lambda r: r.accuracy.top1)
        samples = worst.accuracy.samples
        delta = worst.accuracy.top1 - top1
        changed = round(abs(delta) * samples)
        verb = "costs" if delta < 0 else "loses no"
        parts.append(
            f"INT8 {verb} top-1 accuracy against {against}: "
            f"{100 * worst.accuracy.top1:.2f}% vs {100 * top1:.2f}% ({100 * delta:+.2f} points, "
            f"{changed} of {samples} samples) for {worst.name}"
            + (f", the lowest of {len(scored)} INT8 rows" if len(scored) > 1 else ""))
    elif scored:
        parts.append("INT8 top-1 accuracy is " + ", ".join(
            f"{100 * r.accuracy.top1:.2f}% for {r.name}" for r in scored)
            + " (profile a float model or give --reference to compare)")
    if agreeing:
        low = min(agreeing, key=lambda r: r.reference.top1_agreement)
        parts.append(f"{'its' if parts and len(agreeing) == 1 else 'INT8'} top-1 predictions agree with the "
                     f"float reference's on {100 * low.reference.top1_agreement:.2f}% of samples"
                     + (f" (lowest: {low.name})" if len(agreeing) > 1 else ""))
    if not parts:
        return "Give labelled --data (and a float --reference) to see what INT8 costs in accuracy."
    return "; ".join(parts) + "."


def health_sentence(report: ProfileReport, rows: list[ProfileRow]) -> str:
    devices = report.devices
    failed = [d for d in devices if d.error]
    throttled = [d.name for d in devices if d.throttled]
    if not devices:
        return (f"All {len(rows)} {'row' if len(rows) == 1 else 'rows'} ran without errors; "
                "throttling is checked on --device runs only."
                if rows else "Nothing was measured.")
    parts = []
    if failed:
        parts.append(f"{len(failed)} of {len(devices)} device(s) failed: " + "; ".join(d.error for d in failed))
    if throttled:
        parts.append(f"throttled (numbers not steady-state): {', '.join(throttled)}")
    if not parts:
        return f"No device throttled and none failed ({len(devices)} device(s))."
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def summary_sentences(report: ProfileReport) -> list[str]:
    """Two or three sentences for the end of the profile output."""
    rows = report.models
    sentences = [speed_sentence(rows), int8_sentence(report, rows), health_sentence(report, rows)]
    return [s for s in sentences if s]
