"""Load the user's Keras model: .keras, legacy .h5, or a SavedModel folder."""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeact.errors import ModelLoadError, first_line
from edgeact.quiet import native_output_captured, silence_tensorflow


@dataclass
class LoadedModel:
    """A loaded model and what the rest of the pipeline needs to know about it.

    `keras_model` is None for a SavedModel folder: it can be converted and run, but
    not rewritten by graph passes.
    """

    path: Path
    kind: str  # "keras", "h5", "savedmodel"
    keras_model: Any
    saved_model_fn: Any = None  # a SavedModel's serving signature: fn(**{input: batch}) -> {output: array}
    saved_model: Any = None  # the loaded SavedModel, kept alive while its signature is used

    @property
    def name(self) -> str:
        return model_name(self.path)


def model_name(path: Path) -> str:
    """The base name of the outputs: a SavedModel folder's name, a file's stem."""
    path = Path(path)
    return path.name if path.is_dir() else path.stem


FUNCTIONAL_ADVICE = (
    "rebuild it as a functional model (inputs = keras.Input(shape=(H, W, C)); x = layer(inputs) for each "
    "layer; keras.Model(inputs, x).save('model.keras')) or as keras.Sequential, then convert that file"
)


def import_keras():
    """TensorFlow's Keras 3, imported quietly."""
    silence_tensorflow()
    with native_output_captured():
        import keras
        import tensorflow as tf  # noqa: F401  (registers the tf backend)
    return keras


def load_model(path: str | Path) -> LoadedModel:
    """Load a model file or SavedModel folder; raise ModelLoadError with a fix on failure."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model {path} does not exist; check the path")
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ModelLoadError(
                f"folder {path} is not a SavedModel (no saved_model.pb); give a .keras or .h5 file"
            )
        return _load_saved_model(path)
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ModelLoadError(f"{path} is not a valid .keras file (not a zip archive); re-save it with model.save()")
        kind = "keras"
    elif suffix in (".h5", ".hdf5"):
        kind = "h5"
    else:
        raise ModelLoadError(
            f"{path} has an unsupported extension '{suffix}'; give a .keras, .h5 or SavedModel folder"
        )
    keras = import_keras()
    try:
        with native_output_captured():
            model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for corrupt files
        custom = re.search(r"Could not locate (?:class|function) '([^']+)'", str(exc))
        if custom:  # a subclassed model or custom layer: Keras needs its Python code, edgeact a graph
            raise ModelLoadError(f"{path} holds the custom class '{custom.group(1)}', which Keras cannot rebuild "
                                 f"without its code; {FUNCTIONAL_ADVICE}") from None
        message = first_line(exc, 200)
        raise ModelLoadError(f"cannot load {path}: {message}; check that the file is a complete Keras model") from None
    check_graph_model(model, path)
    return LoadedModel(path=path, kind=kind, keras_model=model)


def check_graph_model(model, path: Path) -> None:
    """Only Functional and Sequential models have a graph edgeact can rewrite and export."""
    keras = import_keras()
    if isinstance(model, keras.Sequential):
        return
    if type(model).__name__ == "Functional" or type(model) is keras.Model and hasattr(model, "_operations"):
        return
    raise ModelLoadError(f"{path} holds a subclassed model ({type(model).__name__}); {FUNCTIONAL_ADVICE}")


def _load_saved_model(path: Path) -> LoadedModel:
    silence_tensorflow()
    try:
        with native_output_captured():
            import tensorflow as tf

            loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"cannot load SavedModel {path}: {first_line(exc, 200)}") from None
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" not in signatures:
        raise ModelLoadError(f"SavedModel {path} has no 'serving_default' signature; export it with model.export()")
    return LoadedModel(path=path, kind="savedmodel", keras_model=None, saved_model_fn=signatures["serving_default"],
                       saved_model=loaded)
