"""The per-layer report as a terminal table of the worst layers, as CSV, and as a plot along depth."""
from __future__ import annotations

import csv
import io
from dataclasses import fields
from pathlib import Path

from edgeact.table import render_table

from .layer_error import LayerError, LayerErrorReport

_NAME_WIDTH = 32


def _short(text: str, width: int = _NAME_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def render_layer_errors(report: LayerErrorReport, top: int = 10, by_own: bool = False,
                        width: int | None = None) -> str:
    """Per format: the `top` layers with the lowest SQNR (accumulated, or own with by_own), worst first.

    With `width`, the tables keep the columns a reader needs first (layer, SQNR, own) and fit it."""
    blocks = []
    headers = ["#", "layer", "op", "SQNR dB", "own dB", "round dB", "scale", "range", "float range", "clipped %"]
    for fmt in report.formats():
        rows = report.worst(top, fmt, by_own=by_own)
        table = [[r.depth, _short(r.layer or r.tensor), r.op, r.sqnr_db, r.own_sqnr_db, r.rounding_sqnr_db,
                  r.scale, f"{r.range_min:.3g}..{r.range_max:.3g}", f"{r.float_min:.3g}..{r.float_max:.3g}",
                  round(100 * r.clipped_fraction, 3)] for r in rows]
        total = len(report.of_format(fmt))
        order = "own" if by_own else "accumulated"
        blocks.append(render_table(headers, table, title=f"{fmt} INT8: {len(rows)} worst of {total} quantized "
                                                         f"tensors by {order} SQNR, {report.samples} samples",
                                   width=width, priorities=[6, 0, 2, 1, 1, 3, 5, 4, 5, 3] if width else None))
        unmatched = report.unmatched.get(fmt) or []
        if unmatched:
            blocks.append(f"  {len(unmatched)} INT8 tensor(s) without a float twin, not measured: "
                          f"{', '.join(_short(n, 40) for n in unmatched[:3])}{' ...' if len(unmatched) > 3 else ''}")
    own = "only this layer quantized" if "own_sqnr_db" in report.columns else "not measured (needs --keras)"
    blocks.append(f"SQNR: whole model INT8 vs float, the error accumulated up to this tensor.\nown: {own}. "
                  "round: this tensor's grid alone.\nLow own SQNR names the culprit; low SQNR with high own SQNR "
                  "is inherited.")
    return "\n\n".join(blocks)


def render_layer_summary(report: LayerErrorReport) -> str:
    """What a passing convert prints: per format, the tensor with the lowest accumulated SQNR and
    the layer with the lowest own SQNR (the likeliest culprit), one line each."""
    lines = [f"per-layer INT8 error, SQNR vs float on {report.samples} samples (all layers: the report, "
             "edgeact layers)"]
    for fmt in report.formats():
        rows = report.of_format(fmt)
        worst = report.worst(1, fmt)[0]
        line = f"  {fmt}: lowest {worst.sqnr_db:.1f} dB at {_short(worst.layer or worst.tensor)}"
        culprits = [r for r in rows if r.own_sqnr_db is not None]
        if culprits:
            culprit = min(culprits, key=lambda r: r.own_sqnr_db)
            line += f", lowest own {culprit.own_sqnr_db:.1f} dB at {_short(culprit.layer or culprit.tensor)}"
        elif "own_sqnr_db" not in report.columns:
            line += ", own not measured (no Keras model)"
        lines.append(f"{line} ({len(rows)} tensors)")
    return "\n".join(lines)


def render_layer_csv(report: LayerErrorReport) -> str:
    """Every row of every format, one CSV line each, the LayerError fields as columns."""
    out = io.StringIO()
    names = [f.name for f in fields(LayerError)]
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for fmt in report.formats():
        for row in report.of_format(fmt):
            writer.writerow(row.to_dict())
    return out.getvalue()


def plot_layer_errors(report: LayerErrorReport, path: str | Path) -> Path:
    """Accumulated and own SQNR along depth, one line per format; the picture appears whole or not at all."""
    from edgeact.fileio import staged_outputs
    from edgeact.plot import _pyplot, check_plot

    path = Path(path)
    check_plot(path)
    plt = _pyplot()
    # One point per Keras layer (its last quantized tensor, the layer's output), so that the
    # formats line up although they quantize different numbers of tensors.
    order = list(dict.fromkeys(r.layer or r.tensor for fmt in report.formats() for r in report.of_format(fmt)))
    position = {name: i for i, name in enumerate(order)}
    fig, axes = plt.subplots(figsize=(max(8.0, 0.35 * len(order) + 3), 5.5), constrained_layout=True)
    for fmt in report.formats():
        last = {(r.layer or r.tensor): r for r in report.of_format(fmt)}
        rows = sorted(last.values(), key=lambda r: position[r.layer or r.tensor])
        x = [position[r.layer or r.tensor] for r in rows]
        line, = axes.plot(x, [r.sqnr_db for r in rows], marker="o", label=f"{fmt}: accumulated")
        own = [(xi, r.own_sqnr_db) for xi, r in zip(x, rows) if r.own_sqnr_db is not None]
        if own:
            axes.plot(*zip(*own), linestyle="none", marker="x", color=line.get_color(), label=f"{fmt}: own")
    axes.set_xticks(range(len(order)), [_short(n, 24) for n in order], rotation=90, fontsize="small")
    axes.set_xlabel("layer, in graph order")
    axes.set_ylabel("SQNR (dB), higher is better")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title(f"edgeact layers: INT8 vs float per layer, {report.samples} samples")
    try:
        with staged_outputs() as staged:
            fig.savefig(staged.staged_path(path), dpi=110, format=path.suffix.lower().lstrip("."))
            staged.commit()
    finally:
        plt.close(fig)
    return path
