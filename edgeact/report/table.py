"""Plain-text tables that fit the terminal, and check marks (no dependency, works on any device).

`render_table(headers, rows)` pads columns to their widest cell. Given a `width`, it also
fits the table to it, the way a reader of an 80- or 100-column terminal needs:

1. columns with no values (every cell None, "" or "-") are dropped (`drop_empty`);
2. columns are kept in `priorities` order (smaller first; ties left to right) while they fit,
   and shown in their original order; the ones left out are named by `TableLayout.hidden`;
3. if the kept columns are still too wide, the widest left-aligned (text) column is shortened
   with a middle ellipsis (`mnist_c…8.tflite`), so no line is ever longer than `width`.

`render_metrics(names, metrics)` is the transposed view, one row per metric and one column per
item: better than a wide row when there are only one or two items.
"""
from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from typing import Any, Sequence

PASS = "\u2713"
FAIL = "\u2717"
ELLIPSIS = "\u2026"
GAP = "  "
NOT_A_TERMINAL_WIDTH = 100  # columns when stdout is a pipe or a file (CI logs, `| less`)
MIN_SHORTENED = 8  # a text column is never shortened below this (header or cells)


def mark(passed: bool) -> str:
    return PASS if passed else FAIL


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers short and readable; None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        if value == 0:
            return "0"
        if abs(value) >= 1000 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def terminal_width() -> int:
    """The terminal's columns ($COLUMNS first, as shutil does); 100 when not a terminal."""
    return shutil.get_terminal_size((NOT_A_TERMINAL_WIDTH, 24)).columns


def is_empty(cell: Any) -> bool:
    """A cell that says nothing: None, or text that is blank or a lone '-'."""
    return cell is None or (isinstance(cell, str) and cell.strip() in ("", "-"))


def shorten(text: str, width: int) -> str:
    """`text` cut to `width` characters in the middle, where file names differ least."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head = width // 2
    tail = width - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def wrap(text: str, width: int | None, indent: str = "") -> list[str]:
    """Prose lines (headers, notes, summaries) wrapped to `width`; unwrapped when width is None."""
    if width is None:
        return [text]
    return textwrap.wrap(text, width=max(width, 20), subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=True) or [""]


@dataclass
class TableLayout:
    """What `layout_table` decided: the text, and which columns it kept and left out."""

    text: str
    shown: list[str]  # headers, in display order
    hidden: list[str]  # headers left out for width (not the empty ones)
    dropped_empty: list[str]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None, *,
                 width: int | None = None, priorities: Sequence[int] | None = None, drop_empty: bool = False,
                 align: Sequence[str] | None = None) -> str:
    """Columns padded to their widest cell; numbers right-aligned. See `layout_table` for the options."""
    return layout_table(headers, rows, title, width=width, priorities=priorities, drop_empty=drop_empty,
                        align=align).text


def layout_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None, *,
                 width: int | None = None, priorities: Sequence[int] | None = None, drop_empty: bool = False,
                 align: Sequence[str] | None = None) -> TableLayout:
    """Lay out a table, fitted to `width` columns when given.

    Args:
        headers, rows: cells are raw values (formatted with `fmt`) or text.
        width: the longest line allowed; None: as wide as the cells need.
        priorities: per column, smaller is kept first when the width is short (default: left to right).
            The first column to be kept is always kept, shortened if it must be.
        drop_empty: leave out columns where every cell is empty (`is_empty`).
        align: per column "l" or "r"; default right for columns of numbers, left otherwise.
    """
    n = len(headers)
    cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    aligns = list(align) if align is not None else ["r" if rows and all(_is_number(row[i]) for row in rows)
                                                   else "l" for i in range(n)]
    order = sorted(range(n), key=lambda i: (priorities[i] if priorities is not None else 0, i))
    empty = [i for i in range(n) if drop_empty and rows and all(is_empty(row[i]) for row in rows)]
    widths = [max([len(headers[i])] + [len(r[i]) for r in cells]) for i in range(n)]
    # Long text (file names) may be shortened, numbers may not: choose columns as if no text
    # column were wider than half the line, so one long name does not crowd out every number;
    # names shorter than that are kept whole (they tell the rows apart).
    fit = [min(w, (width or w) // 2) if a == "l" else w for w, a in zip(widths, aligns)]
    kept: list[int] = []
    for i in order:
        if i in empty:
            continue
        if width is None or not kept or _total(fit, [*kept, i]) <= width:
            kept.append(i)
    hidden = [headers[i] for i in order if i not in kept and i not in empty]
    kept.sort()
    if width is not None:
        _shrink(widths, kept, aligns, width)
    out = [title] if title else []
    out.append(_line([headers[i] for i in kept], [widths[i] for i in kept], [aligns[i] for i in kept]))
    out.append(GAP.join("-" * widths[i] for i in kept))
    out.extend(_line([r[i] for i in kept], [widths[i] for i in kept], [aligns[i] for i in kept]) for r in cells)
    return TableLayout("\n".join(out), [headers[i] for i in kept], hidden, [headers[i] for i in empty])


def render_metrics(names: Sequence[str], metrics: Sequence[tuple[str, Sequence[Any]]], *,
                   width: int | None = None, drop_empty: bool = True, title: str | None = None) -> str:
    """The transposed view: one row per metric (`(label, one cell per item)`), one column per item.

    Metrics with no value for any item are dropped (`drop_empty`). With a `width`, the item
    columns share what the metric labels leave, each shortened in the middle if it must be.
    """
    rows = [(label, [c if isinstance(c, str) else fmt(c) for c in values]) for label, values in metrics
            if not (drop_empty and all(is_empty(v) for v in values))]
    label_width = max([len(label) for label, _ in rows] + [1])
    widths = [max([len(name)] + [len(values[j]) for _, values in rows]) for j, name in enumerate(names)]
    if width is not None and names:
        room = width - label_width - len(GAP) * len(names)
        share = max(MIN_SHORTENED, room // len(names))
        widths = [min(w, share) for w in widths]
        if label_width + sum(len(GAP) + w for w in widths) > width:  # not even the minimum fits
            label_width = max(1, width - sum(len(GAP) + w for w in widths))
    aligns = ["l"] * (len(names) + 1)
    out = [title] if title else []
    out.append(_line(["", *names], [label_width, *widths], aligns))
    out.append(GAP.join("-" * w for w in [label_width, *widths]))
    out.extend(_line([label, *values], [label_width, *widths], aligns) for label, values in rows)
    return "\n".join(out)


def _total(widths: Sequence[int], columns: Sequence[int]) -> int:
    return sum(widths[i] for i in columns) + len(GAP) * (len(columns) - 1)


def _shrink(widths: list[int], kept: list[int], aligns: Sequence[str], width: int) -> None:
    """Narrow the widest text columns (never numbers: a cut number lies) until the line fits."""
    while _total(widths, kept) > width:
        text = [i for i in kept if aligns[i] == "l" and widths[i] > MIN_SHORTENED]
        if not text:
            break
        widest = max(text, key=lambda i: widths[i])
        widths[widest] = max(MIN_SHORTENED, widths[widest] - (_total(widths, kept) - width))


def _line(values: Sequence[str], widths: Sequence[int], aligns: Sequence[str]) -> str:
    parts = [shorten(v, w).rjust(w) if a == "r" else shorten(v, w).ljust(w)
             for v, w, a in zip(values, widths, aligns)]
    return GAP.join(parts).rstrip()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or value is None
