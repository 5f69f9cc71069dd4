"""The search both formats run: every fix with every range method, measured float fallback, a holdout.

    result = explore(backend, budget, data, keras_model, limits)   # backend: tflite.TFLiteBackend, onnx.OnnxBackend

0. **The default INT8 file.** The exporter's own INT8 model, with the steps its judge kept
   (converters.rounding: weight rounding, bias correction, per-tensor ranges, equalization), is
   the first attempt: a budget it meets needs nothing else.
1. **Fixes x range methods.** Each chain of integer-preserving fixes of the Keras model (none,
   cross-layer equalization, bias correction, equalization then bias correction) is tried with
   every range method of the format; the first attempt that meets the budget ends the search.
2. **Wider integer activations** (TFLite only): the whole model in 16x8 mode (int16 activations,
   int8 weights). TFLite's quantizer takes one inference type for the whole model, so it cannot
   widen single layers; a 16x8 model has no INT8 kernels (its INT8 share is 0), so it is never the
   answer, but the table shows whether wider activations would meet the budget.
3. **Float fallback, ranked by what it recovers.** From the best attempt without bias correction
   (a bias shifted for rounded weights is wrong for a layer moved back to float), the candidate
   layers (the `max_candidates` with the worst own error) are each kept in float *alone* and the
   metric measured ("probe" rows); then they are kept in float cumulatively in the order of the
   metric they recovered, until the budget is met.
4. **The INT8 share bound.** An attempt whose Conv/Dense/Depthwise MACs are less than
   `min_int8_share` INT8 is not an INT8 model: it cannot be the answer; when it is the only one
   that meets the budget, the result says what it would take.
5. **Holdout.** The search selects on `selection`; the chosen model is measured again on the
   `holdout` samples it never selected on, with a 95 % interval. `met` needs both.

The time bound (`limits.seconds`) is checked before each attempt; what it cut is in the notes.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from converters.options import Budget
from edgeact.data.samples import Samples

from .evaluate import MIN_INT8_SHARE, Scorer, int8_share

BIAS = "bias correction"
DEFAULT = "default"  # the stage and ranges of the exporter's own INT8 file
CHAINS = ((), ("equalize",), (BIAS,), ("equalize", BIAS))


@dataclass
class SearchLimits:
    """How far the search may go: seconds before it stops trying, layers probed, fallback steps, the share bound."""

    seconds: float = 900.0
    max_candidates: int = 8
    max_fallback: int = 8
    min_int8_share: float = MIN_INT8_SHARE
    wide_activations: bool = True


@dataclass
class Attempt:
    attempt: int
    changed: str
    metric: float
    full_integer: bool
    latency_ms: float
    float_layers: list[str] = field(default_factory=list)
    ranges: str = "minmax"
    fixes: list[str] = field(default_factory=list)
    stage: str = "ranges"  # default, ranges, fix, 16x8, probe, float
    int8_share: float = 1.0
    outputs: dict = field(default_factory=dict)  # the metric per judged output
    float_nodes: list[str] = field(default_factory=list)  # the format's names of the float ops

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchResult:
    budget: Budget
    attempts: list[Attempt]
    best: Attempt
    model: bytes  # the best model's file
    met: bool
    limits: SearchLimits = field(default_factory=SearchLimits)
    selection: dict | None = None  # the best attempt's confidence on the selection samples
    holdout: dict | None = None    # ... on the held-out samples (None: too few to hold out)
    notes: list[str] = field(default_factory=list)
    needs: str = ""  # what it would take, when not met

    @property
    def met_selection(self) -> bool:
        return self.budget.met(self.best.metric) and self.best.int8_share >= self.limits.min_int8_share

    def to_dict(self) -> dict:
        return {"budget": asdict(self.budget), "metric": self.budget.metric, "met": self.met,
                "met_selection": self.met_selection, "best": self.best.attempt,
                "min_int8_share": self.limits.min_int8_share, "selection": self.selection, "holdout": self.holdout,
                "notes": list(self.notes), "needs": self.needs, "attempts": [a.to_dict() for a in self.attempts]}


class _Search:
    def __init__(self, backend, budget: Budget, scorer: Scorer, selection: Samples, macs: dict,
                 limits: SearchLimits, say) -> None:
        self.backend, self.budget, self.scorer, self.selection = backend, budget, scorer, selection
        self.macs, self.limits, self.say = macs, limits, say
        self.attempts: list[Attempt] = []
        self.models: dict[int, object] = {}
        self.notes: list[str] = []
        self.start = time.perf_counter()

    def out_of_time(self, what: str) -> bool:
        spent = time.perf_counter() - self.start
        if spent <= self.limits.seconds or not self.attempts:  # the first attempt always runs
            return False
        self.notes.append(f"time bound {self.limits.seconds:g} s reached after {len(self.attempts)} attempts "
                          f"({spent:.0f} s): not tried: {what}")
        return True

    def try_model(self, changed: str, model, ranges: str, fixes, stage: str, floats=(), integer: bool = True):
        outputs, latency = self.backend.run(model, self.selection)
        metric, per = self.scorer.score(outputs)
        labels = [label for label, _ in floats]
        row = Attempt(len(self.attempts) + 1, changed, round(metric, 6), integer and not labels, round(latency, 4),
                      labels, ranges, list(fixes), stage, int8_share(self.macs, labels, integer and stage != "16x8"),
                      per, [k for _, keys in floats for k in keys])
        self.attempts.append(row)
        self.models[row.attempt] = model
        return row

    def counts(self, row: Attempt) -> bool:
        return row.int8_share >= self.limits.min_int8_share - 1e-9

    def met(self, row: Attempt) -> bool:
        return self.counts(row) and self.budget.met(row.metric)

    def best(self) -> Attempt:
        rows = [a for a in self.attempts if self.counts(a)] or self.attempts
        best = rows[0]
        for row in rows[1:]:
            if self.budget.better(row.metric, best.metric):
                best = row
        return best


def _fix_text(chain, whats) -> str:
    return ", ".join(f"{fix} ({what})" for fix, what in zip(chain, whats))


def explore(backend, budget: Budget, scorer: Scorer, selection: Samples, macs: dict, limits: SearchLimits,
            progress=None, default: bytes | None = None) -> tuple[_Search, Attempt]:
    """Run stages 0-3 on the selection samples; the search state and its best attempt.

    `default`: the exporter's own INT8 file (the INT8 steps its judge kept, converters.rounding), tried
    first (stage 0, "default"); the fallback does not start from it, since its steps are the file's,
    not a variant the backend can quantize again."""
    say = progress or (lambda text: None)
    search = _Search(backend, budget, scorer, selection, macs, limits, say)
    if default is not None:
        say("the default INT8 model (the INT8 steps convert kept)")
        row = search.try_model("the default INT8 model (convert's INT8 steps)", default, DEFAULT, (), DEFAULT)
        if search.met(row):
            return search, row
    variants = {}  # chain -> backend variant, for the fallback
    for chain in CHAINS:
        if search.out_of_time(f"the fixes {' + '.join(chain) or 'none'} and what follows"):
            return search, search.best()
        if chain:
            say(f"fix: {' + '.join(chain)}")
        variant, whats = backend.prepare(chain)
        if variant is None:
            search.notes.append(f"{' + '.join(chain)}: not tried ({whats})")
            continue
        variants[chain] = variant
        for method in backend.methods:
            chain_text = " + ".join(chain) or "no fix"
            if search.out_of_time(f"{method} {backend.range_word} after {chain_text}, and what follows"):
                return search, search.best()
            prefix = f"{_fix_text(chain, whats)}, " if chain else ""
            say(f"{prefix}{method} {backend.range_word}")
            row = search.try_model(f"{prefix}{method} {backend.range_word}", backend.quantize(variant, method),
                                   method, chain, "fix" if chain else "ranges")
            if search.met(row):
                return search, row
    integer_rows = [a for a in search.attempts if BIAS not in a.fixes and a.stage != DEFAULT]
    base = min(integer_rows, key=lambda a: a.metric) if budget.max_drop is not None else \
        max(integer_rows, key=lambda a: a.metric)
    base_variant = variants[tuple(base.fixes)]
    if limits.wide_activations and hasattr(backend, "wide") and not search.out_of_time("16x8 activations"):
        say("16x8: int16 activations, int8 weights (whole model)")
        try:
            search.try_model(f"16x8 activations (whole model{', ' + ', '.join(base.fixes) if base.fixes else ''})",
                             backend.wide(base_variant, base.ranges), "minmax", base.fixes, "16x8")
        except Exception as exc:  # noqa: BLE001  an option the quantizer or runtime may refuse: say so, go on
            from edgeact.errors import first_line

            search.notes.append(f"16x8 activations not tried: {first_line(exc, 200)}")
    _fallback(search, backend, base, base_variant)
    return search, search.best()


def _fallback(search: _Search, backend, base: Attempt, variant) -> None:
    """Probe each candidate layer alone in float, then keep them float cumulatively in order of recovery."""
    limits, budget = search.limits, search.budget
    if search.out_of_time("float fallback"):
        return
    search.say("float fallback: listing the candidate layers")
    grouped: dict[str, list[str]] = {}  # a layer the format writes as several ops is one candidate
    for label, key in backend.candidates(variant, base.ranges, search.models[base.attempt]):
        grouped.setdefault(label, [])
        if key not in grouped[label]:
            grouped[label].append(key)
    candidates = list(grouped.items())[:limits.max_candidates]
    if not candidates:
        search.notes.append("float fallback: no candidate layer found")
        return
    probes = []
    ranges = f"{base.ranges} {backend.range_word}"
    suffix = f" ({', '.join(base.fixes)}, {ranges})" if base.fixes else f" ({ranges})"
    for label, keys in candidates:
        if search.out_of_time(f"the float probes of {', '.join(c[0] for c in candidates[len(probes):])} "
                              "and the cumulative fallback"):
            return
        search.say(f"float probe: {label}")
        row = search.try_model(f"float probe: {label}{suffix}", backend.quantize(variant, base.ranges, keys),
                               base.ranges, base.fixes, "probe", [(label, keys)])
        probes.append(((label, keys), row))
        if search.met(row):
            return
    ranked = sorted(probes, key=lambda p: p[1].metric, reverse=budget.max_drop is None)  # stable: ties keep order
    floats = [ranked[0][0]]
    for candidate, _ in ranked[1:limits.max_fallback]:
        floats.append(candidate)
        labels = [label for label, _ in floats]
        if search.out_of_time(f"float: {', '.join(labels)} and beyond"):
            return
        search.say(f"float: {', '.join(labels)}")
        row = search.try_model(f"float: {', '.join(labels)}{suffix}",
                               backend.quantize(variant, base.ranges, [k for _, keys in floats for k in keys]),
                               base.ranges, base.fixes, "float", list(floats))
        if search.met(row):
            return


def finish(search: _Search, best: Attempt, holdout: Samples | None, holdout_scorer: Scorer | None) -> SearchResult:
    """The result: the best attempt judged on the selection and holdout samples, and what it would take."""
    budget, limits = search.budget, search.limits
    model = search.models[best.attempt]
    selection_outputs, _ = search.backend.run(model, search.selection)
    selection = search.scorer.confidence(selection_outputs)
    held = None
    if holdout is not None:
        outputs, _ = search.backend.run(model, holdout)
        held = holdout_scorer.confidence(outputs)
        held["met"] = budget.met(held["value"])
    else:
        search.notes.append("no holdout: too few evaluation samples to keep some aside "
                            "(the verdict rests on the samples the search selected on)")
    result = SearchResult(budget, search.attempts, best, model, False, limits, selection, held, search.notes)
    result.met = result.met_selection and (held is None or held["met"])
    result.needs = "" if result.met else _needs(result)
    return result


def _needs(result: SearchResult) -> str:
    """What it would take to meet the budget, from the attempts that were made."""
    budget, limits, best = result.budget, result.limits, result.best
    over = [a for a in result.attempts if budget.met(a.metric) and a.int8_share < limits.min_int8_share - 1e-9]
    if not result.met_selection and over:
        closest = max(over, key=lambda a: a.int8_share)
        what = "16x8 activations (no INT8 kernels)" if closest.stage == "16x8" else \
            f"{', '.join(closest.float_layers)} in float"
        return (f"attempt {closest.attempt} ({what}) meets the budget, but only {closest.int8_share:.0%} of the "
                f"conv/dense MACs are INT8 (bound {limits.min_int8_share:.0%}): that is not an INT8 model; "
                f"accept it with min_int8_share={closest.int8_share:g} (--min-int8-share), or relax the budget")
    if not result.met_selection:
        return (f"no attempt met the budget on the selection samples (best {budget.metric} {best.metric:.4g}): "
                "relax the budget, give more or better calibration data, or retrain with quantization in mind")
    held = result.holdout
    return (f"met on the selection samples ({budget.metric} {best.metric:.4g}), but not on the "
            f"{held['samples']} held-out samples ({held['value']:.4g}): the search fitted its selection "
            "samples; give more --eval-data")


__all__ = ["Attempt", "CHAINS", "SearchLimits", "SearchResult", "explore", "finish"]
