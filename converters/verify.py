"""Compare a converted model's outputs with the float model's, output by output, by name.

The rule fits the output and the export:
- a float export (fp32 .tflite/.onnx) differs from Keras only by float rounding, so it is
  held to a tolerance relative to the output's range, or an SQNR that float rounding reaches
  on any depth (an absolute 1e-4 flagged a healthy ResNet50 at 90 dB);
- an INT8 class-score output (softmax, logits) is judged by top-1 agreement and cosine;
- an INT8 dense output (probability maps, boxes, landmarks, embeddings) by SQNR and the 99.9th
  percentile of its error relative to its range: top-1 over a flattened map means nothing, and
  the max over 35,000 elements let one element fail a 31 dB box map (the max is still shown);
- a collapsed output (all zero, constant, or the same for every sample) fails, named as such;
- when the float model itself gives the same outputs for every held-out sample, no comparison
  means anything: every output fails as "the data does not exercise the model" (a data
  problem, not a conversion one). An output that is static while another output varies (a
  constant anchor tensor) is judged on its values.
"""
from __future__ import annotations

import math

import numpy as np

from edgeact.config import Tolerances
from edgeact.errors import ConversionError
from edgeact.metrics import Agreement, agreement
from edgeact.report.records import Check, OutputKind, TensorInfo


def match_names(expected: list[str], got: list[str], what: str) -> None:
    """ConversionError naming the first output that is missing from, or extra in, `got`."""
    missing = [n for n in expected if n not in got]
    extra = [n for n in got if n not in expected]
    if missing or extra:
        detail = (f"has no output '{missing[0]}'" if missing else f"has an output '{extra[0]}' the Keras model lacks")
        raise ConversionError(f"{what} {detail} (Keras outputs: {', '.join(expected)}; {what}: {', '.join(got)}); "
                              "outputs are matched by name, so the export must keep the Keras output names")


def rule_text(kind: str | None, tolerances: Tolerances, exact: bool) -> str:
    t = tolerances
    if exact:
        return (f"float export: max |diff| <= {t.float_max_relative_diff:g} of the output range, "
                f"or SQNR >= {t.float_min_sqnr_db:g} dB")
    if kind == OutputKind.CLASS_SCORES:
        return (f"class scores: top-1 agreement >= {t.min_top1_agreement:g} (near-ties within one 8-bit step "
                f"excluded), cosine >= {t.min_cosine:g}")
    return (f"dense output: SQNR >= {t.min_sqnr_db:g} dB, 99.9th percentile of |diff| <= {t.max_relative_diff:g} "
            "of the output range")


DATA_PROBLEM = "the data does not exercise the model"


def judge(metrics: Agreement, kind: str | None, tolerances: Tolerances, exact: bool,
          exercised: bool = True) -> tuple[bool, str]:
    """(passed, why not) for one output's metrics under the rule that fits it.

    Args:
        exercised: some output of the reference varies across the samples; when none does
            (`Agreement.reference_static` on every output), every output fails as a data problem.
    """
    t = tolerances
    if metrics.reference_static and not exercised:
        return False, f"{DATA_PROBLEM}: the float model's output is {metrics.reference_static}"
    if metrics.collapsed:
        return False, f"the output collapsed: {metrics.collapsed}"
    if exact:
        ok = metrics.relative_max_diff <= t.float_max_relative_diff or metrics.sqnr_db >= t.float_min_sqnr_db
        return ok, "" if ok else (f"max |diff| is {metrics.relative_max_diff:.2g} of the range and SQNR "
                                  f"{metrics.sqnr_db:.1f} dB")
    if kind == OutputKind.CLASS_SCORES:
        low = []
        top1 = _judged_top1(metrics)
        if top1 is not None and not top1 >= t.min_top1_agreement:
            low.append(f"top-1 agreement {_num(top1)}" + (" (decisive samples)" if metrics.top1_ties else ""))
        if not metrics.cosine >= t.min_cosine:
            low.append(f"cosine {_num(metrics.cosine)}")
        return not low, " and ".join(low) + (" too low" if low else "")
    low = []
    if not metrics.sqnr_db >= t.min_sqnr_db:
        low.append(f"SQNR {_num(metrics.sqnr_db)} dB too low")
    if not metrics.relative_p999_diff <= t.max_relative_diff:
        low.append(f"99.9th-percentile |diff| {_num(metrics.relative_p999_diff)} of the range too high")
    return not low, " and ".join(low)


def _judged_top1(metrics: Agreement) -> float | None:
    """Top-1 agreement on the samples where the float model is decisive (all samples when none tie)."""
    return metrics.top1_agreement_decisive if metrics.top1_ties else metrics.top1_agreement


def _num(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if math.isfinite(value) else str(value)


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                    outputs: list[TensorInfo], tolerances: Tolerances, subject: str, fmt: str | None = None,
                    exact: bool = False, kind: str = "parity") -> list[Check]:
    """One Check per output, matched by name.

    Args:
        exact: the candidate is a float export, held to the float tolerances.
    Raises:
        ConversionError: an output name of the candidate does not match the reference's.
    """
    match_names([o.name for o in outputs], list(candidate), subject)
    measured = []
    for info in outputs:
        ref = np.asarray(reference[info.name])
        cand = np.asarray(candidate[info.name])
        if cand.size != ref.size:
            raise ConversionError(f"{subject}: output '{info.name}' has shape {cand.shape[1:]}, the Keras model's "
                                  f"{ref.shape[1:]}; the export changed the output's shape")
        measured.append((info, agreement(ref, cand.reshape(ref.shape))))
    # The data exercises the model when some output of the reference varies across samples.
    exercised = kind != "parity" or any(m.reference_static is None for _, m in measured)
    checks = []
    for info, metrics in measured:
        passed, why = judge(metrics, info.kind, tolerances, exact, exercised)
        summary = _summary(metrics, info.kind, exact)
        checks.append(Check(kind=kind, subject=subject, passed=passed, rule=rule_text(info.kind, tolerances, exact),
                            summary=summary if passed else f"{why}; {summary}", output=info.name, format=fmt,
                            metrics=metrics.to_dict()))
    return checks


def _summary(m: Agreement, kind: str | None, exact: bool) -> str:
    if exact:
        return f"max |diff| {m.max_abs_diff:.2g} ({m.relative_max_diff:.2g} of range), SQNR {_num(m.sqnr_db)} dB"
    if kind == OutputKind.CLASS_SCORES:
        ties = (f" ({_num(m.top1_agreement_decisive)} where the float model is decisive; {m.top1_ties} near-ties)"
                if m.top1_ties else "")
        return f"top-1 agreement {_num(m.top1_agreement)}{ties}, cosine {_num(m.cosine)}, SQNR {_num(m.sqnr_db)} dB"
    return (f"SQNR {_num(m.sqnr_db)} dB, 99.9th-percentile |diff| {_num(m.relative_p999_diff)} of range "
            f"(max {_num(m.relative_max_diff)}), cosine {_num(m.cosine)}")
