"""Accuracy and agreement counted chunk by chunk: what a streamed evaluation keeps per sample.

A chunk's outputs are scored as soon as they arrive and then dropped. What is kept is small
and per sample (the top-1 class, top-1/top-5 hit bits, the cosine with the reference, the
reference's top-2 margin) or aggregated (sums, extremes, per-element minima and maxima, the
largest 0.1 % of the differences for the 99.9th percentile). `Tally` parts are plain dicts of
numpy arrays, so a finished chunk's part can be saved (`--resume`) and merged later; merging
the parts of chunks in chunk order gives the same numbers however the chunks were split over
runs or devices.

The figures are those of `edgeact.metrics.agreement` on the whole set, with two documented
differences of method: the 99.9th percentile interpolates linearly between the two largest-
ranked values it needs (numpy's 'linear'), and an output's resolution (the smallest gap
between its distinct values, which decides which samples are ties for top-1) is exact when
the output has at most `DISTINCT_CAP` distinct values (any INT8 output), else the smallest gap
found within one chunk.
"""
from __future__ import annotations

import math

import numpy as np

from edgeact.metrics import COLLAPSE_STEPS, INT8_STEPS, Agreement, topk_hits

DISTINCT_CAP = 4096
P999 = 99.9


def _flat(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(len(a), -1)


# -- accuracy ----------------------------------------------------------------------------------
def accuracy_part(scores: np.ndarray, labels: np.ndarray) -> dict:
    """A chunk's per-sample top-1 class and hit bits against its labels."""
    flat = _flat(scores)
    part = {"pred": np.argmax(flat, axis=1).astype(np.int32), "label": np.asarray(labels, np.int64).reshape(-1),
            "hit1": topk_hits(flat, labels, 1)}
    if flat.shape[1] > 5:
        part["hit5"] = topk_hits(flat, labels, 5)
    return part


def accuracy_result(parts: list[dict], classes: int) -> dict:
    """Top-1, top-5 (more than 5 classes) and per-class counts from the parts of every chunk."""
    hit1 = np.concatenate([p["hit1"] for p in parts])
    labels = np.concatenate([p["label"] for p in parts])
    out = {"top1": float(np.mean(hit1)),
           "top5": float(np.mean(np.concatenate([p["hit5"] for p in parts]))) if "hit5" in parts[0] else None,
           "samples": int(len(labels))}
    size = max(classes, int(labels.max()) + 1 if len(labels) else 0)
    out["per_class"] = {"samples": np.bincount(labels, minlength=size).tolist(),
                        "top1": np.bincount(labels[hit1], minlength=size).tolist()}
    return out


# -- agreement ---------------------------------------------------------------------------------
def tail_size(total_elements: int) -> int:
    """How many of the largest |differences| the 99.9th percentile over `total_elements` needs."""
    if total_elements <= 0:
        return 0
    return total_elements - int(math.floor((total_elements - 1) * P999 / 100))


def agreement_part(reference: np.ndarray, candidate: np.ndarray, tail: int) -> dict:
    """What one chunk contributes to the agreement of one output; `tail` from `tail_size` of the whole set."""
    ref, cand = _flat(reference), _flat(candidate)
    if ref.shape != cand.shape:
        raise ValueError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    diff = np.abs(ref - cand)
    ref_finite, cand_finite = bool(np.all(np.isfinite(ref))), bool(np.all(np.isfinite(cand)))
    dot = np.sum(ref * cand, axis=1)
    ref_norm, cand_norm = np.linalg.norm(ref, axis=1), np.linalg.norm(cand, axis=1)
    norms = ref_norm * cand_norm
    both_zero = (ref_norm == 0) & (cand_norm == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    flat_diff = diff.reshape(-1)
    keep = min(tail, flat_diff.size)
    largest = np.sort(np.partition(flat_diff, flat_diff.size - keep)[flat_diff.size - keep:]) if keep else \
        np.zeros(0)
    part = {
        "n": np.int64(len(ref)), "elements": np.int64(ref.size), "ref_finite": np.bool_(ref_finite),
        "cand_finite": np.bool_(cand_finite), "noise": np.float64(np.sum((ref - cand) ** 2)),
        "signal": np.float64(np.sum(ref ** 2)), "sum_abs": np.float64(np.sum(diff)),
        "max_abs": np.float64(diff.max() if diff.size else 0.0),
        "ref_min": np.float64(ref.min()), "ref_max": np.float64(ref.max()),
        "cand_min": np.float64(cand.min()), "cand_max": np.float64(cand.max()),
        "cand_nonzero": np.bool_(np.any(cand)), "ref_first": np.float64(ref.flat[0]),
        "cand_first": np.float64(cand.flat[0]),
        "ref_emin": ref.min(axis=0), "ref_emax": ref.max(axis=0),
        "cand_emin": cand.min(axis=0), "cand_emax": cand.max(axis=0),
        "cos": cos, "tail": largest,
    }
    for side, values in (("ref", ref), ("cand", cand)):
        distinct = np.unique(values)
        gaps = np.diff(distinct)
        part[f"{side}_gap"] = np.float64(gaps[gaps > 0].min() if np.any(gaps > 0) else np.inf)
        part[f"{side}_distinct"] = distinct if len(distinct) <= DISTINCT_CAP else np.zeros(0)
        part[f"{side}_overflow"] = np.bool_(len(distinct) > DISTINCT_CAP)
    if ref.shape[1] >= 2:
        same = np.argmax(ref, axis=1) == np.argmax(cand, axis=1)
        flat_cand, flat_ref = np.ptp(cand, axis=1) == 0, np.ptp(ref, axis=1) == 0
        top2 = np.sort(ref, axis=1)[:, -2:]
        part.update(same=same & ~(flat_cand | flat_ref), same_cand=same & ~flat_cand,
                    margin=top2[:, 1] - top2[:, 0], ref_absmax=np.max(np.abs(ref), axis=1))
    return part


class AgreementTally:
    """The agreement of one output, merged from chunk parts given in chunk order."""

    PER_SAMPLE = ("cos", "same", "same_cand", "margin", "ref_absmax")

    def __init__(self, tail: int) -> None:
        self.tail = tail
        self.state: dict | None = None
        self.samples: dict[str, list[np.ndarray]] = {}

    def add(self, part: dict) -> None:
        for key in self.PER_SAMPLE:
            if key in part:
                self.samples.setdefault(key, []).append(part[key])
        if self.state is None:
            self.state = {k: v for k, v in part.items() if k not in self.PER_SAMPLE}
            return
        s = self.state
        for key in ("n", "elements", "noise", "signal", "sum_abs"):
            s[key] = s[key] + part[key]
        for key in ("ref_finite", "cand_finite"):
            s[key] = s[key] and part[key]
        s["cand_nonzero"] = s["cand_nonzero"] or part["cand_nonzero"]
        for key in ("max_abs", "ref_max", "cand_max"):
            s[key] = max(s[key], part[key])
        for key in ("ref_min", "cand_min", "ref_gap", "cand_gap"):
            s[key] = min(s[key], part[key])
        for key, pick in (("ref_emin", np.minimum), ("ref_emax", np.maximum), ("cand_emin", np.minimum),
                          ("cand_emax", np.maximum)):
            s[key] = pick(s[key], part[key])
        merged = np.concatenate([s["tail"], part["tail"]])
        s["tail"] = np.sort(merged)[len(merged) - min(self.tail, len(merged)):]
        for side in ("ref", "cand"):
            overflow = bool(s[f"{side}_overflow"] or part[f"{side}_overflow"])
            distinct = np.union1d(s[f"{side}_distinct"], part[f"{side}_distinct"]) if not overflow else np.zeros(0)
            if len(distinct) > DISTINCT_CAP:
                overflow, distinct = True, np.zeros(0)
            s[f"{side}_overflow"], s[f"{side}_distinct"] = np.bool_(overflow), distinct

    def _resolution(self, side: str) -> float:
        s = self.state
        if not s[f"{side}_overflow"]:
            gaps = np.diff(s[f"{side}_distinct"])
            return float(gaps[gaps > 0].min()) if np.any(gaps > 0) else 0.0
        return float(s[f"{side}_gap"]) if math.isfinite(s[f"{side}_gap"]) else 0.0

    def result(self) -> Agreement:
        s = self.state
        per = {k: np.concatenate(v) for k, v in self.samples.items()}
        finite = bool(s["ref_finite"] and s["cand_finite"])
        n, elements = int(s["n"]), int(s["elements"])
        span = float(s["ref_max"] - s["ref_min"])
        max_abs = float(s["max_abs"]) if finite else math.nan
        sqnr = math.nan if not finite else math.inf if s["noise"] == 0 else -math.inf if s["signal"] == 0 else \
            float(10 * np.log10(s["signal"] / s["noise"]))
        top1, decisive, ties = None, None, 0
        if "same" in per:
            top1 = float(np.mean(per["same"])) if finite else 0.0
            if not finite:
                decisive = 0.0
            else:
                step = np.maximum(max(self._resolution("ref"), self._resolution("cand")), per["ref_absmax"] / 256)
                mask = per["margin"] > step
                ties = int(np.sum(~mask))
                decisive = float(np.mean(per["same_cand"][mask])) if mask.any() else None
        return Agreement(
            samples=n, top1_agreement=top1, cosine=float(np.mean(per["cos"])) if finite else math.nan,
            max_abs_diff=max_abs, mean_abs_diff=float(s["sum_abs"] / elements) if finite else math.nan,
            sqnr_db=sqnr,
            relative_max_diff=(max_abs / span if span > 0 else (0.0 if max_abs == 0 else math.inf)),
            collapsed=self._collapsed(span), top1_agreement_decisive=decisive, top1_ties=ties,
            relative_p999_diff=self._p999(elements, span, finite), reference_static=self._static(span))

    def _p999(self, elements: int, span: float, finite: bool) -> float:
        if not finite:
            return math.nan
        tail = self.state["tail"]  # ascending: the largest values, rank elements - len(tail) .. elements - 1
        position = (elements - 1) * P999 / 100
        low = int(math.floor(position))
        first = elements - len(tail)
        a, b = tail[low - first], tail[min(low + 1, elements - 1) - first]
        high = float(a + (b - a) * (position - low))
        return high / span if span > 0 else (0.0 if high == 0 else math.inf)

    def _collapsed(self, span: float) -> str | None:
        s = self.state
        if not s["cand_finite"]:
            return "not finite (NaN or inf)"
        if span == 0:
            return None
        if not s["cand_nonzero"]:
            return "all zero"
        if s["cand_max"] == s["cand_min"]:
            return f"constant ({s['cand_first']:.4g} everywhere)"
        if s["n"] > 1 and np.all(s["cand_emax"] == s["cand_emin"]) \
                and np.max(s["ref_emax"] - s["ref_emin"]) > COLLAPSE_STEPS * span / INT8_STEPS:
            return "the same for every sample"
        return None

    def _static(self, span: float) -> str | None:
        s = self.state
        if not s["ref_finite"]:
            return None
        if span == 0:
            return f"constant ({s['ref_first']:.4g} for every sample)"
        if s["n"] < 2:
            return None
        variation = float(np.max(s["ref_emax"] - s["ref_emin"]))
        if variation <= span / INT8_STEPS:
            return (f"the same for every sample (no value moves by more than {variation:.2g} across samples, under "
                    f"one 8-bit step of its range {span:.3g})")
        return None


# -- saving parts --------------------------------------------------------------------------------
def pack(parts: dict[str, dict]) -> dict[str, np.ndarray]:
    """`{group: {key: array}}` as flat npz keys `group|key` (output names may hold '/' or '.')."""
    return {f"{group}|{key}": np.asarray(value) for group, part in parts.items() for key, value in part.items()}


def unpack(arrays: dict[str, np.ndarray]) -> dict[str, dict]:
    parts: dict[str, dict] = {}
    for name, value in arrays.items():
        group, key = name.rsplit("|", 1)
        parts.setdefault(group, {})[key] = value[()] if value.ndim == 0 else value
    return parts
