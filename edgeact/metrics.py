"""Accuracy and agreement metrics, computed with numpy alone (they run on the device too).

Every metric is defined for the degenerate cases a broken conversion produces, and none of
them can make a broken model look right:
- a zero output against a non-zero reference has cosine 0 and SQNR 0 dB (only two zero
  vectors are identical: cosine 1, SQNR inf);
- NaN or infinite values anywhere make cosine and SQNR NaN, which fails every threshold;
- a sample whose candidate scores are all equal (a collapsed softmax) never agrees on top-1,
  whatever `argmax` would pick;
- `collapsed()` names an output that is the same for every sample, or constant within each
  sample, so a report can say "collapsed" instead of quoting meaningless numbers;
- `static_reference()` names a *float* output that does not change from sample to sample: no
  comparison on such data can tell a good conversion from a broken one (a data problem);
- `relative_p999_diff` judges a dense map by its 99.9th-percentile error, so one element of
  35,000 cannot decide the verdict alone (the max is still reported).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    """How close a candidate model's outputs are to a reference's, on the same inputs.

    `top1_agreement` is None for outputs that are not class scores (one value per sample).
    `relative_max_diff` is `max_abs_diff` over the reference's range (max - min);
    `relative_p999_diff` the 99.9th percentile of |diff| over the same range.
    """

    samples: int
    top1_agreement: float | None
    cosine: float
    max_abs_diff: float
    mean_abs_diff: float
    sqnr_db: float
    relative_max_diff: float = 0.0
    collapsed: str | None = None  # why the candidate output carries no information, if it does not
    # Top-1 over the samples where the reference is decisive: its top-2 margin is more than the
    # outputs' resolution (an INT8 output's scale). Closer calls are ties INT8 cannot resolve.
    top1_agreement_decisive: float | None = None
    top1_ties: int = 0
    relative_p999_diff: float = 0.0
    reference_static: str | None = None  # why the reference itself does not vary across samples, if it does not

    def to_dict(self) -> dict:
        return asdict(self)


def _flat(outputs: np.ndarray) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64)
    return outputs.reshape(len(outputs), -1)


def _finite(*arrays: np.ndarray) -> bool:
    return all(bool(np.all(np.isfinite(a))) for a in arrays)


def cosine_similarity(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over samples of the cosine between flattened outputs.

    1.0 only where both vectors are zero; 0.0 where exactly one is; NaN if any value is not finite.
    """
    ref, cand = _flat(reference), _flat(candidate)
    if not _finite(ref, cand):
        return math.nan
    dot = np.sum(ref * cand, axis=1)
    ref_norm, cand_norm = np.linalg.norm(ref, axis=1), np.linalg.norm(cand, axis=1)
    norms = ref_norm * cand_norm
    both_zero = (ref_norm == 0) & (cand_norm == 0)
    cos = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    return float(np.mean(cos))


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal to quantization-noise ratio in dB over all values.

    inf when identical, -inf when the reference is zero and the candidate is not, NaN if any
    value is not finite. A zero candidate against a non-zero reference is 0 dB.
    """
    ref, cand = _flat(reference), _flat(candidate)
    if not _finite(ref, cand):
        return math.nan
    noise = float(np.sum((ref - cand) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return float(10 * np.log10(signal / noise))


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """Fraction of samples whose arg-max class is the same; None if outputs are not class scores.

    A sample whose candidate (or reference) scores are all equal has no arg-max and counts as
    a disagreement.
    """
    ref, cand = _flat(reference), _flat(candidate)
    if ref.shape[1] < 2:
        return None
    if not _finite(ref, cand):
        return 0.0
    flat = (np.ptp(cand, axis=1) == 0) | (np.ptp(ref, axis=1) == 0)
    same = (np.argmax(ref, axis=1) == np.argmax(cand, axis=1)) & ~flat
    return float(np.mean(same))


def resolution(values: np.ndarray) -> float:
    """The smallest step between distinct values: an INT8 output's scale, ~0 for a float output."""
    distinct = np.unique(np.asarray(values, dtype=np.float64))
    gaps = np.diff(distinct)
    return float(gaps[gaps > 0].min()) if np.any(gaps > 0) else 0.0


def top1_decisive(reference: np.ndarray, candidate: np.ndarray) -> tuple[float | None, int]:
    """(top-1 agreement where the reference's top-2 margin exceeds what 8 bits resolve, number of ties).

    A near-uniform softmax (an untrained or uncertain model) has top-2 margins smaller than
    one step of an INT8 output (1/256 for a softmax) or than 1/256 of the row's largest
    score; no INT8 model resolves those, so they count as ties, not disagreements.
    """
    ref, cand = _flat(reference), _flat(candidate)
    if ref.shape[1] < 2:
        return None, 0
    if not _finite(ref, cand):
        return 0.0, 0
    # One step of the outputs' grid, or one 8-bit step of the row's largest score (|max| / 256),
    # whichever is larger: INT8 activations carry about that much error at every layer.
    step = np.maximum(max(resolution(ref), resolution(cand)), np.max(np.abs(ref), axis=1) / 256)
    top2 = np.sort(ref, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > step
    ties = int(np.sum(~decisive))
    if not decisive.any():
        return None, ties
    flat = np.ptp(cand, axis=1) == 0
    same = (np.argmax(ref, axis=1) == np.argmax(cand, axis=1)) & ~flat
    return float(np.mean(same[decisive])), ties


# One 8-bit step of an output's range: variation below it is invisible to an INT8 model.
INT8_STEPS = 255
# An INT8 output that is the same for every sample has collapsed only where the float output moves
# by more than this many 8-bit steps of its range; within a few steps, rounding alone can merge
# the samples (two held-out images 2 steps apart), and the values' metrics judge it instead.
COLLAPSE_STEPS = 4


def static_reference(reference: np.ndarray) -> str | None:
    """Why a reference output carries no sample-to-sample information; None if it does.

    "constant (v everywhere)", or "the same for every sample" when no element varies across
    the samples by more than one 8-bit step of the output's range (an INT8 model cannot show
    a smaller change, and no check can tell a broken conversion from a good one on such data).
    Not finite and empty outputs are left to the other metrics (None).
    """
    ref = _flat(reference)
    if ref.size == 0 or not _finite(ref):
        return None
    span = float(np.ptp(ref))
    if span == 0:
        return f"constant ({ref.flat[0]:.4g} for every sample)"
    if len(ref) < 2:
        return None
    variation = float(np.max(np.ptp(ref, axis=0)))
    if variation <= span / INT8_STEPS:
        return (f"the same for every sample (no value moves by more than {variation:.2g} across samples, under "
                f"one 8-bit step of its range {span:.3g})")
    return None


def relative_percentile_diff(reference: np.ndarray, candidate: np.ndarray, q: float = 99.9) -> float:
    """The q-th percentile of |reference - candidate| over the reference's range; NaN if anything is not finite.

    0 when both are equal (a zero range included), inf for a difference against a zero range.
    """
    ref, cand = _flat(reference), _flat(candidate)
    if ref.size == 0:
        return 0.0
    if not _finite(ref, cand):
        return math.nan
    high = float(np.percentile(np.abs(ref - cand), q))
    span = float(np.ptp(ref))
    return high / span if span > 0 else (0.0 if high == 0 else math.inf)


def collapsed(reference: np.ndarray, candidate: np.ndarray) -> str | None:
    """Why the candidate output carries no information where the reference does; None if it does.

    "all zero", "constant" (one value everywhere), "the same for every sample" (while the
    reference varies across samples by more than COLLAPSE_STEPS 8-bit steps of its range) or "not finite".
    """
    ref, cand = _flat(reference), _flat(candidate)
    if not _finite(cand):
        return "not finite (NaN or inf)"
    if cand.size == 0 or np.ptp(ref) == 0:
        return None
    if not np.any(cand):
        return "all zero"
    if np.ptp(cand) == 0:
        return f"constant ({cand.flat[0]:.4g} everywhere)"
    if len(cand) > 1 and np.all(np.ptp(cand, axis=0) == 0) \
            and np.max(np.ptp(ref, axis=0)) > COLLAPSE_STEPS * np.ptp(ref) / INT8_STEPS:
        return "the same for every sample"
    return None


def agreement(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    """All agreement metrics of one output, over a batch of samples."""
    reference = np.asarray(reference)
    candidate = np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    ref, cand = _flat(reference), _flat(candidate)
    finite = _finite(ref, cand)
    diff = np.abs(ref - cand)
    max_abs = float(diff.max()) if diff.size and finite else (0.0 if not diff.size else math.nan)
    span = float(np.ptp(ref)) if ref.size else 0.0
    decisive, ties = top1_decisive(reference, candidate)
    return Agreement(
        samples=int(len(reference)),
        top1_agreement=top1_agreement(reference, candidate),
        cosine=cosine_similarity(reference, candidate),
        max_abs_diff=max_abs,
        mean_abs_diff=float(diff.mean()) if diff.size and finite else (0.0 if not diff.size else math.nan),
        sqnr_db=sqnr_db(reference, candidate),
        relative_max_diff=(max_abs / span if span > 0 else (0.0 if max_abs == 0 else math.inf)),
        collapsed=collapsed(reference, candidate),
        top1_agreement_decisive=decisive,
        top1_ties=ties,
        relative_p999_diff=relative_percentile_diff(reference, candidate),
        reference_static=static_reference(reference),
    )


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> np.ndarray:
    """Per sample: whether its label is among the k highest scores (a flat row never counts)."""
    scores = _flat(scores)
    labels = np.asarray(labels).reshape(-1)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    informative = np.ptp(scores, axis=1) > 0 if scores.shape[1] > 1 else np.ones(len(scores), bool)
    return np.any(top == labels[:, None], axis=1) & informative


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the k highest scores (a flat row never counts)."""
    return float(np.mean(topk_hits(scores, labels, k)))
