"""Issue 21's verdict rules on arrays built here: a dense map by SQNR and its 99.9th-percentile error (one
outlier element does not decide), a static float model is a data problem, an INT8 collapse is not."""
from __future__ import annotations

import numpy as np

from converters.verify import DATA_PROBLEM, judge
from edgeact.config import Tolerances
from edgeact.errors import first_line, shorten
from edgeact.metrics import agreement
from edgeact.report.records import OutputKind


def int8_like(ref: np.ndarray, steps: int = 255) -> np.ndarray:
    """`ref` rounded to `steps` levels of its range: what an INT8 output of it looks like."""
    low, span = ref.min(), np.ptp(ref)
    return np.round((ref - low) / span * steps) / steps * span + low


def dense(metrics):
    return judge(metrics, OutputKind.DENSE, Tolerances(), exact=False)


def test_an_int8_map_above_30_db_passes_despite_one_outlier_element():
    ref = np.random.default_rng(0).normal(size=(8, 27, 27, 4)).astype(np.float32)
    cand = int8_like(ref)
    cand[3, 5, 5, 1] += 0.4 * np.ptp(ref)  # one element of 23,328 far off: its max |diff| is 0.4 of the range
    m = agreement(ref, cand)
    assert m.sqnr_db > 30 and m.relative_max_diff > Tolerances().max_relative_diff
    assert dense(m) == (True, "")


def test_a_map_at_10_db_fails_on_sqnr():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(8, 27, 27, 4)).astype(np.float32)
    cand = ref + rng.normal(scale=np.sqrt(0.1) * ref.std(), size=ref.shape)  # noise power a tenth: 10 dB
    m = agreement(ref, cand)
    assert abs(m.sqnr_db - 10) < 0.5
    passed, why = dense(m)
    assert not passed and "SQNR" in why


def test_a_constant_float_model_is_a_data_problem_and_an_int8_collapse_is_not():
    static = np.tile(np.array([[0.1, 0.7, 0.2]], np.float32), (10, 1))  # float: the same for every sample
    m = agreement(static, static + 1e-4)
    passed, why = judge(m, OutputKind.CLASS_SCORES, Tolerances(), exact=False, exercised=False)
    assert not passed and why.startswith(DATA_PROBLEM) and "collapsed" not in why
    varying = np.random.default_rng(2).dirichlet(np.ones(3), size=10).astype(np.float32)
    m = agreement(varying, np.tile(varying[:1], (10, 1)))  # INT8 the same for every sample, float varies
    passed, why = judge(m, OutputKind.CLASS_SCORES, Tolerances(), exact=False)
    assert not passed and why == "the output collapsed: the same for every sample"


def test_a_library_message_is_cut_at_a_clause_boundary_never_mid_word():
    text = ("Exception encountered when calling Cropping1D.call().\n\n`cropping` parameter of `Cropping1D` layer "
            "must be smaller than the input length, received: inputs.shape=(None, 4, 8), cropping=(2, 3); check "
            "the sizes you gave. Arguments received by Cropping1D.call(): inputs=tf.Tensor(shape=(None, 4, 8))")
    line = first_line(ValueError(text), 150)
    assert line.startswith("`cropping` parameter of") and len(line) <= 150  # the wrapper line replaced by its cause
    assert line.endswith("…") and line[:-1].rstrip().endswith(("length", "cropping=(2, 3)", "gave."))
    kept = line.rstrip(" …")
    cause = text.split("\n\n", 1)[1]
    assert cause.startswith(kept) and cause[len(kept)] in " ;,.", line  # a prefix of the cause, ending at a boundary
    assert shorten("abcdefghij klmnopqrstuvwxyz", 20) == "abcdefghij…"
