"""A Keras model object handed to `convert()` in memory, given the input names its saved file would have.

Keras 3 names the tensor of an unnamed `keras.Input` `keras_tensor_N` while its layer is
`input_layer_N`; a model rebuilt from its config (loading a .keras file, every graph pass,
`--input-shape`) names the tensor after the layer. So an in-memory model fed its samples
under one name and was rebuilt under the other: a KeyError after the first pass, and files
whose input names the report did not hold. Rebuilding the object once here, the way loading
its file would, gives every later consumer (signature, calibration, passes, TFLite's
SignatureDef, tf2onnx) the one name `input_layer_N`. The user's object is left untouched.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeact.errors import ConversionError, ModelLoadError

from .graph import KerasGraph
from .loader import LoadedModel, check_graph_model, import_keras


def load_keras_object(model: Any) -> LoadedModel:
    """A Functional or Sequential model object as the pipeline's LoadedModel, with stable input names.

    Raises:
        ModelLoadError: a subclassed model (no graph to rewrite or export), a Sequential never built.
    """
    path = Path(f"{getattr(model, 'name', 'model')}.keras")
    check_graph_model(model, path)
    try:
        _ = model.inputs
    except (AttributeError, ValueError):  # a Sequential never built: Keras does not know its input yet
        raise ModelLoadError(f"model '{model.name}' has no input shape yet; start it with keras.Input(shape=...) "
                             "or call model.build((None, ...)) before converting") from None
    return LoadedModel(path=path, kind="object", keras_model=with_layer_input_names(model))


def with_layer_input_names(model: Any):
    """`model`, or its rebuild from config when an input tensor is named apart from its InputLayer.

    Returns the model itself when the names already agree (named inputs, a loaded file), and
    also when Keras cannot rebuild it (a custom layer it does not know): it then converts
    as it is under its tensor names, and a graph pass that needs the rebuild says so.
    """
    if all(tensor == layer for tensor, layer in zip(input_tensor_names(model), input_layer_names(model))):
        return model
    try:
        rebuilt = KerasGraph.from_model(model).to_keras()
    except ConversionError:
        return model
    if input_tensor_names(rebuilt) != input_layer_names(rebuilt):
        return model  # a Keras whose rebuild names tensors otherwise: its own names are still consistent
    return rebuilt


def input_tensor_names(model: Any) -> list[str]:
    """The names Keras feeds the inputs by (and TFLite's converter writes): the input tensors' names."""
    return [str(t.name) for t in model.inputs]


def input_layer_names(model: Any) -> list[str | None]:
    """The InputLayer behind each input tensor, in `model.inputs` order (None if there is none)."""
    keras = import_keras()
    if isinstance(model, keras.Sequential):
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    by_tensor = {id(layer.output): layer.name for layer in model.layers if isinstance(layer, keras.layers.InputLayer)}
    return [by_tensor.get(id(t)) for t in model.inputs]


def calibration_by_layer_names(calibration: Any, model: Any, loaded: LoadedModel) -> Any:
    """Calibration keyed by the names the user sees on `model` (its tensors), re-keyed by the names it now has.

    A dict of arrays, or an iterable of dicts, keyed by `model.inputs[i].name` is what a user of
    an in-memory model with unnamed inputs would write; anything else passes through unchanged.
    """
    from collections.abc import Mapping

    if loaded.keras_model is model:
        return calibration
    aliases = dict(zip(input_tensor_names(model), input_tensor_names(loaded.keras_model)))

    def rename(item):
        return {aliases.get(k, k): v for k, v in item.items()} if isinstance(item, Mapping) else item

    if isinstance(calibration, Mapping):
        return rename(calibration)
    if isinstance(calibration, (list, tuple)):
        return [rename(item) for item in calibration]
    if hasattr(calibration, "__next__"):  # a generator or iterator: renamed lazily, read once as before
        return (rename(item) for item in calibration)
    return calibration
