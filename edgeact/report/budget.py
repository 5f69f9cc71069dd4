"""The accuracy-budget section of a convert report, rendered: the attempts table and what was written.

`convert --max-drop/--min-agreement/--min-sqnr` stores one search per format in the report's
`accuracy_budget` (written by the host-side `converters.budget.search`); this module prints it
from that dict alone, so a device reading a host's report shows the same table. Standard
library only, like the rest of the device side.
"""
from __future__ import annotations

from .table import render_table

EDGE_TPU_NOTE = "an Edge TPU would split its graph at each float op"


GOALS = ("max_drop", "min_agreement", "min_sqnr")


def goal_text(budget: dict) -> str:
    """'max-drop 0.5' for {'max_drop': 0.5, 'min_agreement': None, ...}."""
    return next(f"{key.replace('_', '-')} {budget[key]:g}" for key in GOALS if budget.get(key) is not None)


def _fmt(value) -> str:
    return "?" if value is None else f"{value:.4g}"


def confidence_line(budget: dict, entry: dict | None, where: str) -> str:
    """'holdout (600 samples): top-1 drop 0.31 pp, 95 % interval [-0.2, 0.9]; ...' and what it certifies."""
    if not entry:
        return ""
    unit = " pp" if budget.get("max_drop") is not None else (" dB" if budget.get("min_sqnr") is not None else "")
    text = (f"{where} ({entry['samples']} samples, output {entry['output']}): {_fmt(entry['value'])}{unit}, "
            f"95 % interval [{_fmt(entry['low'])}, {_fmt(entry['high'])}]")
    goal = goal_text(budget)
    if budget.get("max_drop") is not None and not entry.get("resolvable", True):
        text += (f"; this eval set cannot resolve --{goal}: the smallest drop it can tell from zero is "
                 f"{_fmt(entry['resolution'])} pp")
    elif budget.get("min_agreement") is not None and not entry.get("resolvable", True):
        text += (f"; this eval set cannot resolve --{goal}: even full agreement has a lower end of "
                 f"{_fmt(1 - entry['resolution'])}")
    if entry.get("certified"):
        return text + f"; the interval is within --{goal}: certified"
    end = "upper end" if budget.get("max_drop") is not None else "lower end"
    needed = entry.get("samples_to_certify")
    more = f"about {needed} samples at these rates would certify it" if needed else \
        "no number of samples would: the measured value itself misses the budget"
    return text + f"; the interval's {end} is beyond --{goal}: not certified ({more})"


def render_search_table(search: dict, width: int | None = None) -> str:
    """One search's attempts (a `converters.budget.explore.SearchResult.to_dict()`), best marked."""
    if search.get("error"):
        return f"the search against --{goal_text(search['budget'])} failed: {search['error']}"
    rows = [[a["attempt"], a["changed"], a["metric"],
             "16x8" if a.get("stage") == "16x8" else "yes" if a["full_integer"] else "NO",
             f"{a.get('int8_share', 1.0):.0%}", f"{a['latency_ms']:.3g}",
             "<- best" if a["attempt"] == search["best"] else ""] for a in search["attempts"]]
    title = f"INT8 search against --{goal_text(search['budget'])}: {'met' if search['met'] else 'NOT met'}"
    # On a narrow terminal the best-attempt marker and the INT8 share outlive full-integer and latency.
    text = render_table(["#", "what changed", search["metric"], "full-integer", "INT8 MACs", "latency ms", ""], rows,
                        title=title, width=width, priorities=[0, 0, 0, 2, 1, 3, 0])
    best = next(a for a in search["attempts"] if a["attempt"] == search["best"])
    if not best["full_integer"]:
        text += (f"\nThe best model keeps {', '.join(best['float_layers'])} in float: it is no longer "
                 f"full-integer ({EDGE_TPU_NOTE}); {best.get('int8_share', 1.0):.0%} of its conv/dense MACs are INT8.")
    lines = [confidence_line(search["budget"], search.get("selection"), "selected on"),
             confidence_line(search["budget"], search.get("holdout"), "held out, never selected on")]
    lines += [f"not met: {search['needs']}" if search.get("needs") else ""]
    lines += [f"note: {n}" for n in search.get("notes") or []]
    return text + "".join(f"\n{line}" for line in lines if line)


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
    split = f": {data['selection_samples']} to select on, {data['holdout_samples']} held out" \
        if data.get("holdout_samples") else ""
    lines = [f"\naccuracy budget --{goal_text(section['budget'])} on {data.get('source', '?')} "
             f"({data.get('samples', '?')} samples{labelled}{split})"]
    for fmt, search in section.get("formats", {}).items():
        lines.append(f"\n{fmt}: " + render_search_table(search, width))
    for fmt, search in section.get("formats", {}).items():
        lines.append("  " + written_line(fmt, search))
    return "\n".join(lines)
