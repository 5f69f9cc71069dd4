"""The conversion-time fixes change how work is done, never what comes out: each test recomputes
the result the slow way (numpy over every ReLU map, each model run again) and compares."""
from __future__ import annotations

import numpy as np
import pytest


def test_float_pass_statistics_equal_a_numpy_recount(keras, small_cnn):
    from converters.keras.activations import relu_layers
    from converters.keras.forward import float_pass

    x = np.random.default_rng(3).uniform(-1, 1, (45, 16, 16, 3)).astype("float32")  # 2 batches, the last short
    stats, outputs = float_pass(small_cnn, x, batch_size=32)
    layers = relu_layers(small_cnn)
    maps = keras.Model(small_cnn.inputs[0], [layer.output for layer, _ in layers])(x, training=False)
    assert [s.layer for s in stats] == [layer.name for layer, _ in layers]
    for s, m in zip(stats, maps):
        m = np.asarray(m)
        assert s.sparsity == pytest.approx(np.mean(m <= 0), abs=1e-12)
        assert s.dead_channels == int(np.sum(np.all(m.reshape(-1, m.shape[-1]) <= 0, axis=0)))
    assert any(0 < s.sparsity < 1 for s in stats)  # a real mix, not all-zero maps
    np.testing.assert_allclose(outputs[0], small_cnn.predict(x, verbose=0), atol=1e-6)


def test_pipeline_runs_each_model_once_and_reuses_a_given_reference(keras, small_cnn, monkeypatch):
    from converters.passes import pipeline as passes

    x = np.random.default_rng(4).uniform(-1, 1, (8, 16, 16, 3)).astype("float32")
    calls = []
    real = passes.predict
    monkeypatch.setattr(passes, "predict", lambda model, s: calls.append(model) or real(model, s))
    folded, results = passes.run_pipeline(small_cnn, passes.DEFAULT_PIPELINE, x)
    changed = sum(1 for r in results if r.changed)
    assert changed == 2 and len(calls) == changed + 1  # the original once, then each rewritten model once
    assert small_cnn in calls

    calls.clear()
    reference = [small_cnn.predict(x, verbose=0)]
    _, again = passes.run_pipeline(small_cnn, passes.DEFAULT_PIPELINE, x, reference=reference)
    assert len(calls) == changed and small_cnn not in calls
    assert [r.max_abs_diff for r in again] == pytest.approx([r.max_abs_diff for r in results], abs=1e-7)
    # The diff of the last pass is its model against the one before, recomputed here.
    before_last = np.asarray(calls[-2](x, training=False))
    after_last = np.asarray(folded(x, training=False))
    assert again[-1].max_abs_diff == pytest.approx(np.abs(after_last - before_last).max(), abs=1e-6)
