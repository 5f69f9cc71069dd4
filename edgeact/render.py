"""Human-readable summaries of reports: what `convert` and `inspect` print."""
from __future__ import annotations

from .table import fmt, mark, render_table


def _checks_rows(checks: dict) -> list[list]:
    rows = []
    for comparison, items in checks.items():
        for c in items:
            rows.append([mark(c["passed"]), comparison.replace("_", " "), c["output"], c["samples"],
                         c["top1_agreement"], c["cosine"], c["sqnr_db"], c["max_abs_diff"], c["rule"]])
    return rows


def render_convert_report(report: dict) -> str:
    parts = [f"edgeact convert: {report['name']}  (input {report['input']['name']} "
             f"{tuple(report['input']['shape'])} NHWC, preprocessing {report['preprocessing']['preset']})"]
    cal = report["calibration"]
    skipped = cal.get("skipped") or {}
    parts.append(
        f"calibration: {cal['source']}: {cal['calibration_samples']} samples, {cal['holdout_samples']} held out"
        f" ({cal['values']}; input range {fmt(cal['input_min'])}..{fmt(cal['input_max'])})"
        + (f"; skipped {', '.join(f'{n} {w}' for w, n in skipped.items())}" if skipped else "")
    )
    passes = report.get("passes") or []
    if passes:
        rows = []
        for p in passes:
            for c in p["changed"]:
                rows.append([mark(True), p["name"], c["layer"], f"into {c['into']} ({c['into_type']})"])
            for s in p["skipped"]:
                rows.append(["-", p["name"], s["layer"], f"not fused: {s['reason']}"])
        diffs = ", ".join(f"{p['name']} {fmt(p['max_abs_diff'])}" for p in passes)
        parts.append(render_table(["", "pass", "layer", "result"], rows,
                                  title=f"\ngraph passes (max abs output change: {diffs})"))
    stats = report.get("activation_stats") or []
    if stats:
        rows = [[s["layer"], s["kind"], s["channels"], f"{100 * s['sparsity']:.1f}%",
                 f"{s['dead_channels']} (dying ReLU?)" if s["dead_channels"] else 0] for s in stats]
        parts.append(render_table(["activation", "kind", "channels", "zeros", "dead channels"], rows,
                                  title="\nactivation statistics (float model, calibration samples)"))
    for fmt_name, section in report["formats"].items():
        parts.append(render_format_section(fmt_name, section))
    if report.get("parity"):
        parts.append(render_table(
            ["", "comparison", "output", "n", "top-1 agree", "cosine", "SQNR dB", "max |diff|", "tolerance"],
            _checks_rows(report["parity"]), title=f"\nparity on {report['calibration']['verified_on']}"))
    parts.append(f"\n{mark(report['checks_passed'])} all checks {'passed' if report['checks_passed'] else 'did not pass'}")
    return "\n".join(parts)


def render_format_section(name: str, section: dict) -> str:
    lines = [f"\n{name}: " + ", ".join(f"{k} {v}" for k, v in section["files"].items())]
    if section.get("layout"):
        lines.append(f"  opset {section['opset']}, input layout {section['layout'].upper()}, "
                     + ", ".join(f"{k} {v}" for k, v in section.get("quantization", {}).items()))
    sizes = section.get("size_bytes", {})
    if sizes:
        lines.append("  size: " + ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in sizes.items()))
    if section.get("pixel_in"):
        lines.append(f"  input expects: {section['pixel_in']['description']}")
    for io in ("inputs", "outputs"):
        for spec in section.get(io, []):
            lines.append(f"  {io[:-1]} {spec['name']}: {spec['dtype']} {tuple(spec['shape'])}"
                         + (f" scale {fmt(spec['scale'])} zero point {spec['zero_point']}" if spec["scale"] else ""))
    for kind, fusion in section.get("fusion", {}).items():
        counts = ", ".join(f"{op} {act} x{n}" for op, acts in fusion["fused"].items()
                           for act, n in acts.items() if act != "NONE") or "none"
        lines.append(f"  {mark(fusion['passed'])} {kind} fused activations: {counts}; "
                     f"fusable but left: {len(fusion['unfused'])}"
                     + (f"; Relu/Clip nodes: {fusion['activations']}" if "activations" in fusion else ""))
        for item in fusion["standalone"]:
            lines.append(f"      standalone {item['op']} after {item['after']}: {item['reason']}")
        for item in fusion["unfused"]:
            lines.append(f"      {mark(False)} {item['op']} after {item['after']}: {item['reason']}")
    for key in ("graph_shape", "integer_only", "integer_kernels"):
        if key in section:
            check = section[key]
            lines.append(f"  {mark(check['passed'])} {key.replace('_', ' ')}: {check.get('summary') or _integer_text(check)}")
    return "\n".join(lines)


def _integer_text(check: dict) -> str:
    text = f"{check['integer_ops']}/{check['total_ops']} ops integer"
    if check["float_ops"]:
        text += f" (float: {', '.join(check['float_ops'][:6])})"
    return text


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
    return "\n".join(lines)


def _tensor_text(t: dict) -> str:
    text = f"{t['dtype']}{list(t['shape'])}"
    if t.get("scale"):
        text += " pc" if t.get("per_channel") else f" s={fmt(t['scale'][0], 3)} zp={t['zero_point'][0]}"
    return text


def render_metadata(meta: dict) -> list[str]:
    """What a .tflite says about itself: edgeact's contract and the standard TFLite Model Metadata."""
    lines = []
    contract, standard = meta.get("contract"), meta.get("standard")
    if contract:
        lines.append(f"input expects: {contract['input']['expects']} ({contract['input']['color_space']})")
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
                    extra.append(f"normalization mean {[fmt(v) for v in norm['mean']]} std {[fmt(v) for v in norm['std']]}")
                extra += [f"{f['type']} {f['name']}" for f in t["associated_files"]]
                lines.append(f"  {kind[:-1]} {t['name']}: " + (", ".join(extra) or "no details"))
    else:
        lines.append(f"metadata: {meta.get('standard_note') or 'none'}")
    if meta.get("labels"):
        labels = meta["labels"]
        lines.append(f"labels ({len(labels)}): " + ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else ""))
    return lines
