"""A Keras functional model as an editable graph: layer configs, their wiring, their weights.

Graph passes edit the model's own `get_config()` (the form Keras itself rebuilds
models from) and a dict of weights, then `to_keras()` rebuilds a new model with
`keras.Model.from_config`. Working on the config keeps every layer setting Keras knows
about, and leaves the user's model untouched.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator

import numpy as np

from edgeact.errors import ConversionError, EdgeactError, first_line, quoting

from .loader import import_keras
from .model_code import classes_of, has_lambda, safe_mode

NESTED_MODEL_CLASSES = ("Functional", "Sequential", "Model")


class KerasGraph:
    """Layers by name, in the model's order, with helpers to find and rewire connections."""

    def __init__(self, config: dict, weights: dict[str, list[np.ndarray]], classes: dict | None = None) -> None:
        self.config = config
        self.weights = weights
        # The model's own (non-Keras) layer classes: every rebuild needs them, and the user named them once.
        self.classes = dict(classes or {})

    @classmethod
    def from_model(cls, model) -> "KerasGraph":
        keras = import_keras()
        if isinstance(model, keras.Sequential):
            model = keras.Model(model.inputs, model.outputs, name=model.name)
        config = copy.deepcopy(model.get_config())
        weights = {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers}
        return cls(config, weights, classes_of(model))

    # -- reading -----------------------------------------------------------------------
    @property
    def layers(self) -> list[dict]:
        return self.config["layers"]

    def layer(self, name: str) -> dict:
        for entry in self.layers:
            if entry["name"] == name:
                return entry
        raise KeyError(name)

    def class_name(self, name: str) -> str:
        return self.layer(name)["class_name"]

    def layer_config(self, name: str) -> dict:
        return self.layer(name)["config"]

    def inputs_of(self, name: str) -> list[str]:
        """Names of the layers whose outputs feed `name` (all its call nodes)."""
        return [history[0] for history in _histories(self.layer(name).get("inbound_nodes", []))]

    def call_count(self, name: str) -> int:
        """How many times a layer is called in the graph (more than one: a shared layer)."""
        return len(self.layer(name).get("inbound_nodes", []))

    def consumers_of(self, name: str) -> list[str]:
        """Layers that take `name`'s output, plus "<output>" if it is a model output."""
        users = [entry["name"] for entry in self.layers
                 for history in _histories(entry.get("inbound_nodes", [])) if history[0] == name]
        users += ["<output>" for ref in _output_refs(self.config) if ref[0] == name]
        return users

    def is_nested_model(self, name: str) -> bool:
        return self.class_name(name) in NESTED_MODEL_CLASSES

    # -- editing -----------------------------------------------------------------------
    def bypass(self, name: str) -> None:
        """Remove a single-input layer and connect its consumers to its input instead."""
        entry = self.layer(name)
        histories = list(_histories(entry.get("inbound_nodes", [])))
        if len(histories) != 1:
            raise ConversionError(f"internal: cannot bypass layer '{name}' with {len(histories)} inputs")
        source = list(histories[0])
        for other in self.layers:
            for history in _histories(other.get("inbound_nodes", [])):
                if history[0] == name:
                    history[:] = source
        for ref in _output_refs(self.config):
            if ref[0] == name:
                ref[:] = source
        self.config["layers"] = [e for e in self.layers if e["name"] != name]
        self.weights.pop(name, None)

    def retype(self, entry: dict, class_name: str, config: dict, weights: list, keep: tuple[str, ...] = ()) -> None:
        """Make a layer a built-in Keras layer of another class, in place: same name and connections,
        `config` plus the `keep` keys of its old config, and `weights`."""
        old = entry["config"]
        entry["class_name"] = class_name
        entry["config"] = {**{k: old[k] for k in keep if k in old}, **config, "name": entry["name"]}
        entry["module"] = "keras.layers"
        entry.pop("registered_name", None)
        self.weights[entry["name"]] = list(weights)

    def to_keras(self):
        """Rebuild a Keras model from the (edited) config and weights."""
        return self.rebuild("cannot rebuild the model after graph passes",
                            "rerun with --no-fuse to convert the model as it is")

    def rebuild(self, what: str, fix: str, error: type[EdgeactError] = ConversionError):
        """The Keras model of the config and weights; `error` reads "{what}: {Keras' reason}; {fix}".

        The config came from a live model (`from_model`), whose Lambda layers' code is
        already running in this process (trusted when its file was loaded), so Keras' safe
        mode is off for the rebuild when it holds any.
        """
        keras = import_keras()
        try:
            with safe_mode(not has_lambda(self.config)):  # the classes add to any custom-object scope around
                model = keras.Model.from_config(copy.deepcopy(self.config), custom_objects=self.classes)
        except Exception as exc:
            raise quoting(error(f"{what}: {first_line(exc, 200)}; {fix}"), exc) from None
        for layer in model.layers:
            if layer.name in self.weights and self.weights[layer.name]:
                layer.set_weights(self.weights[layer.name])
        return model


def _histories(value: Any) -> Iterator[list]:
    """Every `keras_history` ([layer, node, tensor]) inside a layer's inbound nodes, in place."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            yield value["config"]["keras_history"]
            return
        for item in value.values():
            yield from _histories(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _histories(item)


def _output_refs(config: dict) -> list[list]:
    """The model's output references ([layer, node, tensor]), as mutable lists."""
    outputs = config.get("output_layers", [])
    if outputs and isinstance(outputs[0], str):  # a single output stored flat
        return [outputs]
    if isinstance(outputs, dict):
        return list(outputs.values())
    return [ref for ref in outputs if isinstance(ref, list)]
