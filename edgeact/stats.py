"""How sure a paired comparison is: exact binomial intervals, numpy and the standard library only.

An accuracy budget compares the INT8 model with the float model on the *same* samples, so the
samples pair up. For a top-1 drop only the discordant pairs carry information:

    b = samples float gets right and INT8 gets wrong
    c = samples INT8 gets right and float gets wrong
    drop = (b - c) / n

Given m = b + c discordant pairs, b is binomial(m, p) (McNemar's exact test), and
drop = q (2p - 1) with q the discordant rate. `paired_drop` takes the exact (Clopper-Pearson)
interval of p *and* of q, each at 97.5 %, and the drop's extremes over both (Bonferroni: the
interval holds at 95 % at least). Taking p's interval alone, as if m were fixed, is McNemar's
conditional interval; it covered the true drop in only 92 % of simulated eval sets of 400
samples (tests/test_budget_stats.py), because the number of discordant pairs varies too. With
no discordant pair at all p is anything in [0, 1] and the interval is plus or minus q's upper
bound (0 seen in n samples: about 4.4/n).

    >>> d = paired_drop(float_correct, int8_correct)
    >>> d.drop_pp, d.low_pp, d.high_pp, d.resolution_pp
    >>> samples_to_certify_drop(d, budget_pp=0.5)   # samples at the same rates whose interval fits

`agreement_interval` is Clopper-Pearson on the agreeing samples; `bootstrap_sqnr` a paired
percentile bootstrap of output SQNR over samples.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95
_BISECT_STEPS = 60  # 2**-60: far below any probability worth printing


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ binomial(n, p), summed in log space (exact for any n a data set has)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    i = np.arange(k + 1, dtype=np.float64)
    steps = np.log(n - i[1:] + 1) - np.log(i[1:])  # log C(n, j) = sum over 1..j of log((n - i + 1) / i)
    log_choose = np.concatenate([[0.0], np.cumsum(steps)])
    terms = log_choose + i * math.log(p) + (n - i) * math.log1p(-p)
    peak = float(terms.max())
    return float(min(1.0, math.exp(peak) * np.exp(terms - peak).sum()))


def _bisect(f, target: float) -> float:
    """The p in [0, 1] where the decreasing function f(p) crosses target."""
    low, high = 0.0, 1.0
    for _ in range(_BISECT_STEPS):
        mid = (low + high) / 2
        if f(mid) > target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion, k successes in n trials."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"{k} successes in {n} trials")
    alpha = 1.0 - confidence
    # high: P(X <= k | high) = alpha/2; low by symmetry: k successes are n - k failures
    low = 0.0 if k == 0 else 1.0 - _bisect(lambda q: binomial_cdf(n - k, n, q), alpha / 2)
    high = 1.0 if k == n else _bisect(lambda p: binomial_cdf(k, n, p), alpha / 2)
    return low, high


def mcnemar_p_value(b: int, c: int) -> float:
    """Two-sided exact McNemar test: twice the smaller binomial(b + c, 1/2) tail, at most 1."""
    m = b + c
    if m == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_cdf(min(b, c), m, 0.5))


@dataclass(frozen=True)
class PairedDrop:
    """A top-1 drop (percentage points) on n paired samples, with its interval and resolution."""

    samples: int
    float_only: int  # b: float right, INT8 wrong
    int8_only: int   # c: INT8 right, float wrong
    drop_pp: float
    low_pp: float
    high_pp: float
    resolution_pp: float  # the half-width of the interval around a zero drop at this discordance
    p_value: float
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _drop_bounds(b: int, c: int, n: int, confidence: float) -> tuple[float, float]:
    """drop = q (2p - 1): q the discordant rate m / n, p the share b / m of the discordant pairs.
    Both are exact (Clopper-Pearson) at 1 - alpha/2 each, so the pair holds at `confidence`
    (Bonferroni); the drop's ends are the extremes over that box."""
    m = b + c
    each = 1.0 - (1.0 - confidence) / 2
    q_low, q_high = clopper_pearson(m, n, each)
    p_low, p_high = clopper_pearson(b, m, each) if m else (0.0, 1.0)
    low, high = 2 * p_low - 1, 2 * p_high - 1
    return low * (q_high if low < 0 else q_low), high * (q_high if high > 0 else q_low)


def paired_drop(float_correct, int8_correct, confidence: float = CONFIDENCE) -> PairedDrop:
    """The drop from float to INT8 top-1 accuracy on the same samples, with its exact interval."""
    f = np.asarray(float_correct, bool).reshape(-1)
    q = np.asarray(int8_correct, bool).reshape(-1)
    if f.shape != q.shape or not f.size:
        raise ValueError(f"paired samples needed: {f.size} float and {q.size} INT8 results")
    return drop_from_counts(int(np.sum(f & ~q)), int(np.sum(~f & q)), int(f.size), confidence)


def drop_from_counts(b: int, c: int, n: int, confidence: float = CONFIDENCE) -> PairedDrop:
    low, high = _drop_bounds(b, c, n, confidence)
    half = (b + c + 1) // 2  # the same discordance split evenly: a zero drop
    zero_low, zero_high = _drop_bounds(half, half, n, confidence) if half else _drop_bounds(0, 0, n, confidence)
    return PairedDrop(n, b, c, 100.0 * (b - c) / n, 100.0 * low, 100.0 * high, 100.0 * zero_high,
                      mcnemar_p_value(b, c), confidence)


def _smallest(n: int, fits, limit: int = 10_000_000) -> int | None:
    """The smallest sample count >= n for which fits(count) holds (monotone), or None below limit."""
    if fits(n):
        return n
    high = n
    while not fits(high):
        high *= 2
        if high > limit:
            return None
    low = high // 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    return high


def samples_to_certify_drop(drop: PairedDrop, budget_pp: float) -> int | None:
    """Samples at the same discordant rates whose interval's upper end is within the budget
    (this many, or more); None when the observed drop itself is not below the budget."""
    if drop.drop_pp >= budget_pp:
        return None
    rate_b, rate_c = drop.float_only / drop.samples, drop.int8_only / drop.samples

    def fits(n: int) -> bool:
        scaled = drop_from_counts(int(round(rate_b * n)), int(round(rate_c * n)), n, drop.confidence)
        return scaled.high_pp <= budget_pp

    return _smallest(drop.samples, fits)


@dataclass(frozen=True)
class RateInterval:
    """A proportion (e.g. top-1 agreement) with its exact interval."""

    samples: int
    value: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def agreement_interval(agree, confidence: float = CONFIDENCE) -> RateInterval:
    a = np.asarray(agree, bool).reshape(-1)
    k, n = int(a.sum()), int(a.size)
    low, high = clopper_pearson(k, n, confidence)
    return RateInterval(n, k / n if n else 0.0, low, high, confidence)


def samples_to_certify_agreement(rate: RateInterval, minimum: float) -> int | None:
    """Samples at the same agreement rate whose interval's lower end reaches `minimum`."""
    if rate.value <= minimum:
        return None
    return _smallest(rate.samples, lambda n: clopper_pearson(int(round(rate.value * n)), n, rate.confidence)[0]
                     >= minimum)


def bootstrap_sqnr(reference: np.ndarray, candidate: np.ndarray, rounds: int = 1000, seed: int = 0,
                   confidence: float = CONFIDENCE) -> RateInterval:
    """Output SQNR (dB) with a paired percentile bootstrap interval: samples resampled with replacement."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    err = ref - np.asarray(candidate, np.float64).reshape(len(candidate), -1)
    signal, noise = np.sum(ref ** 2, axis=1), np.sum(err ** 2, axis=1)

    def sqnr(s, e):
        with np.errstate(divide="ignore"):
            return np.where(e > 0, 10 * np.log10(np.maximum(s, 1e-300) / np.maximum(e, 1e-300)), np.inf)

    n = len(ref)
    picks = np.random.default_rng(seed).integers(0, n, (rounds, n))
    values = sqnr(signal[picks].sum(1), noise[picks].sum(1))
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return RateInterval(n, float(sqnr(signal.sum(), noise.sum())), float(low), float(high), confidence)


def samples_to_certify_sqnr(rate: RateInterval, minimum: float) -> int | None:
    """Samples whose bootstrap lower end would reach `minimum`, the half-width shrinking as 1/sqrt(n)."""
    if rate.value <= minimum or not math.isfinite(rate.low):
        return None
    half = rate.value - rate.low
    if half <= 0 or rate.low >= minimum:
        return rate.samples
    return int(math.ceil(rate.samples * (half / (rate.value - minimum)) ** 2))


__all__ = ["CONFIDENCE", "PairedDrop", "RateInterval", "agreement_interval", "binomial_cdf", "bootstrap_sqnr",
           "clopper_pearson", "drop_from_counts", "mcnemar_p_value", "paired_drop", "samples_to_certify_agreement",
           "samples_to_certify_drop", "samples_to_certify_sqnr"]
