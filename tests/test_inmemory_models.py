"""`convert()` on Keras model objects built in memory: the input names the files really carry.

Keras 3 names an unnamed `keras.Input`'s tensor `keras_tensor_N` but its layer `input_layer_N`,
and every rebuild from config uses the layer's name. These models are converted as objects,
never saved first, to both formats; the names are read back from the .tflite SignatureDef
(LiteRT) and the .onnx graph (onnx) without edgeact, and the float files are fed by those
names and compared with the Keras model itself.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from converters import ConvertOptions, convert
from edgeact.config import Format
from edgeact.errors import VerificationError

BOTH = (Format.TFLITE, Format.ONNX)
OPTIONS = {"formats": BOTH, "samples": 24, "holdout": 12, "progress": False}


def _cnn_body(keras, x):
    L = keras.layers
    x = L.Conv2D(6, 3)(x)
    x = L.BatchNormalization()(x)  # folded by a pass: the model is rebuilt from its config
    x = L.ReLU()(x)
    return L.GlobalAveragePooling2D()(x)


def unnamed_functional(keras):
    image = keras.Input((12, 12, 3))
    return keras.Model(image, keras.layers.Dense(5, activation="softmax")(_cnn_body(keras, image)))


def named_functional(keras):
    image = keras.Input((12, 12, 3), name="image")
    return keras.Model(image, keras.layers.Dense(5, activation="softmax")(_cnn_body(keras, image)),
                       name="named_in_memory")


def sequential(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((12, 12, 3)), L.Conv2D(6, 3), L.BatchNormalization(), L.ReLU(),
                             L.GlobalAveragePooling2D(), L.Dense(5, activation="softmax")])


def two_unnamed_inputs(keras):
    L = keras.layers
    image, meta = keras.Input((12, 12, 3)), keras.Input((4,))
    x = L.Concatenate()([_cnn_body(keras, image), L.Dense(4, activation="relu")(meta)])
    return keras.Model([image, meta], L.Dense(5, activation="softmax")(x))


BUILDERS = {"unnamed": unnamed_functional, "named": named_functional, "sequential": sequential,
            "two-inputs": two_unnamed_inputs}


def _data(model, n=36, seed=0) -> dict[str, np.ndarray] | np.ndarray:
    """Float model inputs: one array, or (several inputs) a list in model order."""
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(0, 1, (n, *t.shape[1:])).astype("float32") for t in model.inputs]
    return arrays[0] if len(arrays) == 1 else arrays


def _tflite_input_names(path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(path)).get_signature_list()
    assert len(signatures) == 1
    return sorted(next(iter(signatures.values()))["inputs"])


def _onnx_input_names(path) -> list[str]:
    import onnx

    return sorted(i.name for i in onnx.load(str(path)).graph.input)


def _float_outputs_by_name(path, feed: dict[str, np.ndarray]) -> np.ndarray:
    """The single output of a float file, fed by input name (NHWC, as both exporters write by default)."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, feed)[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    return np.stack([next(iter(runner(**{k: v[i:i + 1] for k, v in feed.items()}).values()))[0]
                     for i in range(len(next(iter(feed.values()))))])


def _saved_input_names(keras, model, folder) -> list[str]:
    """The input names Keras gives the model once saved and loaded: what `convert(path)` would report."""
    model.save(folder / "copy.keras")
    return [t.name for t in keras.models.load_model(folder / "copy.keras", compile=False).inputs]


@pytest.fixture(scope="module", params=list(BUILDERS))
def converted(request, keras, tmp_path_factory):
    keras.utils.set_random_seed(7)
    model = BUILDERS[request.param](keras)
    names_before = [t.name for t in model.inputs]
    data = _data(model)
    out = tmp_path_factory.mktemp(request.param)
    # Several inputs: keyed by the names the user sees on the object (keras_tensor_N).
    calibration = dict(zip(names_before, data)) if isinstance(data, list) else data
    report = convert(model, calibration, out / "models", ConvertOptions(**OPTIONS))
    return model, names_before, data, out / "models", report, _saved_input_names(keras, model, out)


def test_report_names_the_inputs_the_files_have(converted):
    model, _, _, out, report, _ = converted
    names = sorted(i.name for i in report.inputs)
    assert len(names) == len(model.inputs)
    for variant in ("fp32", "int8"):
        assert _tflite_input_names(out / f"{report.name}_{variant}.tflite") == names, variant
        assert _onnx_input_names(out / f"{report.name}_{variant}.onnx") == names, variant
    for fmt in ("tflite", "onnx"):
        assert sorted(i["name"] for i in report.formats[fmt].inputs) == names
    on_disk = json.loads((out / f"{report.name}.edgeact.json").read_text())
    assert sorted(i["name"] for i in on_disk["inputs"]) == names


def test_inputs_are_named_as_a_saved_copy_names_them(converted):
    model, names_before, _, _, report, saved_names = converted
    assert [i.name for i in report.inputs] == saved_names
    if model.name == "named_in_memory":
        assert saved_names == names_before == ["image"]
    else:  # the case that failed: the object's tensors are named otherwise than its layers
        assert all(n.startswith("keras_tensor") for n in names_before)
        assert all(n.startswith("input_layer") for n in saved_names)
    # The user's object is not renamed or rebuilt in place.
    assert [t.name for t in model.inputs] == names_before


def test_both_formats_written_and_checked(converted):
    _, _, _, out, report, _ = converted
    for fmt in ("tflite", "onnx"):
        assert report.formats[fmt].error is None
        for variant in ("fp32", "int8"):
            assert (out / f"{report.name}_{variant}.{fmt}").stat().st_size > 0
        parity = [c for c in report.checks if c.kind == "parity" and c.format == fmt]
        assert len(parity) == 2 and all(np.isfinite(c.metrics["cosine"]) for c in parity)
    assert report.checks_passed, [c.summary for c in report.checks if not c.passed]
    folded = next(p for p in report.passes if p["name"] == "fold_batchnorm")
    assert folded["changed"], "the BatchNorm fold rebuilt the model (the case that lost the input names)"


def test_float_files_fed_by_name_match_the_keras_model(converted):
    model, _, data, out, report, _ = converted
    arrays = data if isinstance(data, list) else [data]
    expected = np.asarray(model(arrays if len(arrays) > 1 else arrays[0], training=False))
    # report.inputs is in model order: it pairs each file input name with the array for it.
    feed = {info.name: array for info, array in zip(report.inputs, arrays)}
    assert [tuple(info.shape) for info in report.inputs] == [a.shape[1:] for a in arrays]
    for fmt in ("tflite", "onnx"):
        got = _float_outputs_by_name(out / f"{report.name}_fp32.{fmt}", feed)
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=fmt)


@pytest.mark.slow
def test_mobilenetv3_small_in_memory(keras, tmp_path):
    """The reported case: keras.applications builds an unnamed input; both formats are written and checked."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(64, 64, 3))
    pixels = np.random.default_rng(0).uniform(0, 255, (32, 64, 64, 3)).astype("float32")
    try:
        report = convert(model, pixels, tmp_path, ConvertOptions(formats=BOTH, samples=20, holdout=12,
                                                                 progress=False))
    except VerificationError as exc:  # random weights: INT8 accuracy is not the point here
        report = exc.report
    names = [i.name for i in report.inputs]
    assert len(names) == 1 and names[0].startswith("input_layer")
    for variant in ("fp32", "int8"):
        assert _tflite_input_names(tmp_path / f"{report.name}_{variant}.tflite") == names
        assert _onnx_input_names(tmp_path / f"{report.name}_{variant}.onnx") == names
    parity = [c for c in report.checks if c.kind == "parity"]
    assert {c.format for c in parity} == {"tflite", "onnx"}
    assert all(np.isfinite(c.metrics["cosine"]) for c in parity)


def test_iterable_keyed_by_the_objects_tensor_names(keras, tmp_path):
    """A generator of dicts keyed as the user sees the object (keras_tensor_N) calibrates the renamed inputs."""
    keras.utils.set_random_seed(1)
    model = two_unnamed_inputs(keras)
    seen = [t.name for t in model.inputs]
    image, meta = _data(model, n=30)
    batches = ({seen[0]: image[i:i + 10], seen[1]: meta[i:i + 10]} for i in range(0, 30, 10))
    report = convert(model, batches, tmp_path, ConvertOptions(formats=(Format.TFLITE,), samples=20, holdout=10,
                                                            progress=False))
    assert report.calibration["source"] == "python iterable" and report.calibration["available"] == 30
    names = [i.name for i in report.inputs]
    assert names != seen and all(n.startswith("input_layer") for n in names)
    assert _tflite_input_names(tmp_path / f"{report.name}_int8.tflite") == sorted(names)


def test_sequential_never_built_is_a_one_line_error(keras, tmp_path):
    from edgeact.errors import ModelLoadError

    model = keras.Sequential([keras.layers.Dense(2)], name="unbuilt")
    with pytest.raises(ModelLoadError, match="'unbuilt' has no input shape yet; start it with keras.Input"):
        convert(model, np.zeros((10, 4), "float32"), tmp_path / "out", ConvertOptions(formats=BOTH, progress=False))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_object_with_a_class_keras_cannot_find_is_rebuilt_with_its_own_classes(keras, tmp_path):
    """A layer class Keras cannot find by name (defined in a function): the rebuild takes it from the model's own
    layers (converters.keras.model_code.classes_of), so the model gets its layer's input name like any other."""
    from converters.keras.in_memory import with_layer_input_names

    def local_layer_class():
        class Double(keras.layers.Layer):
            def call(self, x):
                return x * 2.0
        return Double

    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(3)(local_layer_class()()(inputs)), name="custom_local")
    with pytest.raises(Exception, match="Double"):  # Keras alone cannot rebuild it: the class is not findable
        keras.Model.from_config(model.get_config())
    rebuilt = with_layer_input_names(model)
    assert rebuilt is not model and type(rebuilt.layers[1]).__name__ == "Double"
    data = np.random.default_rng(0).uniform(0, 1, (30, 8)).astype("float32")
    report = convert(model, data, tmp_path, ConvertOptions(formats=(Format.TFLITE,), samples=20, holdout=10,
                                                         progress=False))
    names = [i.name for i in report.inputs]
    assert names == [rebuilt.layers[0].name] and names[0].startswith("input_layer")
    assert _tflite_input_names(tmp_path / "custom_local_int8.tflite") == names
    expected = np.asarray(model(data, training=False))
    np.testing.assert_allclose(_float_outputs_by_name(tmp_path / "custom_local_fp32.tflite", {names[0]: data}),
                               expected, atol=1e-4)
