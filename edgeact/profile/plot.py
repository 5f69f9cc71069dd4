"""`--plot FILE.png`: the latency distributions of all profiled models in one figure, and
accuracy against latency (one point per model and runtime, the float reference marked) in
FILE_accuracy.png.

matplotlib comes through `edgeact.report.plot`, on first use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeact.report.plot import check_plot, pyplot, save_figure

from .report import ProfileReport
from .row import ProfileRow


def plot_latencies(report: ProfileReport, path: str | Path) -> Path:
    """Box plots (left) and cumulative distributions (right) of each row's timed runs, log-scaled."""
    path = Path(path)
    check_plot(path)
    plt = pyplot()
    rows = report.models
    labels = [f"{r.name}\n{r.runtime} {r.delegate}" for r in rows]
    timings = [np.asarray(r.timings_ms, dtype=float) for r in rows]
    fig, (box, cdf) = plt.subplots(1, 2, figsize=(12, 1.2 + 0.7 * len(rows) + 2), constrained_layout=True)
    _horizontal_boxplot(box, timings, labels)
    box.set_xscale("log")
    box.set_xlabel("latency (ms, log scale); whiskers p1..p99")
    box.invert_yaxis()
    for label, t in zip(labels, timings):
        ordered = np.sort(t)
        cdf.step(ordered, np.arange(1, len(ordered) + 1) / len(ordered), where="post", label=label.replace("\n", " "))
    cdf.set_xscale("log")
    cdf.set_xlabel("latency (ms, log scale)")
    cdf.set_ylabel("fraction of runs")
    cdf.grid(True, which="both", alpha=0.3)
    cdf.legend(fontsize="small", loc="lower right")
    settings = report.settings
    fig.suptitle(f"edgeact profile: {report.target.name}, {report.host.machine}, "
                 f"{settings.runs} runs, threads {settings.threads or 'default'}")
    save_figure(fig, path, 110)
    return path


def _horizontal_boxplot(axes, data, labels) -> None:
    """matplotlib >= 3.10 says orientation=, older versions vert= and labels=."""
    try:
        axes.boxplot(data, orientation="horizontal", tick_labels=labels, whis=(1, 99))
    except TypeError:
        axes.boxplot(data, vert=False, labels=labels, whis=(1, 99))


# --- accuracy against latency: the chart people choose a model with --------------------------

ACCURACY_FIGSIZE = (7.0, 5.0)  # inches; at ACCURACY_DPI a 770 x 550 pixel PNG
ACCURACY_DPI = 110
INT8_STYLE = {"marker": "o", "color": "tab:blue"}
FLOAT_STYLE = {"marker": "s", "color": "tab:orange"}
REFERENCE_STYLE = {"color": "tab:red", "linestyle": "--", "linewidth": 1.2}


@dataclass(frozen=True)
class AccuracyPoint:
    """One model on one runtime: its p50 latency and its accuracy (0..1)."""

    label: str
    latency_ms: float
    accuracy: float
    is_float: bool = False


def accuracy_points(report: ProfileReport) -> tuple[list[AccuracyPoint], str, float | None]:
    """The points, what the accuracy axis measures, and the float reference's value (or None).

    Top-1 on the labels when there are labels; else top-1 agreement with --reference (the
    reference then agrees with itself: 100 %). No points when neither was measured.
    """
    from .summary import FLOAT, precision, row_label

    rows = report.models

    def top1(row: ProfileRow) -> float | None:
        return row.accuracy.top1 if row.accuracy else None

    def agreement(row: ProfileRow) -> float | None:
        return row.reference.top1_agreement if row.reference else None

    reference = report.reference
    if any(top1(r) is not None for r in rows):
        value, axis = top1, "top-1 accuracy on --data (%)"
        ref_value = reference.accuracy.top1 if reference and reference.accuracy else None
    elif any(agreement(r) is not None for r in rows):
        value, axis, ref_value = agreement, "top-1 agreement with --reference (%)", 1.0
    else:
        return [], "", None
    points = [AccuracyPoint(row_label(r, rows), r.latency_ms.p50, value(r), precision(r) == FLOAT)
              for r in rows if value(r) is not None]
    return points, axis, ref_value


def draw_accuracy_vs_latency(axes, points: list[AccuracyPoint], axis_label: str,
                             reference: float | None = None, reference_label: str = "float reference") -> None:
    """One marker per point (INT8 circles, float squares), labelled; the reference a dashed line."""
    for kind, style in (("INT8 / other", INT8_STYLE), ("float", FLOAT_STYLE)):
        chosen = [p for p in points if p.is_float == (kind == "float")]
        if chosen:
            axes.scatter([p.latency_ms for p in chosen], [100 * p.accuracy for p in chosen], s=60, zorder=3,
                         label=kind, **style)
    if reference is not None:
        axes.axhline(100 * reference, label=f"{reference_label}: {100 * reference:.2f}%", **REFERENCE_STYLE)
    axes.set_xscale("log")
    axes.margins(x=0.3, y=0.25)  # room for the labels inside the axes
    axes.xaxis.set_major_formatter(_plain_number)
    axes.xaxis.set_minor_formatter(_plain_number)
    middle = np.sqrt(min(p.latency_ms for p in points) * max(p.latency_ms for p in points))
    for p in points:  # labels point inwards (right ones below), so they stay inside and apart
        right = p.latency_ms > middle
        label = axes.annotate(p.label, (p.latency_ms, 100 * p.accuracy), textcoords="offset points",
                              xytext=(-7, -7) if right else (7, 7), ha="right" if right else "left",
                              va="top" if right else "bottom", fontsize="small")
        label.set_in_layout(False)
    axes.set_xlabel("p50 latency (ms, log scale; left is faster)")
    axes.set_ylabel(axis_label)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small", loc="best")


def _plain_number(value, _position=None) -> str:
    return f"{value:g}"


def accuracy_plot_path(path: str | Path) -> Path:
    """`profile.png` -> `profile_accuracy.png`, beside the latency plot."""
    path = Path(path)
    return path.with_name(f"{path.stem}_accuracy{path.suffix}")


def plot_accuracy_vs_latency(report: ProfileReport, path: str | Path) -> Path | None:
    """Accuracy against p50 latency, one point per model and runtime, to `accuracy_plot_path(path)`.

    Returns the file written, or None when no accuracy or agreement was measured.
    """
    points, axis_label, reference = accuracy_points(report)
    if not points:
        return None
    out = accuracy_plot_path(path)
    check_plot(out)
    kind = report.reference.kind if report.reference else None
    fig, _ = accuracy_figure(points, axis_label, reference, f"float reference ({kind})" if kind else "float reference",
                             f"accuracy vs latency: {report.target.name}, {report.host.machine}")
    save_figure(fig, out, ACCURACY_DPI)
    return out


def accuracy_figure(points: list[AccuracyPoint], axis_label: str, reference: float | None = None,
                    reference_label: str = "float reference", title: str = ""):
    """The accuracy-latency figure (ACCURACY_FIGSIZE) and its axes, not yet saved."""
    plt = pyplot()
    fig, axes = plt.subplots(figsize=ACCURACY_FIGSIZE, constrained_layout=True)
    draw_accuracy_vs_latency(axes, points, axis_label, reference, reference_label)
    if title:
        axes.set_title(title, fontsize="medium")
    return fig, axes
