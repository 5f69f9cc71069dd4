"""matplotlib for every picture edgeact writes: loaded on first use, files only, written atomically.

matplotlib is an optional extra (`pip install 'edgeact[plot]'`), imported only here.
"""
from __future__ import annotations

from pathlib import Path

from edgeact.errors import InputError, RuntimeUnavailableError
from edgeact.fileio import staged_outputs


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a one-line error naming the extra to install."""
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
    pyplot()


def save_figure(fig, path: Path, dpi: int) -> None:
    """Write `fig` to `path` (its suffix names the format) and close it; the picture appears whole or not at all."""
    plt = pyplot()
    try:
        with staged_outputs() as staged:
            fig.savefig(staged.staged_path(path), dpi=dpi, format=path.suffix.lower().lstrip("."))
            staged.commit()
    finally:
        plt.close(fig)
