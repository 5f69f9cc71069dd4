"""The search: range methods first, then float fallback of the layer at fault, until the budget is met."""
from __future__ import annotations

import numpy as np
import pytest

from converters.budget.tflite import BudgetNotMetError, render_attempts, require_budget, search_tflite
from converters.options import Budget
from edgeact.data.samples import Samples

from .helpers import build_one_bad_layer


@pytest.fixture(scope="module")
def one_bad_layer(keras):
    return build_one_bad_layer(keras, "relu6")


def test_an_integer_fix_wins_before_any_fallback(keras):
    model, calibration, x = build_one_bad_layer(keras, "relu")
    result = search_tflite(model, calibration, Samples({"image": x}), Budget(min_agreement=0.95))
    assert result.met and result.best.full_integer
    assert result.best.changed.startswith("equalize")
    assert all(a.full_integer for a in result.attempts)  # it stopped before trying any float layer


def test_fallback_meets_the_budget_by_keeping_the_one_bad_layer_float(one_bad_layer):
    model, calibration, x = one_bad_layer
    result = search_tflite(model, calibration, Samples({"image": x}), Budget(min_agreement=0.95))
    plain = result.attempts[0]
    assert plain.changed == "minmax ranges" and plain.metric < 0.8 and plain.full_integer
    assert result.met and not result.best.full_integer
    assert result.best.float_layers == ["c2"]  # ranked first by own error, and enough on its own
    assert all(not a.full_integer for a in result.attempts if a.float_layers)
    # Independently: the written model agrees with float on the evaluation data.
    from converters.budget.tflite import _run

    outputs, _ = _run(result.model, x)
    reference = np.asarray(model.predict(x, verbose=0))
    assert np.mean(outputs.argmax(1) == reference.argmax(1)) == result.best.metric >= 0.95
    table = render_attempts(result)
    assert "met" in table and "no longer full-integer" in table
    require_budget(result)  # no error


def test_an_impossible_budget_is_refused_with_the_table(one_bad_layer):
    model, calibration, x = one_bad_layer
    result = search_tflite(model, calibration, Samples({"image": x}), Budget(min_sqnr=150.0), max_fallback=2)
    assert not result.met
    # three range methods, bias correction (equalization finds no pair after ReLU6), two fallback groups
    assert [a.changed.split(" ")[0] for a in result.attempts] == ["minmax", "percentile", "mse", "bias", "float:",
                                                                  "float:"]
    assert "NOT met" in render_attempts(result)
    with pytest.raises(BudgetNotMetError) as caught:
        require_budget(result)
    assert caught.value.exit_code == 1 and "\n" not in str(caught.value)


def test_budget_needs_exactly_one_goal_and_labels_for_max_drop(one_bad_layer):
    from converters.budget.tflite import measure
    from edgeact.errors import InputError

    with pytest.raises(InputError):
        Budget()
    with pytest.raises(InputError):
        Budget(max_drop=1.0, min_sqnr=30.0)
    outputs = np.eye(4)[[0, 1, 2, 3]]
    reference = np.eye(4)[[0, 1, 2, 0]]
    assert measure(Budget(min_agreement=0.9), outputs, reference, None) == 0.75
    assert measure(Budget(max_drop=1.0), outputs, reference, np.array([0, 1, 2, 3])) == -25.0  # INT8 better here
    with pytest.raises(InputError, match="labelled"):
        measure(Budget(max_drop=1.0), outputs, reference, None)


def test_onnx_fallback_excludes_the_one_bad_layer(one_bad_layer, tmp_path):
    from converters.budget.onnx import onnx_job, search_onnx
    from converters.onnx.exporter import export_float_onnx

    model, calibration, x = one_bad_layer
    job = onnx_job(model, calibration, tmp_path, "onebad")
    float_path = tmp_path / "onebad_fp32.onnx"
    export_float_onnx(job, float_path)
    # Output SQNR, not agreement: this model's five logits lie within 0.2 of each other, and
    # which one wins flips with the smallest change in ORT's rounding.
    result = search_onnx(job, float_path, Samples({"image": x}), Budget(min_sqnr=20.0))
    assert [a.changed for a in result.attempts][:3] == ["minmax calibration", "percentile calibration",
                                                        "entropy calibration"]
    assert max(a.metric for a in result.attempts[:3]) < 10.0
    # c2 is ranked first. ORT's optimised CPU graph still outputs zeros with c2 alone excluded
    # (its QDQ simulation with optimisation off does not: 24 dB), so the loop goes one layer on.
    assert result.met and result.best.float_layers[0] == "c2" and not result.best.full_integer
    # Independently: in the written model c2's convolution reads float weights (no DequantizeLinear).
    import onnx

    (path := tmp_path / "best.onnx").write_bytes(result.model)
    graph = onnx.load(str(path)).graph
    writers = {out: node for node in graph.node for out in node.output}
    conv = next(n for n in graph.node if n.op_type == "Conv" and "c2" in n.name)
    assert all(writers.get(i) is None or writers[i].op_type != "DequantizeLinear" for i in conv.input[1:])
