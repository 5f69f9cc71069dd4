"""The check registry: `register_check` and `run_checks`, apart from the checks themselves.

A check producer takes the finished job and the report and returns `Check`s of one kind.
`converters.checks` registers the conversion's checks, `converters.budget.search` the budget's;
both import only this module, and the pipeline imports them. Producers run in the order of
`edgeact.report.records.CHECK_KINDS` (then any other kind, in the order registered), whatever
order their modules were imported in.
"""
from __future__ import annotations

from typing import Callable

from edgeact.report.records import CHECK_KINDS, Check, ConvertReport

from .job import ConvertJob

CheckFn = Callable[[ConvertJob, ConvertReport], list[Check]]
CHECKS: dict[str, CheckFn] = {}


def register_check(kind: str) -> Callable[[CheckFn], CheckFn]:
    """Decorator: make `fn` the producer of checks of `kind`."""
    def decorate(fn: CheckFn) -> CheckFn:
        CHECKS[kind] = fn
        return fn

    return decorate


def run_checks(job: ConvertJob, report: ConvertReport) -> list[Check]:
    """Every registered producer's checks, in the order a report shows their kinds."""
    order = [k for k in CHECK_KINDS if k in CHECKS] + [k for k in CHECKS if k not in CHECK_KINDS]
    checks: list[Check] = []
    for kind in order:
        checks.extend(CHECKS[kind](job, report))
    return checks
