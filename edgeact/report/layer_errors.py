"""The per-layer error section of a report: its records, and its renderings (a terminal table of
the worst layers, a one-line summary per format, CSV, a plot along depth).

Host-side code measures it (`converters.layer_error`); this module holds what a device needs to
read and print a report's `layer_errors` without TensorFlow. The numbers are described in
`converters.layer_error.measure`.
"""
from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .table import render_table

SCHEMA_VERSION = 2  # 2: `columns`
_NAME_WIDTH = 32


@dataclass
class LayerError:
    """The error of one quantized tensor; see the module docstring for each number."""

    format: str  # "tflite" or "onnx"
    depth: int  # rank among that format's quantized tensors, in graph order
    tensor: str
    layer: str  # the Keras layer it comes from ("" when no name matches)
    op: str
    sqnr_db: float
    own_sqnr_db: float | None
    rounding_sqnr_db: float
    scale: float
    zero_point: int
    range_min: float  # representable by the grid
    range_max: float
    float_min: float  # seen in the float model on the samples
    float_max: float
    clipped_fraction: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LayerError":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


# The columns a report can hold; `own_sqnr_db` needs the Keras model.
COLUMNS = ("sqnr_db", "own_sqnr_db", "rounding_sqnr_db")


@dataclass
class LayerErrorReport:
    """Per-layer error of each format, in graph order, what could not be matched, and which
    columns were measured on how many samples."""

    samples: int
    layers: list[LayerError] = field(default_factory=list)
    unmatched: dict[str, list[str]] = field(default_factory=dict)  # format -> INT8 tensors without a float twin
    columns: list[str] = field(default_factory=lambda: list(COLUMNS))
    schema_version: int = SCHEMA_VERSION

    def formats(self) -> list[str]:
        return list(dict.fromkeys(layer.format for layer in self.layers))

    def of_format(self, fmt: str) -> list[LayerError]:
        return sorted((layer for layer in self.layers if layer.format == fmt), key=lambda l: l.depth)

    def worst(self, n: int | None = None, fmt: str | None = None, by_own: bool = False) -> list[LayerError]:
        """The n layers with the lowest accumulated (or own) SQNR, worst first."""
        rows = [layer for layer in self.layers if fmt is None or layer.format == fmt]
        key = (lambda l: (l.own_sqnr_db if l.own_sqnr_db is not None else l.sqnr_db)) if by_own \
            else (lambda l: l.sqnr_db)
        rows.sort(key=key)
        return rows if n is None else rows[:n]

    def to_dict(self) -> dict:
        return {"schema_version": self.schema_version, "samples": self.samples, "columns": list(self.columns),
                "layers": [layer.to_dict() for layer in self.layers], "unmatched": self.unmatched}

    @classmethod
    def from_dict(cls, data: dict) -> "LayerErrorReport":
        layers = [LayerError.from_dict(d) for d in data.get("layers", [])]
        columns = data.get("columns")
        if columns is None:  # version 1 did not say: own was measured where a row has it
            columns = [c for c in COLUMNS if c != "own_sqnr_db" or any(r.own_sqnr_db is not None for r in layers)]
        return cls(samples=int(data["samples"]), layers=layers, columns=list(columns),
                   unmatched={k: list(v) for k, v in (data.get("unmatched") or {}).items()},
                   schema_version=int(data.get("schema_version", SCHEMA_VERSION)))


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
    from .plot import check_plot, pyplot, save_figure

    path = Path(path)
    check_plot(path)
    plt = pyplot()
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
    save_figure(fig, path, dpi=110)
    return path
