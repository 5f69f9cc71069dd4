"""Keras 2 model files read by Keras 3: the known config differences, translated on load.

Most deployed edge CNNs were trained with tf.keras 2.x (TensorFlow 2.0 to 2.15, or tf_keras
since) and saved as `.h5`, or as `.keras` from TF 2.13 on. Keras 3 reads both formats but
refuses some of what Keras 2 wrote into the layer configs. Each rule below is one such
difference, found in files tf.keras 2.x / tf_keras 2.21 really wrote (checked against the
layers' `__init__` in Keras 3.15) and in keras-team/keras issues:

- `groups=1` in DepthwiseConv1D/2D, SeparableConv1D/2D and Conv1D/2D/3DTranspose configs:
  Keras 2's base `Conv.get_config` wrote it for every convolution; those classes never used
  it, and Keras 3's refuse the key ("Unrecognized keyword arguments passed to
  DepthwiseConv2D: {'groups': 1}", keras-team/keras#19151, #19441). Dropped when 1; any
  other value is refused, naming the layer (no Keras 2 layer of those classes could have it).
- `kernel_initializer/regularizer/constraint` in SeparableConv configs: the same base class
  wrote them; a separable convolution has depthwise and pointwise kernels only. Dropped
  (they only shape training).
- A mixed-precision dtype policy, `{"class_name": "Policy", "config": {"name":
  "mixed_float16"}}`: Keras 3 has no `Policy` class (an AttributeError deep in Keras). The
  float32 variables are kept and the model computes in float32, which is what an INT8
  conversion calibrates against.
- `LeakyReLU(alpha=...)`: Keras 3 calls it `negative_slope` (it accepts `alpha` with a warning).
- `ThresholdedReLU(theta)`: gone from Keras 3; `ReLU(threshold=theta)` computes the same
  (x where x > theta, else 0; they differ only at x == theta exactly).
- A one-element `axis` list (`BatchNormalization(axis=[3])`): Keras 3 wants an int.
- A `.keras` file of tf.keras 2.13+ names its model `tf_keras.src.engine.functional.Functional`
  (or `keras.src.engine...`), which Keras 3 cannot locate ("Could not locate class
  'Functional'"); the Keras 3 Functional and Sequential read the Keras 2 wiring as they are.

Keras' own legacy loader already handles the rest of the Keras 2 format (`batch_input_shape`,
the nested-list `inbound_nodes`, Lambda's old keys: keras/src/legacy/saving/saving_utils.py).
What cannot be translated is explained by `explain_load_error`: the layer, its class, the key.
"""
from __future__ import annotations

import json
import re
import shutil
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

from edgeact.errors import ModelLoadError, first_line, quoting, shown

FUNCTIONAL_ADVICE = (
    "rebuild it as a functional model (inputs = keras.Input(shape=(H, W, C)); x = layer(inputs) for each "
    "layer; keras.Model(inputs, x).save('model.keras')) or as keras.Sequential, then convert that file"
)
# Configs bigger than this are not a Keras model's (a ResNet152's is about 0.5 MB).
MAX_CONFIG_BYTES = 64 * 1024 * 1024

NOT_GROUPED = ("DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
               "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
SEPARABLE = ("SeparableConv1D", "SeparableConv2D")
MODEL_CLASSES = ("Functional", "Model", "Sequential")
KERAS2_MODULES = re.compile(r"^(?:tf_keras|keras)\.(?:src\.)?engine\.")


class Translations:
    """What was translated, by rule: {rule text: [layer names]}, rendered as one note per rule."""

    def __init__(self) -> None:
        self.by_rule: dict[str, list[str]] = defaultdict(list)

    def add(self, rule: str, layer: str) -> None:
        self.by_rule[rule].append(layer)

    def __bool__(self) -> bool:
        return bool(self.by_rule)

    def notes(self, source: str) -> list[str]:
        notes = []
        for rule, layers in self.by_rule.items():
            some = ", ".join(shown(n, 40) for n in layers[:3]) + (f" and {len(layers) - 3} more" if len(layers) > 3
                                                                  else "")
            notes.append(f"{source}: {rule} ({len(layers)} layer{'s' if len(layers) != 1 else ''}: {some})")
        return notes


Rule = Callable[[str, dict, Translations], None]


def _groups(class_name: str, config: dict, done: Translations) -> None:
    if class_name not in NOT_GROUPED or "groups" not in config:
        return
    groups = config.pop("groups")
    if groups not in (1, None):
        raise ModelLoadError(f"layer '{shown(config.get('name'))}' ({class_name}) has groups={shown(groups)}, which "
                             f"no {class_name} of Keras 2 or 3 computes; re-save the model from the code that built "
                             "it (a grouped convolution is a Conv2D with groups)")
    done.add("dropped groups=1, which Keras 2 wrote into every convolution's config and Keras 3 refuses here",
             config.get("name", "?"))


def _separable_kernel_keys(class_name: str, config: dict, done: Translations) -> None:
    if class_name not in SEPARABLE:
        return
    keys = [k for k in ("kernel_initializer", "kernel_regularizer", "kernel_constraint") if k in config]
    for key in keys:
        config.pop(key)
    if keys:
        done.add("dropped kernel_initializer/regularizer/constraint, which a separable convolution does not use",
                 config.get("name", "?"))


def _dtype_policy(class_name: str, config: dict, done: Translations) -> None:
    dtype = config.get("dtype")
    if not (isinstance(dtype, dict) and dtype.get("class_name") == "Policy"):
        return
    name = str((dtype.get("config") or {}).get("name") or "float32")
    config["dtype"] = "float32" if name.startswith("mixed_") else name
    done.add(f"Keras 2 dtype policy '{shown(name, 30)}' read as {config['dtype']} (the float reference the INT8 "
             "model is calibrated against)", config.get("name", "?"))


def _leaky_relu(class_name: str, config: dict, done: Translations) -> None:
    if class_name == "LeakyReLU" and "alpha" in config:
        config["negative_slope"] = config.pop("alpha")
        done.add("LeakyReLU alpha read as negative_slope (its Keras 3 name)", config.get("name", "?"))


def _thresholded_relu(class_name: str, config: dict, done: Translations) -> str | None:
    """Returns the new class name: ThresholdedReLU(theta) is ReLU(threshold=theta) in Keras 3."""
    if class_name != "ThresholdedReLU":
        return None
    config["threshold"] = float(config.pop("theta", 1.0))
    done.add("ThresholdedReLU(theta) rebuilt as ReLU(threshold=theta), the same function (Keras 3 dropped the class)",
             config.get("name", "?"))
    return "ReLU"


def _axis_list(class_name: str, config: dict, done: Translations) -> None:
    axis = config.get("axis")
    if class_name in ("BatchNormalization", "LayerNormalization") and isinstance(axis, list) and len(axis) == 1:
        config["axis"] = int(axis[0])  # quiet: the same axis, in the type Keras 3 wants


RULES: tuple[Rule, ...] = (_groups, _separable_kernel_keys, _dtype_policy, _leaky_relu, _axis_list)


def translate_config(model_config: dict) -> Translations:
    """Translate a Keras 2 model config for Keras 3, in place; what was done, by rule.

    Raises:
        ModelLoadError: a value no rule can translate (the layer, its class and the key named).
    """
    done = Translations()
    if isinstance(model_config.get("module"), str) and KERAS2_MODULES.match(model_config["module"]):
        # tf.keras 2.13+ .keras files: see the module docstring
        kind = "sequential" if model_config.get("class_name") == "Sequential" else "functional"
        model_config["module"] = f"keras.src.models.{kind}"
        done.add(f"model class read as Keras 3's {model_config.get('class_name')}", "the model")
    for entry in layer_entries(model_config):
        config = entry.get("config")
        if not isinstance(config, dict):
            continue
        class_name = str(entry.get("class_name"))
        renamed = _thresholded_relu(class_name, config, done)
        if renamed:
            entry["class_name"], entry["module"] = renamed, "keras.layers"
            class_name = renamed
        for rule in RULES:
            rule(class_name, config, done)
    return done


def layer_entries(model_config: dict) -> Iterator[dict]:
    """Every layer entry of a model config (nested models and wrapped layers too), the model's own entry first."""
    stack = [model_config]
    while stack:
        entry = stack.pop()
        if not isinstance(entry, dict):
            continue
        yield entry
        config = entry.get("config")
        if isinstance(config, dict):
            if isinstance(config.get("layers"), list):
                stack.extend(reversed(config["layers"]))
            if isinstance(config.get("layer"), dict):  # TimeDistributed, Bidirectional
                stack.append(config["layer"])
            if isinstance(config.get("backward_layer"), dict):
                stack.append(config["backward_layer"])
        elif isinstance(config, list):  # a Keras 2.0-era Sequential: its config is the layer list
            stack.extend(reversed(config))


def read_config(path: Path) -> tuple[dict | None, str | None]:
    """(the model config, the Keras version that wrote it) of a .h5 or .keras file; (None, None) if unreadable.

    Unreadable files are left to Keras, whose error the loader explains.
    """
    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as archive:
                text = _bounded(archive, "config.json")
                meta = json.loads(_bounded(archive, "metadata.json") or "{}")
            return (json.loads(text) if text else None), meta.get("keras_version")
        import h5py

        with h5py.File(path, "r") as f:
            text = f.attrs.get("model_config")
            version = f.attrs.get("keras_version")
        text = text.decode() if isinstance(text, bytes) else text
        version = version.decode() if isinstance(version, bytes) else version
        if text is None or len(text) > MAX_CONFIG_BYTES:
            return None, None
        return json.loads(text), (str(version) if version is not None else None)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, RecursionError):
        return None, None


def _bounded(archive: zipfile.ZipFile, name: str) -> str | None:
    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.file_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{name} is {info.file_size} bytes")
    return archive.read(info).decode()


def is_keras2(version: str | None) -> bool:
    return bool(version) and str(version).split(".")[0] in ("1", "2")


def write_translated(path: Path, config: dict, folder: Path) -> Path:
    """A copy of the model file in `folder` whose stored config is `config` (weights untouched)."""
    target = folder / path.name
    if path.suffix.lower() == ".keras":
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as copy:
            for item in source.infolist():
                if item.filename == "config.json":
                    copy.writestr(item, json.dumps(config))
                else:
                    with source.open(item) as src, copy.open(item, "w") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        return target
    import h5py

    shutil.copyfile(path, target)
    with h5py.File(target, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)
    return target


# -- what could not be loaded ---------------------------------------------------------------
_UNRECOGNIZED = re.compile(r"Unrecognized keyword arguments passed to (\w+): \{'([^']+)'")
_UNKNOWN = re.compile(r"(?:Unknown (?:layer|object)|Could not locate (?:class|function)):? '([^']+)'")
_LAMBDA_CODE = re.compile(r"infer the shape of the Lambda|bad marshal data|unknown type code|"
                          r"name '\w+' is not defined", re.IGNORECASE)
_LAMBDA = re.compile(r"deserialization of a `?Lambda`? layer", re.IGNORECASE)


def explain_load_error(exc: BaseException, path: Path, config: dict | None, version: str | None) -> ModelLoadError:
    """The one-line reason Keras could not load `path`: the layer, its class and the key, and what to do."""
    text = str(exc)
    made_by = f" (written by Keras {shown(version, 20)})" if version else ""
    entries = list(layer_entries(config)) if config else []
    unrecognized = _UNRECOGNIZED.search(text)
    if unrecognized:
        class_name, key = unrecognized.groups()
        layer = next((e.get("config", {}).get("name") for e in entries if e.get("class_name") == class_name
                      and key in (e.get("config") or {})), None)
        where = f"layer '{shown(layer)}' ({class_name})" if layer else f"a {class_name} layer"
        return quoting(ModelLoadError(
            f"{path}{made_by}: {where} has the key '{shown(key, 40)}', which Keras 3 does not accept and edgeact "
            "has no translation for; re-save the model from the code that built it with Keras 3, or report the "
            "key to edgeact"), exc)
    names = [e.get("config", {}).get("name") for e in entries if e.get("class_name") == "Lambda"]
    if names and _LAMBDA_CODE.search(text):
        listed = ", ".join(f"'{shown(n)}'" for n in names[:3] if n) or "a Lambda layer"
        return quoting(ModelLoadError(
            f"{path}{made_by}: the code of Lambda layer {listed} does not run under Keras 3 (Keras stores it as "
            "Python bytecode: code that uses a module such as tf, or came from another Python version, fails); "
            "replace the Lambda with a custom layer class and give its file with --custom-objects FILE.py"), exc)
    if _LAMBDA.search(text):
        return quoting(ModelLoadError(lambda_refusal(path, names)), exc)
    unknown = _UNKNOWN.search(text)
    if unknown:
        name = unknown.group(1).split(">")[-1]
        layer = next((e.get("config", {}).get("name") for e in entries if e.get("class_name") == name), None)
        if name in ("TFOpLambda", "SlicingOpLambda"):
            return quoting(ModelLoadError(
                f"{path}{made_by}: layer '{shown(layer)}' is a TensorFlow op called on a Keras tensor ({name}, "
                "tf.keras 2.x only), which Keras 3 cannot load; wrap the op in a layer (keras.layers.Lambda or a "
                "custom layer), re-save the model, and convert that file"), exc)
        if config and name == str(config.get("class_name")).split(">")[-1] and name not in MODEL_CLASSES:
            # The model itself is a subclass: even with its code there is no graph to rewrite and export.
            return quoting(ModelLoadError(f"{path} holds the custom class '{shown(name)}', which Keras cannot "
                                          f"rebuild without its code; {FUNCTIONAL_ADVICE}"), exc)
        if name in MODEL_CLASSES:
            return quoting(ModelLoadError(
                f"{path}{made_by}: Keras 3 cannot rebuild its {name} model from this file; re-save it with Keras 3 "
                "(model.save('model.keras')) from the code that built it"), exc)
        where = f" (layer '{shown(layer)}')" if layer else ""
        return quoting(ModelLoadError(
            f"{path} uses the class '{shown(name)}'{where}, which Keras does not know: give the Python file (or "
            "module) that defines it with --custom-objects FILE.py"), exc)
    return quoting(ModelLoadError(f"cannot load {path}{made_by}: {first_line(exc, 200)}; check that the file is a "
                                  "complete Keras model (model.save(), not save_weights())"), exc)


def lambda_refusal(path: Path, names: list[Any]) -> str:
    listed = ", ".join(f"'{shown(n)}'" for n in names[:3] if n) or "a Lambda layer"
    return (f"{path} has Lambda layer{'s' if len(names) > 1 else ''} {listed}, whose Python code Keras runs only "
            f"from files you trust; if you trust where {shown(path.name)} came from, rerun with --trust-model-code")
