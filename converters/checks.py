"""The checks a conversion must pass: small registered producers, run over the finished job.

Each producer takes the job and the report and returns `Check`s of one kind (the kinds and
their order are `edgeact.report.records.CHECK_KINDS`). The pipeline runs every registered
producer (`converters.check_registry`); rendering and `checks_passed` iterate over the checks,
so a new check is one new function. Every failed check carries advice that names its cause and the next step.
"""
from __future__ import annotations

import shlex

from edgeact.errors import ConversionError, first_line
from edgeact.report.records import Check, ConvertReport, OutputKind

from .check_registry import register_check
from .job import FLOAT_CHECK_SAMPLES, ConvertJob
from .verify import DATA_PROBLEM, compare_outputs


@register_check("export")
def export_checks(job: ConvertJob, report: ConvertReport) -> list[Check]:
    return [Check("export", f"{fmt} export", section.error is None, rule="the exporter writes both models",
                  summary=section.error or ", ".join(sorted(section.files)), format=fmt,
                  advice="" if section.error is None else f"see the {fmt} error above; the other formats were "
                  "written and verified")
            for fmt, section in report.formats.items()]


_VARIANT_TEXT = {"fp32": "float", "int8": "INT8"}


@register_check("parity")
def parity_checks(job: ConvertJob, report: ConvertReport) -> list[Check]:
    """Every written model against the float Keras model, per output by name."""
    checks = []
    for key, outputs in job.predictions.items():
        fmt, variant = key.split("_", 1)
        subject = f"{fmt} {variant} vs keras"
        # A float export runs on the first FLOAT_CHECK_SAMPLES held-out samples only; a candidate
        # with other rows than expected fails compare_outputs' shape check.
        count = FLOAT_CHECK_SAMPLES if variant == "fp32" else None
        reference = {k: v[:count] for k, v in job.reference_outputs.items()}
        try:
            found = compare_outputs(reference, outputs, job.signature.outputs, job.options.tolerances,
                                    subject, fmt, exact=variant == "fp32")
        except ConversionError as exc:
            found = [Check("names", subject, False, rule="outputs matched by Keras name", summary=str(exc),
                           format=fmt, advice="re-export keeping the output names")]
        for check in found:
            if not check.passed and check.kind == "parity":
                check.advice = _parity_advice(job, check, variant)
        if key == "onnx_int8" and any(c.kind == "parity" and not c.passed for c in found):
            _blame_kernels(job, report, found)
        checks.extend(found)
    return checks


def _blame_kernels(job: ConvertJob, report: ConvertReport, found: list[Check]) -> None:
    """A failed INT8 ONNX parity: when this host's integer kernels, not quantization, are far from
    float (converters.onnx.kernels), the advice says so; the measurement goes in the report."""
    from converters.onnx.kernels import kernel_advice, kernel_diagnosis

    try:
        diagnosis = kernel_diagnosis(job)
    except Exception as exc:  # a diagnosis, not a verdict: say why it is missing
        report.notes.append(f"onnx int8 kernels vs QDQ arithmetic not measured: {first_line(exc, 200)}")
        return
    if diagnosis is None:
        return
    report.formats["onnx"].details["kernels_vs_qdq"] = diagnosis
    for check in found:
        measured = diagnosis.get(check.output)
        if not check.passed and check.kind == "parity" and measured and measured["kernels_are_the_cause"]:
            check.advice = kernel_advice(job, measured)


@register_check("cross_format")
def cross_format_checks(job: ConvertJob, report: ConvertReport) -> list[Check]:
    if not {"tflite_int8", "onnx_int8"} <= set(job.predictions):
        return []
    checks = compare_outputs(job.predictions["tflite_int8"], job.predictions["onnx_int8"], job.signature.outputs,
                             job.options.tolerances, "tflite int8 vs onnx int8", kind="cross_format")
    for check in checks:
        if not check.passed:
            check.advice = ("the two INT8 models disagree more than each may differ from float; compare their "
                            "parity rows above to see which one drifted")
    return checks


def _parity_advice(job: ConvertJob, check: Check, variant: str) -> str:
    metrics = check.metrics
    low, high = job.calibration.summary.get("input_min"), job.calibration.summary.get("input_max")
    seen = f"inputs ranged {low:.3g}..{high:.3g}" if low is not None and high is not None else "see the report"
    if DATA_PROBLEM in check.summary:  # before the fp32 advice: a static float model fails its fp32 check too
        return (f"a data problem, not a conversion one: the float model gives the same outputs for every held-out "
                f"sample ({seen}), so no check can tell a good INT8 model from a broken one; give real inputs "
                "preprocessed as in training (-c FOLDER or .npy/.npz, --preprocess), not random data")
    if variant == "fp32":
        return ("the float export differs from Keras by more than float rounding: a layer converted with different "
                "semantics; run edgeact inspect on the fp32 model and compare it with the Keras layers")
    if metrics.get("collapsed"):
        return (f"the INT8 output is {metrics['collapsed']} while the float output varies: check that the calibration "
                f"data is real and preprocessed as in training ({seen}; see --preprocess), then find the layer "
                f"where it collapses: {_layers_command(job, check.format)}")
    info = next((o for o in job.signature.outputs if o.name == check.output), None)
    if info is not None and info.kind == OutputKind.CLASS_SCORES:
        budget = "--min-agreement 0.99 (or --max-drop 1 --eval-data LABELLED_DATA, top-1 points lost on labels)"
        what = "top-1 agreement"
    else:
        budget, what = "--min-sqnr 30", "SQNR"
    return (f"INT8 loses accuracy on this output. Where: {_layers_command(job, check.format)}. Fix: let convert "
            f"search range methods, equalization, bias correction and float layers until the {what} holds: "
            f"{_convert_command(job)} {budget}")


def _layers_command(job: ConvertJob, fmt: str | None) -> str:
    """`edgeact layers` on this conversion's INT8 file, with the user's own paths."""
    int8 = job.output_dir / f"{job.name}_int8.{'onnx' if fmt == 'onnx' else 'tflite'}"
    parts = ["edgeact layers", shlex.quote(str(int8)), "--data", _data_arg(job)]
    if job.loaded is not None and job.loaded.path.exists() and job.loaded.kind != "savedmodel":
        parts += ["--keras", shlex.quote(str(job.loaded.path))]
    return " ".join(parts + _code_args(job))


def _convert_command(job: ConvertJob) -> str:
    model = shlex.quote(str(job.loaded.path)) if job.loaded is not None and job.loaded.path.exists() else "MODEL"
    return " ".join(["edgeact convert", model, "-c", _data_arg(job), "-o", shlex.quote(str(job.output_dir)),
                     "--force"] + _code_args(job))


def _data_arg(job: ConvertJob) -> str:
    source = job.calibration_source
    return shlex.quote(source) if source and source != "random" else "SAMPLES.npy"


def _code_args(job: ConvertJob) -> list[str]:
    code = job.options.model_code
    return [f"--custom-objects {shlex.quote(c)}" for c in code.custom_objects] + \
        (["--trust-model-code"] if code.trust_model_code else [])


@register_check("fusion")
def fusion_checks(job: ConvertJob, report: ConvertReport) -> list[Check]:
    checks = []
    for fmt, section in report.formats.items():
        for variant, fusion in (section.details.get("fusion") or {}).items():
            unfused = fusion.get("unfused") or []
            first = unfused[0] if unfused else None
            checks.append(Check(
                "fusion", f"{fmt} {variant} fusion", bool(fusion.get("passed")), format=fmt,
                rule="no ReLU/ReLU6 left that could fuse into the op before it",
                summary=(f"{first['op']} after {first['after']}: {first['reason']}" if first else
                         f"{_fused_count(fusion)} fused, {len(fusion.get('standalone') or [])} standalone by design")
                + _budget_float_text(fusion),
                advice="" if not unfused else
                "a ReLU that could fuse was left standalone: check its producer has no other consumer, "
                "or rerun without --no-fuse"))
    return checks


def _budget_float_text(fusion: dict) -> str:
    kept = [s for s in fusion.get("standalone") or [] if s.get("budget_float")]
    return f" ({len(kept)} after layers the accuracy budget search kept in float: not judged)" if kept else ""


def _fused_count(fusion: dict) -> int:
    return sum(n for acts in (fusion.get("fused") or {}).values() for act, n in acts.items() if act != "NONE")


@register_check("integer_only")
def integer_only_checks(job: ConvertJob, report: ConvertReport) -> list[Check]:
    checks = []
    for fmt, section in report.formats.items():
        found = section.details.get("integer_only")
        if found:
            float_ops = found.get("float_ops") or []
            accepted = found.get("accepted_float")  # layers a convert --max-drop/... search kept in float
            checks.append(Check("integer_only", f"{fmt} int8 full-integer", bool(found["passed"]), format=fmt,
                                rule="every op computes in integer"
                                + (", or is a layer the accuracy budget kept in float" if accepted else ""),
                                summary=(f"NOT full-integer: {', '.join(accepted)} kept in float by the accuracy "
                                         "budget; " if accepted else "")
                                + f"{found['integer_ops']}/{found['total_ops']} ops integer"
                                + (f" (float: {', '.join(float_ops[:6])})" if float_ops else ""),
                                advice="" if found["passed"] else "ops left in float cannot run on an Edge TPU; "
                                "replace those layers or accept a float fallback"))
    return checks


@register_check("integer_kernels")
def integer_kernel_checks(job: ConvertJob, report: ConvertReport) -> list[Check]:
    return _detail_checks(report, "integer_kernels", "onnx int8 integer kernels",
                          "every Conv and MatMul/Gemm runs as an integer kernel after ORT optimisation",
                          "ORT left float compute: see the ops named; --opset 17 and NHWC/NCHW layouts differ")


@register_check("graph_shape")
def graph_shape_checks(job: ConvertJob, report: ConvertReport) -> list[Check]:
    return _detail_checks(report, "graph_shape", "onnx fp32 graph layout",
                          "no BatchNormalization left, at most one layout Transpose at the input",
                          "layout transposes or BatchNorm remain: try --onnx-layout nchw, or check the fold pass")


def _detail_checks(report: ConvertReport, key: str, subject: str, rule: str, advice: str) -> list[Check]:
    checks = []
    for fmt, section in report.formats.items():
        found = section.details.get(key)
        if found:
            checks.append(Check(key, subject, bool(found["passed"]), rule=rule, summary=found.get("summary", ""),
                                format=fmt, advice="" if found["passed"] else advice))
    return checks
