"""Load the user's Keras model: .keras, legacy .h5, or a SavedModel folder."""
from __future__ import annotations

import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeact.errors import EdgeactError, EdgeactWarning, ModelLoadError, first_line, quoting, shown
from edgeact.quiet import native_output_captured, silence_tensorflow

from .compat import (
    FUNCTIONAL_ADVICE,
    explain_load_error,
    lambda_refusal,
    layer_entries,
    read_config,
    translate_config,
    write_translated,
)
from .model_code import ModelCode, model_code_scope


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
    notes: list[str] = field(default_factory=list)  # what loading translated (a Keras 2 file's configs)

    @property
    def name(self) -> str:
        return model_name(self.path)


def model_name(path: Path) -> str:
    """The base name of the outputs: a SavedModel folder's name, a file's stem."""
    path = Path(path)
    return path.name if path.is_dir() else path.stem




def import_keras():
    """TensorFlow's Keras 3, imported quietly."""
    silence_tensorflow()
    with native_output_captured():
        import keras
        import tensorflow as tf  # noqa: F401  (registers the tf backend)
    return keras


def load_model(path: str | Path, code: ModelCode | None = None) -> LoadedModel:
    """Load a model file or SavedModel folder; raise ModelLoadError with a fix on failure.

    A Keras 2 file is translated for Keras 3 on the way in (converters.keras.compat), each
    translation noted in `LoadedModel.notes`. `code` names the custom classes the file needs
    and whether its Lambda layers may run (converters.keras.model_code).
    """
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
    code = code or ModelCode()
    keras = import_keras()
    config, version = read_config(path)
    lambdas = [e.get("config", {}).get("name") for e in layer_entries(config) if e.get("class_name") == "Lambda"] \
        if config else []
    if lambdas and not code.trust_model_code:  # refused before Keras runs anything from the file
        raise ModelLoadError(lambda_refusal(path, lambdas))
    if code.trust_model_code:
        what = (f"the Python code of its Lambda layer{'s' if len(lambdas) > 1 else ''} "
                f"{', '.join(repr(shown(n)) for n in lambdas[:3])}" if lambdas else "any Python code stored in it")
        warnings.warn(EdgeactWarning(f"--trust-model-code: loading {shown(path.name)} runs {what}; use it only on "
                                     "files from a source you trust"), stacklevel=2)
    translations = translate_config(config) if config else None
    notes = translations.notes(f"Keras {version} file" if version else "Keras 2 file") if translations else []
    try:
        with tempfile.TemporaryDirectory(prefix="edgeact-keras2-") as tmp, model_code_scope(code):
            source = write_translated(path, config, Path(tmp)) if translations else path
            with native_output_captured():
                model = keras.models.load_model(source, compile=False, safe_mode=not code.trust_model_code)
    except EdgeactError:
        raise
    except Exception as exc:  # Keras raises many types for corrupt files
        raise explain_load_error(exc, path, config, version) from None
    check_graph_model(model, path)
    return LoadedModel(path=path, kind=kind, keras_model=model, notes=notes)


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
        raise quoting(ModelLoadError(f"cannot load SavedModel {path}: {first_line(exc, 200)}"), exc) from None
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" not in signatures:
        raise ModelLoadError(f"SavedModel {path} has no 'serving_default' signature; export it with model.export()")
    return LoadedModel(path=path, kind="savedmodel", keras_model=None, saved_model_fn=signatures["serving_default"],
                       saved_model=loaded)
