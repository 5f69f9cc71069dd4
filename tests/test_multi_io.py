"""Several outputs and several inputs: matched by name across Keras, TFLite, ONNX, the report and profile."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from converters import ConvertOptions, convert
from edgeact.cli import cli
from edgeact.config import Format
from edgeact.errors import InputError, ModelLoadError
from edgeact.report.records import ConvertReport
from edgeact.runtime import open_runner

BOTH = (Format.TFLITE, Format.ONNX)


def two_head_model(keras, with_meta: bool):
    """An image CNN with a 10-class softmax head 'scores' and a 4-value box head 'boxes' (+ a 'meta' input)."""
    L = keras.layers
    keras.utils.set_random_seed(3)
    image = keras.Input((12, 12, 3), name="image")
    x = L.Conv2D(8, 3, activation="relu", name="conv")(image)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    inputs = [image]
    if with_meta:
        meta = keras.Input((4,), name="meta")
        x = L.Concatenate(name="join")([x, L.Dense(4, activation="relu", name="meta_dense")(meta)])
        inputs.append(meta)
    scores = L.Dense(10, activation="softmax", name="scores")(x)
    boxes = L.Dense(4, name="boxes")(x)
    # Keras order: scores first; TFLite's SignatureDef and ONNX's graph list them otherwise.
    return keras.Model(inputs, [scores, boxes], name="twohead" + ("_meta" if with_meta else ""))


def data_for(model, n=60, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"image": rng.integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)}
    if len(model.inputs) == 2:
        arrays["meta"] = rng.normal(size=(n, 4)).astype(np.float32)
    return arrays


@pytest.fixture(scope="module", params=[False, True], ids=["two-outputs", "two-inputs"])
def converted(request, keras, tmp_path_factory):
    model = two_head_model(keras, with_meta=request.param)
    out = tmp_path_factory.mktemp("multi")
    arrays = data_for(model)
    np.savez(out / "calib.npz", **arrays)
    report = convert(model, out / "calib.npz", out / "models",
                     ConvertOptions(formats=BOTH, samples=40, holdout=20, progress=False))
    return model, out, report, arrays


def _holdout(report, arrays, model):
    from calibration import read_calibration
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.data.samples import ModelInput

    inputs = [ModelInput(t.name, tuple(t.shape[1:])) for t in model.inputs]
    data = read_calibration(dict(arrays), inputs, make_preprocessing("unit"), 40, 20, 0)
    return data.holdout


def test_names_are_the_keras_names_in_every_format(converted):
    model, out, report, _ = converted
    keras_outputs = list(model.output_names)
    keras_inputs = [t.name for t in model.inputs]
    assert [o.name for o in report.outputs] == keras_outputs == ["scores", "boxes"]
    assert [i.name for i in report.inputs] == keras_inputs
    for fmt in ("tflite", "onnx"):
        for variant in ("fp32", "int8"):
            runner = open_runner(out / "models" / f"{model.name}_{variant}.{fmt}")
            assert sorted(s.name for s in runner.outputs) == sorted(keras_outputs), (fmt, variant)
            assert sorted(s.name for s in runner.inputs) == sorted(keras_inputs), (fmt, variant)
    on_disk = json.loads((out / "models" / f"{model.name}.edgeact.json").read_text())
    assert [o["name"] for o in on_disk["outputs"]] == keras_outputs
    assert sorted(o["name"] for o in on_disk["formats"]["tflite"]["outputs"]) == sorted(keras_outputs)


def test_each_output_is_judged_by_the_rule_that_fits_it(converted):
    _, _, report, _ = converted
    kinds = {o.name: o.kind for o in report.outputs}
    assert kinds == {"scores": "class_scores", "boxes": "dense"}
    int8 = {c.output: c for c in report.checks_of("parity") if c.subject == "tflite int8 vs keras"}
    assert int8["scores"].rule.startswith("class scores") and int8["boxes"].rule.startswith("dense output")
    assert int8["boxes"].metrics["top1_agreement"] is not None  # computed, but not what judged it
    assert report.checks_passed, [c.label + ": " + c.summary for c in report.failed_checks()]


def test_per_output_parity_recomputed_here(converted):
    model, out, report, arrays = converted
    holdout = _holdout(report, arrays, model)
    batch = [holdout.arrays[t.name] for t in model.inputs]
    expected = dict(zip(model.output_names, model(batch if len(batch) > 1 else batch[0], training=False)))
    for fmt in ("tflite", "onnx"):
        got = open_runner(out / "models" / f"{model.name}_int8.{fmt}").predict(holdout)
        checks = {c.output: c.metrics for c in report.checks_of("parity") if c.subject == f"{fmt} int8 vs keras"}
        for name in ("scores", "boxes"):
            ref = np.asarray(expected[name], np.float64)
            cand = got[name].astype(np.float64)
            sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - cand) ** 2))
            assert checks[name]["sqnr_db"] == pytest.approx(sqnr, rel=1e-6), (fmt, name)
            assert checks[name]["max_abs_diff"] == pytest.approx(np.abs(ref - cand).max(), rel=1e-5)
        agree = np.mean(np.argmax(expected["scores"], 1) == np.argmax(got["scores"], 1))
        assert checks["scores"]["top1_agreement"] == pytest.approx(agree)


def test_report_round_trips_and_refuses_other_schemas(converted):
    model, out, report, _ = converted
    data = json.loads((out / "models" / f"{model.name}.edgeact.json").read_text())
    again = ConvertReport.from_dict(data)
    assert again.to_dict() == data
    assert [c.label for c in again.checks] == [c.label for c in report.checks]
    with pytest.raises(InputError, match="schema version 3"):
        ConvertReport.from_dict({**data, "schema_version": 3}, "future.edgeact.json")
    with pytest.raises(InputError, match="schema version 1"):
        ConvertReport.from_dict({k: v for k, v in data.items() if k != "schema_version"})


def test_duplicate_output_names_are_refused(keras, tmp_path):
    L = keras.layers
    inputs = keras.Input((8,), name="x")
    y = L.Dense(3, name="head")(inputs)
    model = keras.Model(inputs, [y, y])
    with pytest.raises(ModelLoadError, match="two outputs named 'head'"):
        convert(model, np.zeros((10, 8), np.float32), tmp_path, ConvertOptions(progress=False))
    assert not list(tmp_path.iterdir())


def test_npz_missing_an_input_key_is_a_one_line_error(keras, tmp_path):
    model = two_head_model(keras, with_meta=True)
    path = tmp_path / "m.keras"
    model.save(path)
    np.savez(tmp_path / "bad.npz", image=np.zeros((10, 12, 12, 3), np.uint8))
    result = CliRunner().invoke(cli, ["convert", str(path), "-c", str(tmp_path / "bad.npz"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "no array for model input 'meta'" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def savedmodel_converted(keras, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("savedmodel")
    model = two_head_model(keras, with_meta=False)
    folder = tmp / "exported"
    model.export(str(folder), verbose=False)
    np.savez(tmp / "calib.npz", **data_for(model))
    report = convert(folder, tmp / "calib.npz", tmp / "out",
                     ConvertOptions(formats=BOTH, samples=40, holdout=20, progress=False))
    return model, folder, tmp, report


def test_savedmodel_with_two_outputs_goes_to_both_formats(savedmodel_converted):
    import tensorflow as tf

    model, folder, tmp, report = savedmodel_converted
    names = sorted(o.name for o in report.outputs)
    signature = tf.saved_model.load(str(folder)).signatures["serving_default"]
    assert names == sorted(signature.structured_outputs) and len(names) == 2
    for fmt in ("tflite", "onnx"):
        runner = open_runner(tmp / "out" / f"exported_int8.{fmt}")
        assert sorted(s.name for s in runner.outputs) == names
    assert report.passes == [] and any("graph passes did not run" in n for n in report.notes)
    assert {o.kind for o in report.outputs} == {"class_scores", "dense"}  # judged from the data
    assert report.checks_passed, [c.label + ": " + c.summary for c in report.failed_checks()]
    # Per-output parity, recomputed here from the SavedModel's own signature on fresh inputs.
    x = data_for(model, 12, seed=11)["image"].astype(np.float32) / 255
    (input_name,) = signature.structured_input_signature[1]
    expected = {k: np.asarray(v, np.float64) for k, v in signature(**{input_name: tf.constant(x)}).items()}
    for fmt in ("tflite", "onnx"):
        got = open_runner(tmp / "out" / f"exported_int8.{fmt}").predict(x)
        for name in names:
            ref = expected[name]
            sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got[name]) ** 2))
            assert sqnr > 15, (fmt, name, sqnr)


def _eval_npz(model, path, n=24):
    arrays = data_for(model, n, seed=7)
    np.savez(path, x=arrays["image"], y=np.random.default_rng(1).integers(0, 10, n))
    return path


def test_profile_scores_the_class_output_and_compares_every_output(keras, tmp_path):
    model = two_head_model(keras, with_meta=False)
    keras_file = tmp_path / "twohead.keras"
    model.save(keras_file)
    np.savez(tmp_path / "calib.npz", **data_for(model))
    convert(keras_file, tmp_path / "calib.npz", tmp_path / "out", ConvertOptions(formats=BOTH, samples=40,
                                                                                   holdout=20, progress=False))
    data = _eval_npz(model, tmp_path / "eval.npz")
    result = CliRunner().invoke(cli, ["profile", str(tmp_path / "out" / "twohead_int8.tflite"),
                                      str(tmp_path / "out" / "twohead_int8.onnx"), "--data", str(data),
                                      "--reference", str(keras_file), "--runs", "5", "--warmup", "1", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["models"]
    x = np.load(data)["x"].astype(np.float32) / 255
    y = np.load(data)["y"]
    expected = dict(zip(model.output_names, model(x, training=False)))
    for row in rows:
        assert row["scored_output"] == "scores"  # the report says boxes is a dense output
        assert set(row["agreement"]) == {"scores", "boxes"}
        got = open_runner(row["model"]).predict(x)
        assert row["accuracy"]["top1"] == pytest.approx(np.mean(got["scores"].argmax(1) == y))
        ref = np.asarray(expected["boxes"], np.float64)
        sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got["boxes"]) ** 2))
        assert row["agreement"]["boxes"]["sqnr_db"] == pytest.approx(sqnr, rel=1e-4)
    unknown = CliRunner().invoke(cli, ["profile", str(tmp_path / "out" / "twohead_int8.tflite"), "--data", str(data),
                                       "--output", "nope", "--runs", "2"])
    assert unknown.exit_code == 2 and "--output nope" in unknown.stderr
    assert "scores" in unknown.stderr and "boxes" in unknown.stderr


@pytest.fixture(scope="module")
def two_input_models(keras, tmp_path_factory):
    model = two_head_model(keras, with_meta=True)
    folder = tmp_path_factory.mktemp("twoin")
    model.save(folder / "twohead_meta.keras")
    np.savez(folder / "calib.npz", **data_for(model))
    convert(folder / "twohead_meta.keras", folder / "calib.npz", folder / "out",
            ConvertOptions(formats=BOTH, samples=40, holdout=20, progress=False))
    arrays = data_for(model, 16, seed=9)
    np.savez(folder / "eval.npz", **arrays, y=np.random.default_rng(2).integers(0, 10, 16))
    return model, folder


def _expected_accuracy(model_path, data):
    loaded = np.load(data)
    inputs = {"image": loaded["image"].astype(np.float32) / 255, "meta": loaded["meta"].astype(np.float32)}
    got = open_runner(model_path).predict(inputs)
    return float(np.mean(got["scores"].argmax(1) == loaded["y"]))


def test_two_input_model_profiles_locally_and_isolated(two_input_models):
    model, folder = two_input_models
    models = [folder / "out" / "twohead_meta_int8.tflite", folder / "out" / "twohead_meta_int8.onnx"]
    for extra in ([], ["--isolate"]):
        result = CliRunner().invoke(cli, ["profile", *map(str, models), "--data", str(folder / "eval.npz"),
                                          "--reference", str(folder / "twohead_meta.keras"), "--runs", "5",
                                          "--warmup", "1", "--json", *extra])
        assert result.exit_code == 0, result.output
        for row in json.loads(result.stdout)["models"]:
            assert row["accuracy"]["top1"] == pytest.approx(_expected_accuracy(row["model"], folder / "eval.npz"))
            assert set(row["agreement"]) == {"scores", "boxes"}
            assert row["agreement"]["scores"]["cosine"] > 0.98


@pytest.mark.device
def test_several_outputs_and_inputs_profile_through_ssh(two_input_models, savedmodel_converted, tmp_path):
    """The two-input model, and the SavedModel's two-output model, measured on a device over SSH."""
    import sys

    from tests.sshd import make_server

    model, folder = two_input_models
    _, _, saved_tmp, _ = savedmodel_converted
    server = make_server(tmp_path / "sshd").start()
    device = ["--no-progress", "--device", server.device, "--ssh-option", f"-F {server.client_config}",
              "--device-python", sys.executable, "--device-cache", str(tmp_path / "cache")]
    try:
        int8 = folder / "out" / "twohead_meta_int8.tflite"
        result = CliRunner().invoke(cli, ["profile", str(int8), "--data", str(folder / "eval.npz"), "--runs", "3",
                                          "--warmup", "1", "--json", *device])
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.stdout)["models"]
        assert row["device"]["name"] == server.device
        assert row["accuracy"]["top1"] == pytest.approx(_expected_accuracy(int8, folder / "eval.npz"))
        saved = saved_tmp / "out" / "exported_int8.tflite"
        result = CliRunner().invoke(cli, ["profile", str(saved), "--runs", "3", "--warmup", "1", "--json", *device])
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.stdout)["models"]
        assert sorted(o["name"] for o in row["outputs"]) == sorted(s.name for s in open_runner(saved).outputs)
    finally:
        server.stop()
