"""The Python code a Keras model needs beyond its file: custom layer classes and Lambda layers.

Keras stores a custom layer by class name only, so loading it needs the class:
`--custom-objects FILE.py` (or an importable module name; repeatable) names the code that
defines it. A Lambda layer stores its function as Python bytecode, which Keras runs only
outside its safe mode: `--trust-model-code` turns safe mode off, with a warning, for files
the user trusts.

`model_code_scope` makes both known to Keras for a block (loading and everything after it in
the same command); a model rebuilt from its config later (graph passes, `--input-shape`, the
budget search) carries its classes with it (`converters.keras.graph.KerasGraph`).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edgeact.errors import InputError, first_line, quoting, shown


@dataclass(frozen=True)
class ModelCode:
    """What the user said about the model's code: `--custom-objects` (files or modules) and `--trust-model-code`."""

    custom_objects: tuple[str, ...] = ()
    trust_model_code: bool = False


def read_custom_objects(spec: str) -> dict[str, Any]:
    """{name Keras looks up: class or function} from a .py file or an importable module.

    A module that defines `custom_objects` (or `CUSTOM_OBJECTS`), a dict, gives exactly that;
    otherwise every Keras layer, model, initializer, regularizer or constraint class it holds,
    and every public function it defines (custom activations), by name.

    Raises:
        InputError: the file or module cannot be imported, or holds nothing Keras could use.
    """
    keras = _keras()
    module = _import(spec)
    explicit = getattr(module, "custom_objects", None) or getattr(module, "CUSTOM_OBJECTS", None)
    if isinstance(explicit, dict) and explicit:
        return {str(k): v for k, v in explicit.items()}
    bases = (keras.layers.Layer, keras.initializers.Initializer, keras.regularizers.Regularizer,
             keras.constraints.Constraint)
    found: dict[str, Any] = {}
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.isclass(value) and issubclass(value, bases) and not value.__module__.startswith("keras"):
            found[value.__name__] = value
            found[keras.saving.get_registered_name(value)] = value
        elif inspect.isfunction(value) and value.__module__ == module.__name__:
            found[name] = value
    if not found:
        raise InputError(f"--custom-objects {shown(spec, 120)} defines no Keras layer class or function; give the "
                         "file that defines the model's custom layers")
    return found


def _import(spec: str):
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            raise InputError(f"--custom-objects {shown(spec, 120)} does not exist; give the .py file that defines "
                             "the custom layers, or an importable module name")
        # One module per file content: the same file given twice is imported once.
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        name = f"edgeact_custom_objects_{path.stem}_{digest}"
        if name in sys.modules:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise InputError(f"--custom-objects {shown(spec, 120)} is not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: any error it raises
            del sys.modules[name]
            raise quoting(InputError(f"--custom-objects {shown(spec, 120)} failed to import: "
                                     f"{type(exc).__name__}: {first_line(exc, 200)}"), exc) from None
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError:
        raise InputError(f"--custom-objects {shown(spec, 120)} is neither a .py file nor an importable module; give "
                         "the file that defines the custom layers") from None
    except Exception as exc:
        raise quoting(InputError(f"--custom-objects {shown(spec, 120)} failed to import: {type(exc).__name__}: "
                                 f"{first_line(exc, 200)}"), exc) from None


@contextmanager
def model_code_scope(code: ModelCode | None) -> Iterator[dict[str, Any]]:
    """Keras knows the custom objects (and, with trust, loads Lambda layers) inside the block.

    Yields the custom objects read. Keras' scope is its global state, so blocks do not nest
    across threads; edgeact converts one model per process.
    """
    code = code or ModelCode()
    objects: dict[str, Any] = {}
    for spec in code.custom_objects:
        objects.update(read_custom_objects(spec))
    keras = _keras()
    with keras.saving.custom_object_scope(objects), safe_mode(not code.trust_model_code):
        yield objects


@contextmanager
def safe_mode(on: bool) -> Iterator[None]:
    """Keras' safe mode (no Lambda bytecode is run) on or off for the block; the default is on.

    Keras exposes only `keras.config.enable_unsafe_deserialization()`, which is global and
    has no way back; its scope (keras/src/saving/serialization_lib.py, SafeModeScope) has.
    """
    _keras()
    from keras.src.saving.serialization_lib import SafeModeScope

    with SafeModeScope(on):
        yield


def classes_of(model) -> dict[str, Any]:
    """The classes of a live model's layers that are not Keras' own, by the names its config uses.

    A model that loaded (or was built in this process) holds its custom classes; handing
    them to every rebuild of its config means the user names them once.
    """
    keras = _keras()
    found: dict[str, Any] = {}
    for layer in _all_layers(model):
        cls = type(layer)
        if not cls.__module__.startswith("keras."):
            found[cls.__name__] = cls
            found[keras.saving.get_registered_name(cls)] = cls
    return found


def _all_layers(model) -> Iterator[Any]:
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        inner = getattr(layer, "layer", None)  # wrappers
        if inner is not None:
            yield inner


def has_lambda(config: dict) -> bool:
    """Whether a model config holds a Lambda layer (its rebuild runs stored bytecode)."""
    from .compat import layer_entries

    return any(entry.get("class_name") == "Lambda" for entry in layer_entries(config))


def _keras():
    from .loader import import_keras

    return import_keras()
