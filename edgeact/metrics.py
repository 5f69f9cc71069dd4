"""Accuracy and agreement metrics, computed with numpy alone (they run on the device too)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    """How close a candidate model's outputs are to a reference's, on the same inputs.

    `top1_agreement` is None for outputs that are not class scores (one value per sample).
    """

    samples: int
    top1_agreement: float | None
    cosine: float
    max_abs_diff: float
    mean_abs_diff: float
    sqnr_db: float

    def to_dict(self) -> dict:
        return asdict(self)


def _flat(outputs: np.ndarray) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64)
    return outputs.reshape(len(outputs), -1)


def cosine_similarity(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean over samples of the cosine between flattened outputs; 1.0 where both are zero."""
    ref, cand = _flat(reference), _flat(candidate)
    dot = np.sum(ref * cand, axis=1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    both_zero = norms == 0
    cos = np.where(both_zero, 1.0, dot / np.where(both_zero, 1.0, norms))
    return float(np.mean(cos))


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal to quantization-noise ratio in dB over all values; inf when identical."""
    ref, cand = _flat(reference), _flat(candidate)
    noise = float(np.sum((ref - cand) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """Fraction of samples whose arg-max class is the same; None if outputs are not class scores."""
    ref, cand = _flat(reference), _flat(candidate)
    if ref.shape[1] < 2:
        return None
    return float(np.mean(np.argmax(ref, axis=1) == np.argmax(cand, axis=1)))


def agreement(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    """All agreement metrics of one output, over a batch of samples."""
    reference = np.asarray(reference)
    candidate = np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise ValueError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    diff = np.abs(_flat(reference) - _flat(candidate))
    return Agreement(
        samples=int(len(reference)),
        top1_agreement=top1_agreement(reference, candidate),
        cosine=cosine_similarity(reference, candidate),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        sqnr_db=sqnr_db(reference, candidate),
    )


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the k highest scores."""
    scores = _flat(scores)
    labels = np.asarray(labels).reshape(-1)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))
