"""What `edgeact profile` prints and writes: the table, JSON, CSV and Markdown of a profile report.

One row per model (and runtime). The terminal table fits the terminal: the columns a reader
needs first (model, runtime, size, p50, p90, img/s, top-1, agreement with the reference) are
kept first, empty columns are dropped, and with one or two rows the table is turned into one
row per metric. `--wide` shows every column, `--columns` names them; the JSON, the CSV and the
Markdown file always keep everything. The CSV columns are the JSON keys flattened with dots
(`latency_ms.p50`, `accuracy.top1`, `reference.top1_agreement`), so scripts can use either.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Callable

from edgeact.errors import InputError
from edgeact.fastpath.speed_verdict import render_speed
from edgeact.fileio import dumps_json
from edgeact.report.render import fit_lines
from edgeact.report.table import fmt, is_empty, layout_table, render_metrics, wrap

from .report import ProfileReport
from .row import Memory, ProfileRow
from .summary import summary_sentences

TRANSPOSE_AT_MOST = 2  # rows; more than this and one row per model reads better


def _ms(value: float) -> str:
    return f"{value:.4f}" if value < 1 else f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _size(value: int) -> str:
    return f"{value / 1024:.1f} KiB" if value < 1024 * 1024 else f"{value / 1024 / 1024:.2f} MiB"


def _memory(memory: Memory) -> str:
    return f"{memory.peak_rss_mb:.0f} (+{memory.growth_mb:.1f})"


def _delegate(value: str) -> str:
    """ONNX Runtime's 'CPUExecutionProvider' is 'CPU' in a table; the JSON keeps the full name."""
    return value[: -len("ExecutionProvider")] if value.endswith("ExecutionProvider") else value


@dataclass(frozen=True)
class ProfileColumn:
    """One column of the profile table.

    `priority`: smaller is kept first when the terminal is narrow; None shows only in `--wide`,
    `--columns` and the Markdown file. `label` names the metric in the transposed view.
    """

    name: str  # what --columns takes
    header: str
    key: str  # JSON key with dots
    show: Callable[[Any], str]
    priority: int | None
    label: str
    text: bool = False  # left-aligned


COLUMNS: list[ProfileColumn] = [
    ProfileColumn("model", "model", "name", str, 0, "model", text=True),
    ProfileColumn("format", "format", "format", str, None, "format", text=True),
    ProfileColumn("runtime", "runtime", "runtime", str, 1, "runtime", text=True),
    ProfileColumn("version", "version", "runtime_version", str, None, "runtime version", text=True),
    ProfileColumn("delegate", "delegate", "delegate", _delegate, 8, "delegate", text=True),
    ProfileColumn("size", "size", "size_bytes", _size, 6, "file size"),
    ProfileColumn("init", "init ms", "init_ms", _ms, None, "load ms"),
    ProfileColumn("cold", "cold ms", "cold_ms", _ms, 11, "first run ms"),
    ProfileColumn("mean", "mean ms", "latency_ms.mean", _ms, 9, "mean ms"),
    ProfileColumn("std", "std", "latency_ms.std", _ms, None, "std ms"),
    ProfileColumn("min", "min", "latency_ms.min", _ms, None, "min ms"),
    ProfileColumn("p50", "p50", "latency_ms.p50", _ms, 2, "p50 ms"),
    ProfileColumn("p90", "p90", "latency_ms.p90", _ms, 7, "p90 ms"),
    ProfileColumn("p99", "p99", "latency_ms.p99", _ms, 10, "p99 ms"),
    ProfileColumn("max", "max", "latency_ms.max", _ms, None, "max ms"),
    ProfileColumn("img/s", "img/s", "throughput_ips", lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.1f}", 5,
                  "images/s"),
    ProfileColumn("rss", "RSS MB (+load)", "memory", _memory, 12, "RSS MB peak (+load)"),
    ProfileColumn("top1", "top-1", "accuracy.top1", _pct, 3, "top-1 accuracy"),
    ProfileColumn("top5", "top-5", "accuracy.top5", _pct, 13, "top-5 accuracy"),
    ProfileColumn("agree", "agree", "reference.top1_agreement", _pct, 4, "top-1 agreement w/ ref"),
    ProfileColumn("cosine", "cosine", "reference.cosine", lambda v: f"{v:.5f}", 14, "cosine w/ ref"),
    ProfileColumn("sqnr", "SQNR dB", "reference.sqnr_db", lambda v: fmt(float(v), 4), 15, "SQNR dB w/ ref"),
    ProfileColumn("maxdiff", "max |diff|", "reference.max_abs_diff", lambda v: fmt(float(v), 3), None,
                  "max |diff| w/ ref"),
]
DEVICE_COLUMN = ProfileColumn("device", "device", "device.name", str, 0, "device", text=True)

CSV_KEYS = [
    "model", "name", "format", "runtime", "runtime_version", "delegate", "threads", "size_bytes", "init_ms",
    "cold_ms", "latency_ms.runs", "latency_ms.mean", "latency_ms.std", "latency_ms.min", "latency_ms.p50",
    "latency_ms.p90", "latency_ms.p99", "latency_ms.max", "throughput_ips", "streams.streams",
    "memory.peak_rss_mb", "memory.growth_mb", "accuracy.top1", "accuracy.top5", "accuracy.samples",
    "reference.top1_agreement", "reference.cosine", "reference.sqnr_db", "reference.max_abs_diff",
    "reference.mean_abs_diff", "preprocessing", "report", "device.name", "device.arch", "device.throttled",
]

LEGEND = ("ms: invoke() only;{agree} img/s: {streams}; RSS: peak MB from model load to the end of timing "
          "(+growth over the load)")


@dataclass(frozen=True)
class TableOptions:
    """How the terminal table is laid out (the CLI's --wide and --columns)."""

    width: int | None = None  # None: as wide as the cells need
    wide: bool = False  # every column with a value
    columns: tuple[str, ...] = ()  # exactly these, in this order
    transpose: bool | None = None  # None: for one or two rows


def column_names() -> list[str]:
    return [c.name for c in (DEVICE_COLUMN, *COLUMNS)]


def parse_columns(text: str) -> tuple[str, ...]:
    """`--columns model,p50,top1` -> names; InputError naming the valid ones for a typo."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    valid = column_names()
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise InputError(f"--columns {text!r}: unknown column {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"choose from {','.join(valid)}")
    return names


def lookup(row: ProfileRow, key: str) -> Any:
    """`row.latency_ms.p50` for 'latency_ms.p50' (a dict's key where the row holds a dict, as
    `streams`); None where any part is missing."""
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            return None
    return value


def _columns(report: ProfileReport, options: TableOptions) -> tuple[list[ProfileColumn], list[int | None]]:
    """The candidate columns and their priorities (None: not in the default view)."""
    rows = report.models
    every = [DEVICE_COLUMN, *COLUMNS] if any(row.device for row in rows) else list(COLUMNS)
    if options.columns:
        by_name = {c.name: c for c in every + [DEVICE_COLUMN]}
        return [by_name[n] for n in options.columns], [0] * len(options.columns)
    priorities = [c.priority for c in every]
    # When two rows differ only in delegate or runtime version, those are what tells them apart.
    who = [tuple(lookup(row, k) for k in ("device.name", "name", "runtime")) for row in rows]
    if len(set(who)) < len(who):
        for i, c in enumerate(every):
            if c.name in ("delegate", "version"):
                priorities[i] = 1
    if options.wide:
        return every, [p if p is not None else 100 for p in priorities]
    kept = [(c, p) for c, p in zip(every, priorities) if p is not None]
    return [c for c, _ in kept], [p for _, p in kept]


def _cells(report: ProfileReport, columns: list[ProfileColumn]) -> list[list[str]]:
    return [["-" if (v := lookup(row, c.key)) is None else c.show(v) for c in columns] for row in report.models]


def table_cells(report: ProfileReport) -> tuple[list[str], list[list[str]]]:
    """Headers and every cell as text, every column (the Markdown file's table)."""
    columns, _ = _columns(report, TableOptions(wide=True))
    return [c.header for c in columns], _cells(report, columns)


def render_rows(report: ProfileReport, options: TableOptions = TableOptions()) -> tuple[str, list[str]]:
    """The table itself (no header or notes) and the --columns names of those left out for width."""
    columns, priorities = _columns(report, options)
    cells = _cells(report, columns)
    transpose = options.transpose if options.transpose is not None else len(cells) <= TRANSPOSE_AT_MOST
    if transpose:
        names = [row.name for row in report.models]
        metrics = [(c.label, [r[i] for r in cells]) for i, c in enumerate(columns) if c.name != "model"]
        return render_metrics(names, metrics, width=options.width, drop_empty=not options.columns), []
    layout = layout_table([c.header for c in columns], cells, width=None if options.wide else options.width,
                          priorities=priorities, drop_empty=not options.columns,
                          align=["l" if c.text else "r" for c in columns])
    names = {c.header: c.name for c in columns}
    return layout.text, [names[h] for h in layout.hidden]


def header_lines(report: ProfileReport) -> list[str]:
    s, data, host, target = report.settings, report.data, report.host, report.target
    lines = [
        f"edgeact profile: target {target.name} ({target.description}), "
        + (f"measured on {len(report.devices)} device(s) below; data and reference on this "
           f"{host.machine} host" if report.devices else
           f"measured on {host.machine} {host.processor}, {host.cpus} cpus"),
        f"runs {s.runs} after {s.warmup} warm-up, threads {s.threads or 'default'}, streams {s.streams}"
        + (", each model in a child process" if s.isolate else ""),
        f"data: {data.source}, {data.samples} samples"
        + (f", {len(data.classes)} classes" if data.classes else "")
        + ("" if data.labelled else " (no labels)"),
    ]
    versions = sorted({f"{row.runtime} {row.runtime_version}" for row in report.models})
    if versions:
        lines.append("runtimes: " + ", ".join(versions))
    ref = report.reference
    if ref:
        accuracy = ref.accuracy.top1 if ref.accuracy else None
        lines.append(f"reference: {ref.path} ({ref.kind})"
                     + (f", top-1 {100 * accuracy:.2f}%" if accuracy is not None else ""))
    for device in report.devices:
        if device.error:
            lines.append(f"FAILED {device.error}")
            continue
        temps = [t for t in (device.temperature_before_c, device.temperature_after_c) if t is not None]
        lines.append(f"device {device.name}: {device.model or device.cpu_model}, {device.arch}, "
                     f"{device.cpu_count} cores, {device.os}, Python {device.python}, "
                     f"numpy {device.numpy}, governor {device.governor or 'unknown'}"
                     + (f", {temps[0]:.1f} -> {temps[-1]:.1f} C" if temps else "")
                     + (", THROTTLED" if device.throttled else ""))
    return lines


def render_profile(report: ProfileReport, options: TableOptions = TableOptions()) -> str:
    """The terminal output: what was measured, the table, a legend, notes and a plain summary.

    With `options.width`, no line is longer than it (prose is wrapped, the table fitted).
    """
    width = options.width
    parts = [line for text in header_lines(report) for line in wrap(text, width, "  ")]
    table, hidden = render_rows(report, options)
    parts.append(table)
    streams = report.settings.streams
    agree = any(row.reference for row in report.models)
    legend = LEGEND.format(streams=f"{streams} streams" if streams > 1 else "one stream, timed loop",
                           agree=" agree: top-1 agreement with --reference;" if agree else "")
    parts.extend(wrap(legend, width, "  "))
    if hidden:
        parts.extend(wrap(f"not shown for width: {','.join(hidden)} (--wide shows all, --columns picks; "
                          "the JSON, CSV and Markdown keep all)", width, "  "))
    for note in report.notes:
        parts.extend(wrap(f"note: {note}", width, "  "))
    parts.append("")
    parts.extend(line for sentence in summary_sentences(report) for line in wrap(sentence, width, "  "))
    speed = render_speed({"speed": [verdict.to_dict() for verdict in report.speed]})
    return "\n".join(parts) + (fit_lines(speed, width) if width else speed)


def render_json(report: ProfileReport) -> str:
    """`report.to_dict()` as strict JSON: an infinite SQNR (identical outputs) is written as the string "inf"."""
    return dumps_json(report.to_dict())


def render_csv(report: ProfileReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_KEYS)
    for row in report.models:
        writer.writerow(["" if (v := lookup(row, key)) is None else v for key in CSV_KEYS])
    return buffer.getvalue()


def render_markdown(report: ProfileReport) -> str:
    """Every column that has a value, one row per model, then the notes and the summary."""
    columns, _ = _columns(report, TableOptions(wide=True))
    cells = _cells(report, columns)
    keep = [i for i in range(len(columns)) if not all(is_empty(row[i]) for row in cells)]
    lines = [f"{line}  " for line in header_lines(report)] + [""]
    lines.append("| " + " | ".join(columns[i].header.replace("|", "\\|") for i in keep) + " |")
    lines.append("|" + "|".join("---" if columns[i].text else "---:" for i in keep) + "|")
    for row in cells:
        lines.append("| " + " | ".join(row[i].replace("|", "\\|") for i in keep) + " |")
    lines.extend(["", *(f"- {n}" for n in report.notes), "", *summary_sentences(report)])
    return "\n".join(lines).rstrip() + "\n"
