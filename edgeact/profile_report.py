"""What `edgeact profile` prints and writes: the table, JSON, CSV and Markdown of a profile report.

One row per model (and runtime). The CSV columns are the JSON keys flattened with dots
(`latency_ms.p50`, `accuracy.top1`, `reference.top1_agreement`), so scripts can use either.
"""
from __future__ import annotations

import csv
import io
from typing import Any, Callable

from .fileio import dumps_json
from .table import fmt, render_table

# (header, JSON key with dots, how to show the value; None shows as "-")
Column = tuple[str, str, Callable[[Any], str]]


def _ms(value: float) -> str:
    return f"{value:.4f}" if value < 1 else f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _size(value: int) -> str:
    return f"{value / 1024:.1f} KiB" if value < 1024 * 1024 else f"{value / 1024 / 1024:.2f} MiB"


def _memory(memory: dict) -> str:
    return f"{memory['peak_rss_mb']:.0f} (+{memory['growth_mb']:.1f})"


TEXT_COLUMNS = 4  # model, format, runtime, delegate: left-aligned; the rest are numbers
COLUMNS: list[Column] = [
    ("model", "name", str),
    ("format", "format", str),
    ("runtime", "runtime_label", str),
    ("delegate", "delegate", str),
    ("size", "size_bytes", _size),
    ("init ms", "init_ms", _ms),
    ("cold ms", "cold_ms", _ms),
    ("mean ms", "latency_ms.mean", _ms),
    ("std", "latency_ms.std", _ms),
    ("min", "latency_ms.min", _ms),
    ("p50", "latency_ms.p50", _ms),
    ("p90", "latency_ms.p90", _ms),
    ("p99", "latency_ms.p99", _ms),
    ("max", "latency_ms.max", _ms),
    ("img/s", "throughput_ips", lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.1f}"),
    ("RSS MB peak (+load)", "memory", _memory),
    ("top-1", "accuracy.top1", _pct),
    ("top-5", "accuracy.top5", _pct),
    ("top-1 agree", "reference.top1_agreement", _pct),
    ("cosine", "reference.cosine", lambda v: f"{v:.5f}"),
    ("SQNR dB", "reference.sqnr_db", lambda v: fmt(float(v), 4)),
    ("max |diff|", "reference.max_abs_diff", lambda v: fmt(float(v), 3)),
]

CSV_KEYS = [
    "model", "name", "format", "runtime", "runtime_version", "delegate", "threads", "size_bytes", "init_ms",
    "cold_ms", "latency_ms.runs", "latency_ms.mean", "latency_ms.std", "latency_ms.min", "latency_ms.p50",
    "latency_ms.p90", "latency_ms.p99", "latency_ms.max", "throughput_ips", "streams.streams",
    "memory.peak_rss_mb", "memory.growth_mb", "accuracy.top1", "accuracy.top5", "accuracy.samples",
    "reference.top1_agreement", "reference.cosine", "reference.sqnr_db", "reference.max_abs_diff",
    "reference.mean_abs_diff", "preprocessing", "report", "device.name", "device.arch", "device.throttled",
]


def lookup(row: dict, key: str) -> Any:
    """`row['latency_ms']['p50']` for 'latency_ms.p50'; None where any part is missing."""
    if key == "runtime_label":
        return f"{row['runtime']} {row['runtime_version']}"
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


DEVICE_COLUMN: Column = ("device", "device.name", str)


def table_cells(report: dict) -> tuple[list[str], list[list[str]]]:
    """Headers and every cell as text; number columns right-aligned, headers included.

    Rows measured on devices (`profile --device`) get a leading device column.
    """
    on_devices = any("device" in row for row in report["models"])
    columns = [DEVICE_COLUMN, *COLUMNS] if on_devices else COLUMNS
    text_columns = TEXT_COLUMNS + (1 if on_devices else 0)
    headers = [c[0] for c in columns]
    rows = [[_cell(lookup(row, key), show) for _, key, show in columns] for row in report["models"]]
    for i in range(text_columns, len(columns)):
        width = max([len(headers[i])] + [len(row[i]) for row in rows])
        headers[i] = headers[i].rjust(width)
        for row in rows:
            row[i] = row[i].rjust(width)
    return headers, rows


def _cell(value: Any, show: Callable[[Any], str]) -> str:
    return "-" if value is None else show(value)


def header_lines(report: dict) -> list[str]:
    s, data, host = report["settings"], report["data"], report["host"]
    lines = [
        f"edgeact profile: target {report['target']['name']} ({report['target']['description']}), "
        + (f"measured on {len(report['devices'])} device(s) below; data and reference on this "
           f"{host['machine']} host" if report.get("devices") else
           f"measured on {host['machine']} {host['processor']}, {host['cpus']} cpus"),
        f"runs {s['runs']} after {s['warmup']} warm-up, threads {s['threads'] or 'default'}, streams {s['streams']}"
        + (", each model in a child process" if s.get("isolate") else ""),
        f"data: {data['source']}, {data['samples']} samples"
        + (f", {len(data['classes'])} classes" if data.get("classes") else "")
        + ("" if data.get("labelled") else " (no labels)"),
    ]
    if report.get("reference"):
        lines.append(f"reference: {report['reference']['path']} ({report['reference']['kind']})")
    for device in report.get("devices", []):
        if device.get("error"):
            lines.append(f"FAILED {device['error']}")
            continue
        temps = [t for t in (device.get("temperature_before_c"), device.get("temperature_after_c")) if t is not None]
        lines.append(f"device {device['name']}: {device.get('model') or device.get('cpu_model')}, {device['arch']}, "
                     f"{device['cpu_count']} cores, {device.get('os')}, Python {device.get('python')}, "
                     f"numpy {device.get('numpy')}, governor {device.get('governor') or 'unknown'}"
                     + (f", {temps[0]:.1f} -> {temps[-1]:.1f} C" if temps else "")
                     + (", THROTTLED" if device.get("throttled") else ""))
    return lines


def render_profile(report: dict) -> str:
    """The terminal table, with what was measured above it and notes below."""
    parts = header_lines(report)
    parts.append(render_table(*table_cells(report)))
    parts.append("latency in ms (invoke only); img/s: " + (
        f"{report['settings']['streams']} streams" if report["settings"]["streams"] > 1 else "one stream, timed loop")
        + "; RSS: process peak from model load to end of timed loop (+growth over the RSS before loading)")
    parts.extend(f"note: {n}" for n in report.get("notes", []))
    return "\n".join(parts)


def render_json(report: dict) -> str:
    """Strict JSON: an infinite SQNR (identical outputs) is written as the string "inf"."""
    return dumps_json(report)


def render_csv(report: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_KEYS)
    for row in report["models"]:
        writer.writerow(["" if (v := lookup(row, key)) is None else v for key in CSV_KEYS])
    return buffer.getvalue()


def render_markdown(report: dict) -> str:
    headers, rows = table_cells(report)
    headers = [h.strip().replace("|", "\\|") for h in headers]
    lines = [f"{line}  " for line in header_lines(report)] + [""]
    lines.append("| " + " | ".join(headers) + " |")
    text_columns = TEXT_COLUMNS + (1 if any("device" in row for row in report["models"]) else 0)
    lines.append("|" + "|".join("---" if i < text_columns else "---:" for i in range(len(headers))) + "|")
    for cells in rows:
        lines.append("| " + " | ".join(c.strip().replace("|", "\\|") for c in cells) + " |")
    lines.extend(["", *(f"- {n}" for n in report.get("notes", []))])
    return "\n".join(lines).rstrip() + "\n"
