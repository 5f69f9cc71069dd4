"""The conversion-time fixes change how work is done, never what comes out: each test recomputes
the result the slow way (numpy over every ReLU map, TFLiteConverter.from_keras_model) and compares."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


def test_float_pass_statistics_equal_a_numpy_recount(keras, small_cnn):
    from calibration.statistics import float_pass, relu_layers

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
    from converters import passes

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


def test_one_savedmodel_gives_the_models_from_keras_model_gives(small_cnn):
    """Float and INT8 converted from the shared export are the bytes from_keras_model writes."""
    import tensorflow as tf

    from calibration.sources import ArraySource, ModelInput
    from converters import tflite_exporter
    from edgeact.config import IOType
    from edgeact.preprocess import Preprocessing

    x = np.random.default_rng(5).uniform(-1, 1, (20, 16, 16, 3)).astype("float32")
    source = ArraySource(x, ModelInput("image", (16, 16, 3)), Preprocessing("none"))
    job = SimpleNamespace(keras_model=small_cnn, calibration=SimpleNamespace(calibration=source),
                          options=SimpleNamespace(io_type=IOType.INT8))
    with tflite_exporter.saved_model_source(job) as folder:
        fp32 = tflite_exporter.export_float(job, folder)
        int8 = tflite_exporter.export_int8(job, folder)

    expected_fp32 = tf.lite.TFLiteConverter.from_keras_model(small_cnn).convert()
    converter = tf.lite.TFLiteConverter.from_keras_model(small_cnn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in x)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    assert same_but_conversion_metadata(fp32, expected_fp32)
    assert same_but_conversion_metadata(int8, converter.convert())


def same_but_conversion_metadata(ours: bytes, theirs: bytes) -> bool:
    """Byte-identical except inside CONVERSION_METADATA, which records how the converter was
    created (from a SavedModel here, from a Keras model there), not what it produced."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(ours)
    (entry,) = [m for m in model.metadata if m.name == b"CONVERSION_METADATA"]
    blob = bytes(model.buffers[entry.buffer].data)
    start = ours.find(blob)
    differ = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    return len(ours) == len(theirs) and start >= 0 and all(start <= i < start + len(blob) for i in differ)
