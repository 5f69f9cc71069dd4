"""edgeact.stats: the budget's intervals against independent implementations (exact enumeration, scipy)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from edgeact.stats import (
    agreement_interval,
    binomial_cdf,
    bootstrap_sqnr,
    clopper_pearson,
    drop_from_counts,
    mcnemar_p_value,
    paired_drop,
    samples_to_certify_agreement,
    samples_to_certify_drop,
)

CASES = [(0, 10), (1, 10), (3, 20), (10, 20), (20, 20), (7, 250), (120, 400), (1, 2000)]


def _tail_exact(k: int, n: int, p: Fraction) -> float:
    """P(X <= k), X ~ binomial(n, p), in exact rational arithmetic (brute-force enumeration)."""
    return float(sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k + 1)))


@pytest.mark.parametrize("k, n", CASES)
def test_binomial_cdf_matches_exact_enumeration(k, n):
    for p in (Fraction(1, 100), Fraction(1, 3), Fraction(9, 10)):
        assert binomial_cdf(k, n, float(p)) == pytest.approx(_tail_exact(k, n, p), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("k, n", CASES)
def test_clopper_pearson_ends_are_where_the_exact_tails_are_two_and_a_half_percent(k, n):
    low, high = clopper_pearson(k, n)
    # Independently: at the upper end P(X <= k) is 2.5 %, at the lower end P(X >= k) is 2.5 %,
    # both by exact rational enumeration of the binomial.
    if k < n:
        assert _tail_exact(k, n, Fraction(high)) == pytest.approx(0.025, abs=1e-9)
    else:
        assert high == 1.0
    if k > 0:
        assert 1 - _tail_exact(k - 1, n, Fraction(low)) == pytest.approx(0.025, abs=1e-9)
    else:
        assert low == 0.0


@pytest.mark.parametrize("k, n", CASES)
def test_clopper_pearson_and_mcnemar_match_scipy(k, n):
    stats = pytest.importorskip("scipy.stats")
    test = stats.binomtest(k, n)
    ci = test.proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)
    b, c = k, n - k  # the split of n discordant pairs: McNemar's exact test is binomial(n, 1/2)
    assert mcnemar_p_value(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_paired_drop_is_the_mcnemar_interval_of_the_discordant_pairs():
    rng = np.random.default_rng(3)
    f = rng.random(500) < 0.9
    q = f.copy()
    q[rng.choice(np.flatnonzero(f), 14, replace=False)] = False   # b = 14: float right, INT8 wrong
    q[rng.choice(np.flatnonzero(~f), 4, replace=False)] = True    # c = 4
    d = paired_drop(f, q)
    assert (d.float_only, d.int8_only, d.samples) == (14, 4, 500)
    assert d.drop_pp == pytest.approx(100 * (np.mean(f) - np.mean(q)))
    # The discordant split and the discordant rate, each exact at 97.5 % (checked against enumeration above).
    p_low, p_high = clopper_pearson(14, 18, 0.975)
    q_low, q_high = clopper_pearson(18, 500, 0.975)
    assert d.high_pp == pytest.approx(100 * q_high * (2 * p_high - 1))
    assert d.low_pp == pytest.approx(100 * (2 * p_low - 1) * (q_high if p_low < 0.5 else q_low))
    assert d.low_pp < d.drop_pp < d.high_pp
    # No discordant pair: not a certainty, but the bound on a discordance of 0 in n (about 3.7 / n).
    none = drop_from_counts(0, 0, 1000)
    assert none.high_pp == pytest.approx(100 * clopper_pearson(0, 1000, 0.975)[1]) and none.low_pp == -none.high_pp
    assert 0.35 < none.high_pp < 0.45


def test_the_drop_interval_covers_the_true_drop_in_95_percent_of_simulated_eval_sets():
    rng = np.random.default_rng(0)
    n, rate_b, rate_c = 400, 0.03, 0.01  # true drop 2 pp
    covered = 0
    trials = 400
    for _ in range(trials):
        u = rng.random(n)
        b, c = int(np.sum(u < rate_b)), int(np.sum((u >= rate_b) & (u < rate_b + rate_c)))
        d = drop_from_counts(b, c, n)
        covered += d.low_pp <= 2.0 <= d.high_pp
    assert covered / trials >= 0.95


def test_samples_to_certify_is_the_smallest_count_whose_interval_fits():
    d = drop_from_counts(12, 6, 600)  # drop 1 pp, budget 2 pp: not certified on 600
    assert d.high_pp > 2.0
    needed = samples_to_certify_drop(d, 2.0)
    rate_b, rate_c = 12 / 600, 6 / 600

    def high(n):
        return drop_from_counts(round(rate_b * n), round(rate_c * n), n).high_pp

    assert high(needed) <= 2.0 and high(needed - 1) > 2.0
    assert samples_to_certify_drop(drop_from_counts(30, 0, 600), 2.0) is None  # 5 pp measured: never
    rate = agreement_interval(np.arange(300) % 50 != 0)  # 98 % agreement on 300
    wanted = samples_to_certify_agreement(rate, 0.97)
    assert clopper_pearson(round(0.98 * wanted), wanted)[0] >= 0.97 > clopper_pearson(
        round(0.98 * (wanted - 1)), wanted - 1)[0]


def test_bootstrap_sqnr_brackets_the_measured_sqnr():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(200, 10))
    candidate = reference + 0.05 * rng.normal(size=(200, 10))
    rate = bootstrap_sqnr(reference, candidate)
    direct = 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - candidate) ** 2))
    assert rate.value == pytest.approx(direct) and rate.low < direct < rate.high
    assert rate.high - rate.low < 2.0  # 200 samples: about a dB either way
