"""`convert --max-drop / --min-agreement / --min-sqnr`: search each written INT8 model until the budget is met.

    edgeact convert model.keras -c calib/ --eval-data val/ --max-drop 0.5 -f tflite -f onnx -o out/

The pipeline calls in four places (converters.pipeline.convert):

1. `open_budget(options)` before the model is loaded: the budget's options and --eval-data
   are read and refused here, cheaply (one line, exit 2);
2. `check_model(plan, signature, keras_model, options)` once the signature is known, before
   any calibration data is read: outputs the budget can judge (class scores for a top-1
   budget, one of them for --max-drop), data that fits every input;
3. `search_to_budget(plan, job, report, staged)` after the exporters: for each format,
   `converters.budget.tflite.search_tflite` / `converters.budget.onnx.search_onnx` (see
   `converters.budget.explore`) from the job's folded model and calibration samples, selecting
   on part of the evaluation data and judging the choice on the rest (`--eval-holdout`). The best attempt's model
   replaces the staged `<name>_int8.*`, gets the model contract again, and is verified again
   (held-out predictions, op counts, integer-only, fast path), so the report's files and
   checks describe what is on disk;
4. `judge_by_budget(report)` after the checks: the user's budget replaces the default INT8
   tolerance, so the INT8 parity checks are judged by it (their held-out numbers stay, for
   information) and a missed budget is the first failed check (exit 1, best model written).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from converters.check_registry import register_check
from converters.job import ConvertJob, progress_step
from converters.options import Budget
from edgeact.config import IOType
from edgeact.data.samples import Samples
from edgeact.data.source import read_source
from edgeact.errors import InputError, first_line
from edgeact.report.records import Check, ConvertReport, OutputKind

HOLDOUT_SOURCE = "the held-out calibration samples"


def read_budget(max_drop: float | None, min_agreement: float | None, min_sqnr: float | None,
                eval_data: Any = None, **search: float) -> Budget | None:
    """The budget the CLI options ask for, or None; InputError for two budgets or --eval-data without one.

    `search`: min_int8_share, eval_holdout, search_seconds (None: the default)."""
    given = {k: v for k, v in (("--max-drop", max_drop), ("--min-agreement", min_agreement),
                               ("--min-sqnr", min_sqnr)) if v is not None}
    if not given:
        if eval_data is not None:
            raise InputError("--eval-data is read only to measure an accuracy budget; add --max-drop, "
                             "--min-agreement or --min-sqnr, or drop --eval-data")
        return None
    if len(given) > 1:
        raise InputError(f"give one accuracy budget, not {' and '.join(given)}")
    return Budget(max_drop=max_drop, min_agreement=min_agreement, min_sqnr=min_sqnr,
                  **{k: v for k, v in search.items() if v is not None})


@dataclass
class BudgetPlan:
    """The budget and its evaluation data (None: the job's held-out samples), and how far the search goes."""

    budget: Budget
    data: Any = None  # edgeact.data.source.DataSource: --eval-data as the user gave it
    limits: Any = None  # converters.budget.explore.SearchLimits


def open_budget(options) -> BudgetPlan | None:
    """Read --eval-data and refuse what cannot work, before anything heavy. None without a budget."""
    if options.budget is None:
        if options.eval_data is not None:
            read_budget(None, None, None, options.eval_data)  # raises: data without a budget
        return None
    budget, data = options.budget, None
    if options.eval_data is not None:
        data = read_source(options.eval_data, "--eval-data", labels=options.labels)
    if budget.max_drop is not None and (data is None or data.labels is None):
        where = "no --eval-data was given" if data is None else f"{data.where} has no labels"
        raise InputError(f"--max-drop needs labelled --eval-data (class folders, or .npz with x and y), but {where}; "
                         "without labels use --min-agreement or --min-sqnr")
    from .explore import SearchLimits

    limits = SearchLimits(seconds=budget.search_seconds, min_int8_share=budget.min_int8_share)
    return BudgetPlan(budget, data, limits)


def check_model(plan: BudgetPlan, signature, keras_model, options) -> None:
    """Outputs the budget can judge (class scores for a top-1 budget), data that fits the inputs: else InputError."""
    from .evaluate import judged_outputs

    option = f"--{plan.budget.option}"
    if keras_model is None:
        raise InputError(f"{option} searches by re-quantizing and fixing the Keras layers; a SavedModel folder has "
                         "none: give the .keras/.h5 file")
    if options.io_type is IOType.UINT8:
        raise InputError(f"{option} cannot search a pixel-in model yet; use --io int8 (the default) or float")
    shapes = {o.name: tuple(o.shape) for o in signature.outputs}
    kinds = {o.name: o.kind for o in signature.outputs}
    if plan.budget.top1:
        dense = [o for o in signature.outputs if o.kind not in (None, OutputKind.CLASS_SCORES)]
        if len(signature.outputs) == 1 and dense:
            output = dense[0]
            raise InputError(f"{option} compares top-1 classes, but output '{output.name}' is judged {output.kind} "
                             f"({output.why}); mark it --output-kind {output.name}=class_scores, or use --min-sqnr")
    names = judged_outputs(plan.budget, shapes, kinds)
    if plan.data is not None:  # before calibration: images decoded (once, kept for the search), shapes checked
        plan.data.check(signature.inputs, decode=True)
        if plan.budget.max_drop is not None:  # the only budget that reads the labels
            plan.data.check_classes(shapes[names[0]][0], "the model")


def evaluation(plan: BudgetPlan, job: ConvertJob) -> tuple[Samples, dict]:
    """Model inputs (by input name) and labels the metric is measured on, and their summary for the report."""
    if plan.data is None:
        holdout = job.calibration.holdout
        held_out = job.calibration.summary.get("holdout_samples", 0) > 0
        return holdout, {"source": HOLDOUT_SOURCE if held_out else "the calibration samples (none held out)",
                         "samples": len(holdout), "labelled": False}
    samples = plan.data.samples(job.signature.inputs, job.options.preprocessing)
    return samples, samples.summary()


class _AttemptLines:
    """The search's progress callback: each description is a step, ended by the next one (one line each)."""

    def __init__(self, fmt: str, enabled: bool | None) -> None:
        self.fmt, self.enabled, self.step = fmt, enabled, None

    def __call__(self, text: str) -> None:
        self.close(None)
        self.step = progress_step(f"{self.fmt} search: {text}", self.enabled)
        self.step.__enter__()

    def close(self, exc) -> None:
        if self.step is not None:
            step, self.step = self.step, None
            step.__exit__(type(exc) if exc else None, exc, None)


@contextlib.contextmanager
def _attempt_lines(fmt: str, enabled: bool | None):
    say = _AttemptLines(fmt, enabled)
    try:
        yield say
    except BaseException as exc:
        say.close(exc)
        raise
    say.close(None)


def search_to_budget(plan: BudgetPlan, job: ConvertJob, report: ConvertReport, staged) -> None:
    """Search every written format, write each best model over its staged INT8 file, verify it again."""
    from edgeact.targets import device_spec

    from .evaluate import split_holdout
    from .explore import DEFAULT
    from .onnx import search_onnx
    from .tflite import search_tflite
    from .write import rewrite_onnx, rewrite_tflite

    data, source = evaluation(plan, job)
    selection, holdout = split_holdout(data, plan.budget.eval_holdout, job.options.seed)
    source = {**source, "selection_samples": len(selection), "holdout_samples": 0 if holdout is None else len(holdout)}
    calibration = job.calibration.calibration
    kinds = {o.name: o.kind for o in job.signature.outputs}
    searches, fixes = {}, {}  # fixes: each Keras fix computed once for both formats
    for fmt, section in report.formats.items():
        if section.error is not None or "int8" not in section.files:
            continue
        start = time.perf_counter()
        default = staged.staged_file(Path(section.files["int8"])).read_bytes()  # the exporter's, steps and all
        try:
            with _attempt_lines(fmt, job.options.progress) as say:
                if fmt == "tflite":
                    result = search_tflite(job.keras_model, calibration, selection, plan.budget, job.options.io_type,
                                           progress=say, output_names=job.output_names, fixes=fixes,
                                           holdout=holdout, limits=plan.limits, kinds=kinds, default=default,
                                           depthwise=not device_spec(job.options.target).edgetpu)
                else:
                    float_path = staged.staged_file(Path(section.files["fp32"]))
                    result = search_onnx(job, float_path, selection, plan.budget, progress=say, fixes=fixes,
                                         holdout=holdout, limits=plan.limits, kinds=kinds, default=default)
        except Exception as exc:  # noqa: BLE001  the exporter's model stands; the budget check says why it failed
            searches[fmt] = {"budget": asdict(plan.budget), "metric": plan.budget.metric, "met": False,
                             "error": first_line(exc, 300), "attempts": [], "file": Path(section.files["int8"]).name}
            continue
        seconds = time.perf_counter() - start
        if result.best.stage == DEFAULT:  # the staged file is the one the exporter wrote and verified
            section.details["budget_attempt"] = result.best.attempt
        else:
            # the file is no longer the exporter's: the steps it kept are not in it
            job.mark_superseded(fmt, f"the accuracy budget search's attempt {result.best.attempt}")
            with progress_step(f"{fmt}: verify attempt {result.best.attempt}", job.options.progress):
                (rewrite_tflite if fmt == "tflite" else rewrite_onnx)(job, section, staged, result)
        searches[fmt] = {**result.to_dict(), "file": Path(section.files["int8"]).name,
                         "search_seconds": round(seconds, 1)}
    report.accuracy_budget = {"budget": asdict(plan.budget), "metric": plan.budget.metric, "eval_data": source,
                              "met": all(s["met"] for s in searches.values()), "formats": searches}


def best_attempt(search: dict) -> dict:
    return next(a for a in search["attempts"] if a["attempt"] == search["best"])


@register_check("budget")
def budget_checks(job: ConvertJob, report: ConvertReport) -> list[Check]:
    """One check per searched format: did its written model meet the budget on the evaluation data."""
    from edgeact.report.budget import confidence_line, goal_text

    section = report.accuracy_budget
    if not section:
        return []
    checks = []
    for fmt, search in section["formats"].items():
        if search.get("error"):
            checks.append(Check("budget", f"{fmt} int8 accuracy budget", False, format=fmt,
                                rule=f"--{goal_text(search['budget'])}",
                                summary=f"the search failed: {search['error']}",
                                advice="the exporter's INT8 model was kept, unsearched; convert this format without "
                                "the budget, or report the error"))
            continue
        best = best_attempt(search)
        integer = "full-integer" if best["full_integer"] else \
            f"NOT full-integer, {best.get('int8_share', 1.0):.0%} of the conv/dense MACs INT8"
        held = search.get("holdout")
        sure = confidence_line(search["budget"], held or search.get("selection"),
                               "held out" if held else "selected on (no holdout)")
        checks.append(Check(
            "budget", f"{fmt} int8 accuracy budget", bool(search["met"]), format=fmt,
            rule=f"--{goal_text(search['budget'])} on {section['eval_data'].get('source')}, on the samples the "
                 f"search selected on and on those it held out; at least {search.get('min_int8_share', 0.5):.0%} "
                 "of the conv/dense MACs INT8",
            summary=f"{search['metric']} {best['metric']:.4g} at attempt {best['attempt']} of "
                    f"{len(search['attempts'])} ({best['changed']}; {integer}); {sure}",
            advice="" if search["met"] else (search.get("needs") or "no attempt met the budget") +
            "; the best model was written (see the attempts table)",
            metrics={"metric": best["metric"], "attempt": best["attempt"], "latency_ms": best["latency_ms"],
                     "int8_share": best.get("int8_share", 1.0),
                     "holdout": (held or {}).get("value"), "holdout_high": (held or {}).get("high"),
                     "holdout_low": (held or {}).get("low"), "certified": (held or search.get("selection") or {})
                     .get("certified")}))
    return checks


def judge_by_budget(report: ConvertReport) -> None:
    """The budget judges INT8 accuracy: parity (INT8 vs Keras) and cross-format checks of the searched
    formats take its verdict, their held-out numbers kept; the budget checks go first, so a missed
    budget is the error line."""
    section = report.accuracy_budget
    if not section:
        return
    from edgeact.report.budget import goal_text

    searches = section["formats"]
    goal = f"accuracy budget --{goal_text(section['budget'])}"
    for check in report.checks:
        if check.kind == "parity" and check.subject.endswith("int8 vs keras") and check.format in searches:
            met = bool(searches[check.format]["met"])
        elif check.kind == "cross_format" and set(searches) >= {"tflite", "onnx"}:
            met = all(s["met"] for s in searches.values())
        else:
            continue
        check.rule = f"{goal} (on the evaluation data; replaces: {check.rule})"
        check.passed = met
        check.advice = "" if met else f"the {goal} was not met: see its check and the attempts table"
    report.checks.sort(key=lambda c: c.kind != "budget")  # stable: the rest keep their order
