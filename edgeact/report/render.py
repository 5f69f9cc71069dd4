"""Human-readable summaries of reports: what `convert` and `inspect` print."""
from __future__ import annotations

from .table import fmt, mark, render_table, terminal_width, wrap


def render_convert_report(report, width: int | None = None) -> str:
    """What `convert` prints: the model, the data, what each pass did, each format, every check,
    the files written and one verdict line. Every line fits `width` (the terminal's, 100 otherwise)."""
    from .records import CHECK_KINDS, ConvertReport

    if not isinstance(report, ConvertReport):
        report = ConvertReport.from_dict(report)
    width = width or terminal_width()
    pre = report.preprocessing
    inputs = ", ".join(f"{i.name} {tuple(i.shape)}" for i in report.inputs)
    parts = [f"edgeact convert: {report.name}  (input {inputs}; preprocessing {pre['preset']}"
             + (f": {pre['description']}" if pre.get("description") else "") + ")"]
    for item in report.input_normalization:
        parts.append(f"  the model normalises its own input: {item['layer']} ({item['class']}: {item['effect']}); "
                     "it takes raw pixels")
    outputs = ", ".join(f"{o.name} {tuple(o.shape)} [{(o.kind or '?').replace('_', ' ')}]" for o in report.outputs)
    parts.append(f"outputs: {outputs}")
    cal = report.calibration
    skipped = cal.get("skipped") or {}
    parts.append(
        f"calibration: {cal['source']}: {cal['calibration_samples']} samples, {cal['holdout_samples']} held out"
        f" ({cal['values']}; range {fmt(cal['input_min'])}..{fmt(cal['input_max'])})"
        + (f"; skipped {', '.join(f'{n} {w}' for w, n in skipped.items())}" if skipped else ""))
    parts.extend(_passes_lines(report.passes))
    parts.extend(_stats_lines(report.activation_stats))
    parts.extend(_rounding_lines(report))
    for fmt_name, section in report.formats.items():
        parts.append(render_format_section(fmt_name, section))
    if report.accuracy_budget:
        from .budget import render_accuracy_budget

        parts.append(render_accuracy_budget(report.accuracy_budget, width))
    for note in report.notes:
        parts.append(f"note: {note}")
    parts.append("\nchecks")
    for kind in list(CHECK_KINDS) + sorted({c.kind for c in report.checks} - set(CHECK_KINDS)):
        for check in report.checks_of(kind):
            parts.append(f"  {mark(check.passed)} {check.label}: {check.summary}")
            if not check.passed and check.advice:
                parts.append(f"      -> {check.advice}")
    rules = sorted({c.rule for c in report.checks if c.kind == "parity" and c.rule})
    for rule in rules:
        parts.append(f"  rule: {rule}")
    if report.layer_errors:
        parts.append(_layer_lines(report.layer_errors, width, report.checks_passed))
    written = [path for section in report.formats.values() for path in section.files.values()]
    if written:
        parts.append("\nwrote")
        parts.extend(f"  {path}" for path in written)
    failed = report.failed_checks()
    verdict = (f"{mark(True)} all checks passed ({len(report.checks)})" if not failed else
               f"{mark(False)} {len(failed)} of {len(report.checks)} checks failed: "
               + "; ".join(c.label for c in failed[:3]) + (" ..." if len(failed) > 3 else ""))
    parts.append("\n" + verdict)
    return fit_lines("\n".join(parts), width)


def fit_lines(text: str, width: int) -> str:
    """Every line at most `width` characters: long lines wrap with an indent under their start."""
    lines = []
    for line in text.split("\n"):
        if len(line) <= width:
            lines.append(line)
        else:
            lines.extend(wrap(line, width, " " * min(len(line) - len(line.lstrip()) + 4, width // 3)))
    return "\n".join(lines)


def _layer_lines(layer_errors: dict, width: int, passed: bool = False) -> str:
    """The worst layers per format after a failed check, one line per format otherwise (the
    per-layer section is rendered by its own host-side module)."""
    try:
        from .layer_errors import LayerErrorReport, render_layer_errors, render_layer_summary
    except ImportError:  # a device reading a host's report: the table needs the host side
        return "\nper-layer error: in the report (layer_errors); edgeact layers prints it"
    report = LayerErrorReport.from_dict(layer_errors)
    if passed:
        return "\n" + render_layer_summary(report)
    return "\nwhere INT8 loses (worst layers first; edgeact layers has them all):\n" + render_layer_errors(
        report, top=5, width=width)


def _passes_lines(passes: list[dict]) -> list[str]:
    if not passes:
        return []
    diffs = ", ".join(f"{p['name']} {fmt(p['max_abs_diff'])}" for p in passes)
    lines = [f"\ngraph passes (max abs output change: {diffs})"]
    for p in passes:
        done = f"  {mark(True)} {p['name']}:"
        for into_type, group in _groups(p["changed"], lambda c: c["into_type"]):
            lines += _alike(group, lambda c: f"{done} {c['layer']} into {c['into']} ({into_type})",
                            f"{done} {len(group)} layers into {into_type}: {some_of(c['layer'] for c in group)}")
        for reason, group in _groups(p["skipped"], lambda c: c["reason"]):
            lines += _alike(group, lambda c: f"  - {p['name']}: {c['layer']} not changed: {reason}",
                            f"  - {p['name']}: {len(group)} layers not changed: {reason} "
                            f"({some_of(c['layer'] for c in group)})")
    return lines


def _rounding_lines(report) -> list[str]:
    """The weight steps: what was tried, and per format which step its judge kept and why."""
    rounding = report.weight_rounding
    if not rounding or rounding.get("mode") == "none":
        return []
    lines = [f"\nweight steps ({rounding['mode']}): {rounding['layers_tried']} kernels rounded by output error, "
             f"fitted on {rounding['calibration_samples']} calibration samples, judged on "
             f"{rounding['judge_samples']} others"]
    for fmt_name, section in report.formats.items():
        step = (section.details or {}).get("weight_rounding")
        if not step:
            continue
        kept, sqnr, gains = step["kept"], step.get("sqnr_db") or {}, step.get("gain_db") or {}
        tried = "; ".join(f"{name} [{low:+.2f}, {high:+.2f}] dB" for name, (low, high) in gains.items())
        shown = f", SQNR {sqnr['none']:.1f} -> {sqnr[kept]:.1f} dB" if kept in sqnr and "none" in sqnr else ""
        lines.append(f"  {mark(kept != 'none')} {fmt_name}: kept {kept}{shown}"
                     + (f" (mean gain per judge sample, 95 %: {tried})" if tried else "")
                     + (f"; then {step['superseded']} won over it (below)" if step.get("superseded") else ""))
    for key, line in (("activation_ranges", _ranges_line), ("equalization", _equalization_line)):
        lines += [line(fmt_name, section.details[key]) for fmt_name, section in report.formats.items()
                  if (section.details or {}).get(key)]
    costs = [_steps_cost(fmt_name, section.details or {}) for fmt_name, section in report.formats.items()]
    if any(costs):
        lines.append("  time the steps took (build, quantize, judge): " + "; ".join(c for c in costs if c))
    for reason, group in _groups([{"layer": k, "reason": v} for k, v in (rounding.get("skipped") or {}).items()],
                                 lambda c: c["reason"]):
        lines.append(f"  - {len(group)} not rounded: {reason} ({some_of(c['layer'] for c in group)})")
    lines.extend(f"  note: {note}" for note in rounding.get("notes") or [])
    return lines


def _judged_figures(step: dict) -> tuple[float | None, float | None, str]:
    """(SQNR as kept, SQNR with the step, the gain interval as text) of a step judged against one model."""
    sqnr = step.get("sqnr_db") or {}
    gain = next(iter((step.get("gain_db") or {}).values()), None)
    interval = f" (mean gain per judge sample, 95 %: [{gain[0]:+.2f}, {gain[1]:+.2f}] dB)" if gain else ""
    return sqnr.get("none"), next((v for k, v in sqnr.items() if k != "none"), None), interval


def _steps_cost(fmt_name: str, details: dict) -> str:
    """'tflite 3.1 s (weight step 1.2, ranges 0.8, equalization 1.1)', or '' where no step recorded a time."""
    parts = [(what, (details.get(key) or {}).get("seconds")) for key, what in
             (("weight_rounding", "weight step"), ("activation_ranges", "ranges"), ("equalization", "equalization"))]
    parts = [(what, seconds) for what, seconds in parts if seconds is not None]
    if not parts:
        return ""
    total = sum(seconds for _, seconds in parts)

    def shown(seconds: float) -> str:
        return f"{seconds:.2f}" if seconds < 1 else f"{seconds:.1f}"

    return f"{fmt_name} {shown(total)} s ({', '.join(f'{what} {shown(seconds)}' for what, seconds in parts)})"


def _ranges_line(fmt_name: str, step: dict) -> str:
    """Whether the format's INT8 model took per-tensor activation ranges, and the judge's figures."""
    what = f"{step['shrunk']} of {step['tensors']} activation ranges shrunk by their rounding + clipping error"
    before, shrunk, interval = _judged_figures(step)
    if step["kept"] != "none":
        judged = f", SQNR {before:.1f} -> {shrunk:.1f} dB{interval}" if shrunk is not None \
            else " (unjudged: --int8-steps all)"
        later = f"; then {step['superseded']} won over it (below)" if step.get("superseded") else ""
        return f"  {mark(True)} {fmt_name}: kept {what}{judged}{later}"
    figures = f": SQNR {before:.1f} dB as kept, {shrunk:.1f} dB with them{interval}" if shrunk is not None else ""
    return f"  {mark(False)} {fmt_name}: not kept: {what}{figures}"


def _equalization_line(fmt_name: str, step: dict) -> str:
    """Whether the format's INT8 model is the cross-layer equalized one, and the judge's figures."""
    what = f"cross-layer equalization ({step.get('layers', 0)} kernels rescaled, calibrated anew)"
    if step.get("why"):
        return f"  - {fmt_name}: {what} not tried: {step['why']}"
    before, other, interval = _judged_figures(step)
    if step["kept"] != "none":
        later = f"; then {step['superseded']} won over it (below)" if step.get("superseded") else ""
        return f"  {mark(True)} {fmt_name}: kept {what}, SQNR {before:.1f} -> {other:.1f} dB{interval}{later}"
    return (f"  {mark(False)} {fmt_name}: not kept: {what}: SQNR {before:.1f} dB as kept, "
            f"{other:.1f} dB with it{interval}")


# A big model repeats one verdict per layer (ConvNeXtTiny: 18 GELUs, MobileNetV2: 52 BatchNorms);
# more than this many alike are one line with a count, and the report keeps every entry.
_GROUP_MIN = 3


def _groups(entries: list[dict], key) -> list[tuple[str, list[dict]]]:
    """Entries grouped by key, in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for entry in entries:
        groups.setdefault(key(entry), []).append(entry)
    return list(groups.items())


def _alike(group: list[dict], each, together: str) -> list[str]:
    """One line per entry, or, for more than _GROUP_MIN alike, the one line `together`."""
    return [each(entry) for entry in group] if len(group) <= _GROUP_MIN else [together]


def some_of(names, shown: int = 2) -> str:
    """'a, b and 16 more': the first `shown` names and how many others."""
    names = list(names)
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _stats_lines(stats: list[dict]) -> list[str]:
    if not stats:
        return []
    dead = [s for s in stats if s["dead_channels"]]
    mean_zero = sum(s["sparsity"] for s in stats) / len(stats)
    lines = [f"\nactivations: {len(stats)} ReLU/ReLU6, {100 * mean_zero:.0f}% zeros on average (float model, "
             f"held-out samples); dead channels: {sum(s['dead_channels'] for s in dead) or 'none'}"]
    for s in dead:
        lines.append(f"  {s['layer']}: {s['dead_channels']} of {s['channels']} channels always zero (dying ReLU?)")
    return lines


def render_format_section(name: str, section) -> str:
    if section.error:
        return f"\n{name}: {mark(False)} not written: {section.error}"
    details = section.details
    lines = [f"\n{name}: " + ", ".join(f"{k} {v}" for k, v in section.files.items())]
    if details.get("layout"):
        lines.append(f"  opset {details['opset']}, input layout {details['layout'].upper()}, "
                     + ", ".join(f"{k} {v}" for k, v in details.get("quantization", {}).items()))
    sizes = section.size_bytes
    if sizes:
        lines.append("  size: " + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sizes.items())
                     + (f"; verified with {section.runtime['name']} {section.runtime['version']}"
                        if section.runtime else ""))
    if details.get("pixel_in"):
        lines.append(f"  input expects: {details['pixel_in']['description']}")
    for io in ("inputs", "outputs"):
        for spec in getattr(section, io):
            lines.append(f"  {io[:-1]} {spec['name']}: {spec['dtype']} {tuple(spec['shape'])}"
                         + (f" scale {fmt(spec['scale'])} zero point {spec['zero_point']}" if spec["scale"] else ""))
    for kind, fusion in details.get("fusion", {}).items():
        counts = ", ".join(f"{op} {act} x{n}" for op, acts in fusion["fused"].items()
                           for act, n in acts.items() if act != "NONE") or "none"
        lines.append(f"  {kind} fused activations: {counts}"
                     + (f"; Relu/Clip nodes: {fusion['activations']}" if "activations" in fusion else ""))
        for (op, after, reason), group in _groups(fusion["standalone"], lambda i: (i["op"], i["after"], i["reason"])):
            lines += _alike(group, lambda _: f"      standalone {op} after {after}: {reason}",
                            f"      standalone {op} after {after} x{len(group)}: {reason}")
    rewritten = (details.get("calibration") or {}).get("xnnpack_rewrites")
    if rewritten:
        lines.append("  int8 ops XNNPACK does not run, written as the ops they are that it runs: "
                     + ", ".join(f"{what} x{n}" for what, n in rewritten.items()))
    done = {what: len(nodes) for what, nodes in (details.get("rewrites") or {}).items() if nodes}
    if done:
        lines.append("  int8 graph rewrites: " + ", ".join(f"{what} x{n}" for what, n in done.items()))
    if details.get("fast_path"):
        from edgeact.fastpath.speed_verdict import render_fast_path

        lines.append(render_fast_path(details["fast_path"]))
    if details.get("edgetpu"):
        from edgeact.fastpath.edgetpu import render_edgetpu_step

        lines += render_edgetpu_step(details["edgetpu"])
    return "\n".join(lines)


def _numbers(values: list, limit: int = 4) -> str:
    shown = ", ".join(fmt(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def render_inspect(info: dict) -> str:
    """The ops table, inputs/outputs and size of a .tflite or .onnx model."""
    lines = [f"{info['path']}: {info['format']}, {info['size_bytes'] / 1024:.1f} KiB"
             + (f", opset {info['opset']}" if info.get("opset") else "")]
    for io in ("inputs", "outputs"):
        for t in info[io]:
            q = f" scale {fmt(t['scale'][0])} zero point {t['zero_point'][0]}" if t.get("scale") else ""
            lines.append(f"{io[:-1]}: {t['name']} {t['dtype']} {tuple(t['shape'])}{q}")
    if info.get("metadata") is not None:
        lines += render_metadata(info["metadata"])
    lines.append("op counts: " + ", ".join(f"{k} {v}" for k, v in info["op_counts"].items()))
    if info.get("qdq_pairs") is not None:
        lines.append(f"QDQ pairs: {info['qdq_pairs']}")
    rows = []
    for op in info["ops"]:
        ins = ", ".join(_tensor_text(t) for t in op["inputs"][:3])
        outs = ", ".join(_tensor_text(t) for t in op["outputs"][:2])
        rows.append([op["index"], op["type"], op.get("fused_activation") or "", ins, outs])
    lines.append(render_table(["#", "op", "fused act", "inputs", "outputs"], rows))
    if info.get("coverage"):
        from edgeact.fastpath.speed_verdict import render_coverage

        lines.append(render_coverage(info["coverage"]))
    if info.get("op_times"):
        from edgeact.fastpath.op_shares import render_op_times

        lines.append(render_op_times(info["op_times"]))
    if info.get("edgetpu"):
        from edgeact.fastpath.edgetpu import render_preflight

        lines.append(render_preflight(info["edgetpu"]))
    return "\n".join(lines)


def _tensor_text(t: dict) -> str:
    text = f"{t['dtype']}{list(t['shape'])}"
    if t.get("scale"):
        text += " pc" if t.get("per_channel") else f" s={fmt(t['scale'][0], 3)} zp={t['zero_point'][0]}"
    return text


def render_metadata(meta: dict) -> list[str]:
    """What a .tflite says about itself: edgeact's contract, the standard TFLite Model Metadata, and
    what is wrong with them (one line; `--json` lists every problem)."""
    lines = []
    contract, standard = meta.get("contract"), meta.get("standard")
    if contract and contract.get("input"):
        inp = contract["input"]
        lines.append(f"input expects: {inp.get('expects')} ({inp.get('color_space')})")
    if standard:
        lines.append(f"metadata: {standard['name']} version {standard['version']}, {standard['author'] or 'no author'}"
                     f", parser >= {standard['min_parser_version']}")
        if standard.get("description"):
            lines.append(f"  {standard['description']}")
        for kind in ("inputs", "outputs"):
            for t in standard[kind]:
                extra = [t[k] for k in ("color_space",) if t.get(k)]
                if t.get("normalization"):
                    norm = t["normalization"]
                    extra.append(f"normalization mean {_numbers(norm['mean'])} std {_numbers(norm['std'])}")
                if t.get("stats"):
                    extra.append(f"range {_numbers(t['stats']['min'])}..{_numbers(t['stats']['max'])}")
                extra += [f"{f['type']} {f['name']}" for f in t["associated_files"]]
                lines.append(f"  {kind[:-1]} {t['name']}: " + (", ".join(extra) or "no details"))
    else:
        lines.append(f"metadata: {meta.get('standard_note') or 'none'}")
    if meta.get("labels"):
        labels = meta["labels"]
        lines.append(f"labels ({len(labels)}): " + ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else ""))
    problems = meta.get("problems") or []
    if problems:
        more = f" (and {len(problems) - 1} more; --json lists them)" if len(problems) > 1 else ""
        lines.append(f"metadata problem: {problems[0]}{more}")
    return lines
