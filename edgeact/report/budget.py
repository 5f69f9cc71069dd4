"""The accuracy-budget section of a convert report, rendered: the attempts table and what was written.

`convert --max-drop/--min-agreement/--min-sqnr` stores one search per format in the report's
`accuracy_budget` (written by the host-side `converters.budget.search`); this module prints it
from that dict alone, so a device reading a host's report shows the same table. Standard
library only, like the rest of the device side.
"""
from __future__ import annotations

from .table import render_table

EDGE_TPU_NOTE = "an Edge TPU would split its graph at each float op"


def goal_text(budget: dict) -> str:
    """'max-drop 0.5' for {'max_drop': 0.5, 'min_agreement': None, ...}."""
    return next(f"{key.replace('_', '-')} {value:g}" for key, value in budget.items() if value is not None)


def render_search_table(search: dict, width: int | None = None) -> str:
    """One search's attempts (a `converters.budget.tflite.SearchResult.to_dict()`), best marked."""
    if search.get("error"):
        return f"the search against --{goal_text(search['budget'])} failed: {search['error']}"
    rows = [[a["attempt"], a["changed"], a["metric"], "yes" if a["full_integer"] else "NO", a["latency_ms"],
             "<- best" if a["attempt"] == search["best"] else ""] for a in search["attempts"]]
    title = f"INT8 search against --{goal_text(search['budget'])}: {'met' if search['met'] else 'NOT met'}"
    text = render_table(["#", "what changed", search["metric"], "full-integer", "latency ms", ""], rows,
                        title=title, width=width)
    best = next(a for a in search["attempts"] if a["attempt"] == search["best"])
    if not best["full_integer"]:
        text += (f"\nThe best model keeps {', '.join(best['float_layers'])} in float: it is no longer "
                 f"full-integer ({EDGE_TPU_NOTE}).")
    return text


def written_line(fmt: str, search: dict) -> str:
    """What the file on disk is: which attempt, its metric, integer or not, its latency cost."""
    if search.get("error"):
        return f"{fmt}: {search.get('file', 'the INT8 model')} is the exporter's model, unsearched"
    best = next(a for a in search["attempts"] if a["attempt"] == search["best"])
    plain = search["attempts"][0]
    integer = "full-integer" if best["full_integer"] else \
        f"NOT full-integer: {', '.join(best['float_layers'])} in float ({EDGE_TPU_NOTE})"
    cost = f"latency {best['latency_ms']:.4g} ms per sample" + (
        "" if best is plain else f" vs {plain['latency_ms']:.4g} ms for attempt 1") + \
        " (one sample, median of 20, this machine)"
    return (f"{fmt}: {search.get('file', 'the INT8 model')} is attempt {best['attempt']} ({best['changed']}): "
            f"{search['metric']} {best['metric']:.4g}, {integer}; {cost}")


def render_accuracy_budget(section: dict, width: int | None = None) -> str:
    """convert's lines for the report's `accuracy_budget`: data, one table per format, the files."""
    data = section.get("eval_data") or {}
    labelled = ", labelled" if data.get("labelled") else ""
    lines = [f"\naccuracy budget --{goal_text(section['budget'])} on {data.get('source', '?')} "
             f"({data.get('samples', '?')} samples{labelled})"]
    for fmt, search in section.get("formats", {}).items():
        lines.append(f"\n{fmt}: " + render_search_table(search, width))
    for fmt, search in section.get("formats", {}).items():
        lines.append("  " + written_line(fmt, search))
    return "\n".join(lines)
