"""The model with named inputs and outputs, for the exporters, and a SavedModel's float outputs.

`dict_output_model` (TFLite) and `serving_function` (tf2onnx) give the converters inputs named
like the Keras inputs and outputs keyed by the Keras output names, so TFLite's SignatureDef and
the ONNX graph carry the same names as the report (see converters.keras.signature).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgeact.data.samples import Samples


def named_outputs(outputs: Any, names: list[str]) -> dict:
    """A Keras model's outputs (a tensor, a list or a dict) keyed by output name."""
    if isinstance(outputs, dict):
        return {name: outputs[name] for name in names}
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return dict(zip(names, outputs))


def dict_output_model(keras_model, names: list[str]):
    """The same layers as a functional model whose outputs are a dict keyed by output name.

    TFLiteConverter.from_keras_model names a list of outputs `output_0, output_1`, but keeps
    the keys of a dict; a concrete function of our own keeps the names too, but leaves resource
    variables that the INT8 calibration cannot read (READ_VARIABLE fails), and freezing it
    loses the names again. This wrapper shares the weights: nothing is copied.
    """
    import keras

    outputs = keras_model.outputs
    outputs = list(outputs.values()) if isinstance(outputs, dict) else list(outputs)
    return keras.Model(keras_model.inputs, dict(zip(names, outputs)), name=keras_model.name)


def serving_function(keras_model, saved_model_fn, signature):
    """(tf.function, input specs) computing the float model, for TFLiteConverter and tf2onnx."""
    import tensorflow as tf

    specs = [tf.TensorSpec((None, *i.shape), tf.float32, name=i.name) for i in signature.inputs]
    names = signature.output_names
    if keras_model is not None:
        @tf.function(input_signature=specs)
        def serve(*args):
            outputs = keras_model(list(args) if len(args) > 1 else args[0], training=False)
            return named_outputs(outputs, names)
    else:
        input_names = signature.input_names

        @tf.function(input_signature=specs)
        def serve(*args):
            result = saved_model_fn(**dict(zip(input_names, args)))
            return {name: result[name] for name in names}
    return serve, specs


def predict_saved_model(saved_model_fn, signature, samples: Samples, batch_size: int = 64) -> dict[str, np.ndarray]:
    """A SavedModel serving signature's outputs on `samples`, keyed by output name.

    (A Keras model's float outputs come from converters.keras.forward.float_pass, with the statistics.)
    """
    names, input_names = signature.output_names, signature.input_names
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(samples), batch_size):
        outputs = saved_model_fn(**{n: samples.arrays[n][start:start + batch_size] for n in input_names})
        for name in names:
            parts[name].append(np.asarray(outputs[name]))
    return {name: np.concatenate(p) for name, p in parts.items()}
