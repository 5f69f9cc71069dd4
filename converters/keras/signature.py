"""The model's signature: its inputs and outputs by Keras name, and how each output is judged.

Names, never positions: TFLite orders tensors as its converter likes (a two-input model
comes out with its inputs swapped) and `from_keras_model` names a list of outputs
`output_0, output_1`. So the exporters convert the model with named inputs and a dict of outputs
keyed by the Keras output names (converters.keras.serving); TFLite writes those names into its
SignatureDef and tf2onnx into the graph.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgeact.data.samples import ModelInput
from edgeact.errors import InputError, ModelLoadError
from edgeact.report.records import OutputKind, TensorInfo


@dataclass
class ModelSignature:
    inputs: list[ModelInput]
    outputs: list[TensorInfo]

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]


def functional(model):
    """A Sequential model as the equivalent functional one (it has output names and a graph)."""
    import keras

    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def fix_open_sizes(model, shapes: dict[str | None, tuple[int, ...]]):
    """The model with the given input shapes; ModelLoadError if a size is open and none was given.

    Runs first, before any calibration data is read or any model traced.
    """
    from .graph import KerasGraph

    names = [t.name for t in model.inputs]
    unknown = [n for n in shapes if n is not None and n not in names]
    if unknown:
        raise InputError(f"--input-shape names '{unknown[0]}', which is not a model input ({', '.join(names)})")
    if None in shapes and len(names) > 1:
        example = _example(model.inputs[0].shape[1:])
        raise InputError(f"the model has {len(names)} inputs; name the one to set: --input-shape "
                         f"{names[0]}={example}")
    wanted = {(names[0] if name is None else name): shape for name, shape in shapes.items()}
    current = {t.name: tuple(t.shape[1:]) for t in model.inputs}
    for name, shape in current.items():
        if name not in wanted and any(d is None for d in shape):
            dims = ", ".join("?" if d is None else str(d) for d in shape)
            raise ModelLoadError(f"input '{name}' has an open size ({dims}); give it with --input-shape, "
                                 f"e.g. --input-shape {_example(shape)}")
    changes = {n: s for n, s in wanted.items() if tuple(current[n]) != tuple(s)}
    if not changes:
        return model
    for name, shape in changes.items():
        old = current[name]
        if len(shape) != len(old) or any(d is not None and d != s for d, s in zip(old, shape)):
            raise InputError(f"--input-shape {','.join(map(str, shape))} does not fit input '{name}' of shape "
                             f"({', '.join('?' if d is None else str(d) for d in old)}); only open (?) sizes "
                             "can be set")
    graph = KerasGraph.from_model(model)
    for entry in graph.layers:
        if entry["class_name"] == "InputLayer" and entry["name"] in changes:
            config = entry["config"]
            key = "batch_shape" if "batch_shape" in config else "batch_input_shape"
            config[key] = [None, *changes[entry["name"]]]
    given = " ".join(f"--input-shape {name}={','.join(map(str, shape))}" if len(names) > 1 else
                     f"--input-shape {','.join(map(str, shape))}" for name, shape in changes.items())
    return graph.rebuild(f"the model does not run at {given}",
                         "give the input size the model was trained on (a larger one where layers crop or pool)",
                         error=InputError)


def _example(shape) -> str:
    """A size to suggest for open dimensions: 224 in an image (H, W, C), 1000 in a sequence (length, C)."""
    guess = "224" if len(shape) == 3 else "1000"
    return ",".join(guess if d is None else str(d) for d in shape)


def keras_signature(model, labels: list[str] | None = None) -> ModelSignature:
    """Inputs and outputs of a functional Keras model, with each output's kind."""
    inputs = []
    for tensor in model.inputs:
        shape = tuple(tensor.shape[1:])
        inputs.append(ModelInput(str(tensor.name), tuple(int(d) for d in shape)))
    names = list(model.output_names)
    _check_names(names, "output")
    _check_names([i.name for i in inputs], "input")
    outputs = []
    for name, tensor in zip(names, _output_tensors(model)):
        shape = [int(d) for d in tensor.shape[1:]]
        kind, why = _keras_output_kind(model, name, shape, labels)
        outputs.append(TensorInfo(name, shape, kind, why))
    return ModelSignature(inputs, outputs)


def saved_model_signature(fn) -> ModelSignature:
    """Inputs and outputs of a SavedModel's serving signature (kinds are decided from data later)."""
    specs = fn.structured_input_signature[1]
    inputs = []
    for name, spec in specs.items():
        if any(d is None for d in spec.shape[1:]):
            raise ModelLoadError(f"SavedModel input '{name}' has an open size {tuple(spec.shape)}; "
                                 "export it with a fixed input size")
        inputs.append(ModelInput(str(name), tuple(int(d) for d in spec.shape[1:])))
    outputs = [TensorInfo(str(name), [int(d) for d in spec.shape[1:]])
               for name, spec in sorted(fn.structured_outputs.items())]
    if not inputs or not outputs:
        raise ModelLoadError("the SavedModel's serving signature has no inputs or no outputs; export it with "
                             "model.export()")
    return ModelSignature(inputs, outputs)


def judge_kinds_from_data(signature: ModelSignature, reference: dict[str, np.ndarray]) -> None:
    """Outputs without a kind (SavedModels): class scores if every row is a probability vector."""
    for info in signature.outputs:
        if info.kind is not None:
            continue
        values = np.asarray(reference[info.name], np.float64)
        rows = values.reshape(len(values), -1)
        if len(info.shape) == 1 and info.shape[0] >= 2 and np.all(rows >= 0) and np.allclose(rows.sum(1), 1, atol=1e-3):
            info.kind, info.why = OutputKind.CLASS_SCORES, "every row is a probability vector (sums to 1)"
        else:
            info.kind, info.why = OutputKind.DENSE, "not a probability vector per sample"


def _check_names(names: list[str], what: str) -> None:
    if any(not n for n in names):
        raise ModelLoadError(f"the model has an {what} without a name; name every {what} layer")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ModelLoadError(f"the model has two {what}s named '{duplicates[0]}'; give each {what} layer its own "
                             "name (matching by name needs unique names)")


def _output_tensors(model) -> list:
    outputs = model.outputs
    return list(outputs.values()) if isinstance(outputs, dict) else list(outputs)


def _keras_output_kind(model, name: str, shape: list[int], labels: list[str] | None) -> tuple[str, str]:
    """Class scores for a softmax over classes (or logits the labels name), dense otherwise."""
    try:
        layer = model.get_layer(name)
    except ValueError:
        layer = None
    config = layer.get_config() if layer is not None else {}
    activation = config.get("activation")
    softmax = type(layer).__name__ == "Softmax" or activation == "softmax"
    classes = shape[-1] if shape else 1
    if softmax and len(shape) == 1 and classes >= 2:
        return OutputKind.CLASS_SCORES, f"softmax over {classes} classes"
    if softmax:
        return OutputKind.DENSE, f"softmax map of shape {tuple(shape)} (judged per value, not by top-1)"
    if len(shape) == 1 and labels is not None and len(labels) == classes and classes >= 2:
        return OutputKind.CLASS_SCORES, f"{classes} logits, one per label"
    if len(shape) == 1 and classes >= 2 and activation in (None, "linear") and type(layer).__name__ == "Dense" \
            and _named_like_scores(name):
        return OutputKind.CLASS_SCORES, f"{classes} logits (output named '{name}')"
    return OutputKind.DENSE, "regression or feature output" if len(shape) == 1 else f"map of shape {tuple(shape)}"


def _named_like_scores(name: str) -> bool:
    return bool(re.search(r"(logit|class|score|prob|pred)", name, re.IGNORECASE))
