"""`--plot FILE.png`: the latency distributions of all profiled models in one figure.

matplotlib is an optional extra (`pip install 'edgeact[plot]'`), imported only here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError, RuntimeUnavailableError
from .fileio import staged_outputs


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed on a server or a Pi
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeUnavailableError("--plot needs matplotlib; pip install matplotlib (or 'edgeact[plot]')") from None
    return plt


def check_plot(path: str | Path) -> None:
    """Before anything is measured: a file type matplotlib writes, and matplotlib installed."""
    if Path(path).suffix.lower() not in (".png", ".svg", ".pdf"):
        raise InputError(f"--plot {path}: give a .png, .svg or .pdf file name")
    _pyplot()


def plot_latencies(report: dict, path: str | Path) -> Path:
    """Box plots (left) and cumulative distributions (right) of each row's timed runs, log-scaled."""
    path = Path(path)
    check_plot(path)
    plt = _pyplot()
    rows = report["models"]
    labels = [f"{r['name']}\n{r['runtime']} {r['delegate']}" for r in rows]
    timings = [np.asarray(r["timings_ms"], dtype=float) for r in rows]
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
    settings = report["settings"]
    fig.suptitle(f"edgeact profile: {report['target']['name']}, {report['host']['machine']}, "
                 f"{settings['runs']} runs, threads {settings['threads'] or 'default'}")
    try:
        with staged_outputs() as staged:  # the picture appears whole or not at all
            fig.savefig(staged.staged_path(path), dpi=110, format=path.suffix.lower().lstrip("."))
            staged.commit()
    finally:
        plt.close(fig)
    return path


def _horizontal_boxplot(axes, data, labels) -> None:
    """matplotlib >= 3.10 says orientation=, older versions vert= and labels=."""
    try:
        axes.boxplot(data, orientation="horizontal", tick_labels=labels, whis=(1, 99))
    except TypeError:
        axes.boxplot(data, vert=False, labels=labels, whis=(1, 99))
