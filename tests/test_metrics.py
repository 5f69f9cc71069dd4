"""The agreement metrics on the degenerate outputs a broken conversion produces."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgeact.metrics import agreement, collapsed, cosine_similarity, sqnr_db, top1_agreement, topk_accuracy

RNG = np.random.default_rng(0)
SOFTMAX = RNG.dirichlet(np.ones(10), size=32).astype(np.float32)


def test_zero_candidate_against_a_real_reference_fails_every_metric():
    zeros = np.zeros_like(SOFTMAX)
    assert cosine_similarity(SOFTMAX, zeros) == 0.0
    assert sqnr_db(SOFTMAX, zeros) == pytest.approx(0.0)
    assert top1_agreement(SOFTMAX, zeros) == 0.0
    assert collapsed(SOFTMAX, zeros) == "all zero"


def test_zero_reference_against_a_real_candidate_is_no_match():
    zeros = np.zeros_like(SOFTMAX)
    assert cosine_similarity(zeros, SOFTMAX) == 0.0
    assert sqnr_db(zeros, SOFTMAX) == -math.inf


def test_two_zero_vectors_are_identical():
    zeros = np.zeros((4, 3))
    assert cosine_similarity(zeros, zeros) == 1.0
    assert sqnr_db(zeros, zeros) == math.inf
    assert collapsed(zeros, zeros) is None  # the reference carries nothing either


def test_constant_candidate_is_collapsed_and_never_agrees_on_top1():
    flat = np.full_like(SOFTMAX, 0.1)
    assert top1_agreement(SOFTMAX, flat) == 0.0  # argmax would say class 0 for every row
    assert collapsed(SOFTMAX, flat).startswith("constant")
    assert topk_accuracy(flat, np.zeros(len(flat), int)) == 0.0


def test_same_output_for_every_sample_is_collapsed():
    same = np.tile(SOFTMAX[:1], (len(SOFTMAX), 1))
    assert collapsed(SOFTMAX, same) == "the same for every sample"


def test_sign_flipped_output_has_negative_cosine_and_low_sqnr():
    logits = RNG.normal(size=(16, 5))
    assert cosine_similarity(logits, -logits) == pytest.approx(-1.0)
    # noise = (2x)^2 = 4 x^2: SQNR = 10 log10(1/4)
    assert sqnr_db(logits, -logits) == pytest.approx(10 * np.log10(0.25))
    assert top1_agreement(logits, -logits) < 0.5


def test_nan_anywhere_fails_cosine_and_sqnr():
    bad = SOFTMAX.copy()
    bad[3, 2] = np.nan
    assert math.isnan(cosine_similarity(SOFTMAX, bad))
    assert math.isnan(sqnr_db(SOFTMAX, bad))
    assert top1_agreement(SOFTMAX, bad) == 0.0
    assert collapsed(SOFTMAX, bad).startswith("not finite")
    # A NaN fails any ">=" threshold a check applies.
    assert not (cosine_similarity(SOFTMAX, bad) >= 0.98)


def test_agreement_matches_direct_numpy_on_a_noisy_copy():
    noisy = SOFTMAX + RNG.normal(0, 0.01, SOFTMAX.shape).astype(np.float32)
    result = agreement(SOFTMAX, noisy)
    ref, cand = SOFTMAX.astype(np.float64), noisy.astype(np.float64)
    expected_sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - cand) ** 2))
    assert result.sqnr_db == pytest.approx(expected_sqnr)
    assert result.max_abs_diff == pytest.approx(np.abs(ref - cand).max())
    assert result.relative_max_diff == pytest.approx(np.abs(ref - cand).max() / np.ptp(ref))
    assert result.collapsed is None


def test_single_value_outputs_have_no_top1():
    assert top1_agreement(np.ones((4, 1)), np.ones((4, 1))) is None


def test_near_ties_are_not_counted_as_top1_disagreements():
    from edgeact.metrics import resolution, top1_decisive

    # An INT8 softmax's values lie on a 1/256 grid; two rows of the float model are closer calls than that.
    ref = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.3334, 0.3333, 0.3333], [0.5, 0.5001, 0.0]])
    cand = np.round(np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.3320, 0.3359, 0.3320], [0.5039, 0.5, 0.0]])
                    * 256) / 256
    assert top1_agreement(ref, cand) == 0.5  # raw: the two ties flipped
    assert resolution(cand) == pytest.approx(1 / 256)
    assert top1_decisive(ref, cand) == (1.0, 2)
    wrong = cand.copy()
    wrong[0] = np.round(np.array([0.05, 0.9, 0.05]) * 256) / 256  # a decisive sample flipped: that one counts
    assert top1_decisive(ref, wrong) == (0.5, 2)
    assert agreement(ref, cand).top1_ties == 2
