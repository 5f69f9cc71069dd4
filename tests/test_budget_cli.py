"""`edgeact convert --eval-data ... --max-drop/--min-agreement/--min-sqnr` driven like a user.

The model is tests.test_fallback's: only c2 is at fault (one weight of 1000 per output channel
on an input channel that is always zero), so plain INT8 loses every top-1 and the search has to
reach its float fallback (after ReLU6 no equalization applies) or, after ReLU, equalization.
Every metric the report claims is recomputed here by running the written file with edgeact's
runners on the evaluation data.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli

from .helpers import build_one_bad_layer, outlier_cnn, sqnr

SCORES = ("--output-kind", "fc=class_scores")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def files(keras, tmp_path_factory):
    """The ReLU6 and ReLU one-bad-layer models, calibration samples, and eval data labelled with
    the float model's top-1 (float accuracy 100 %, so the drop is 100 - INT8 accuracy)."""
    folder = tmp_path_factory.mktemp("budget")
    paths = {}
    for activation in ("relu6", "relu"):
        model, calibration, x = build_one_bad_layer(keras, activation)
        paths[activation] = folder / f"onebad_{activation}.keras"
        model.save(paths[activation])
        paths[f"{activation}_model"] = model
    paths["calibration"] = folder / "calibration.npy"
    np.save(paths["calibration"], calibration)
    paths["x"] = x
    paths["y"] = paths["relu6_model"].predict(x, verbose=0).argmax(1)
    paths["eval"] = folder / "eval.npz"
    np.savez(paths["eval"], x=x, y=paths["y"])
    paths["unlabelled"] = folder / "unlabelled.npz"
    np.savez(paths["unlabelled"], x=x)
    paths["wrong_shape"] = folder / "wrong_shape.npz"
    np.savez(paths["wrong_shape"], x=np.zeros((4, 9, 9, 3), np.float32), y=np.zeros(4, np.int64))
    paths["too_many_classes"] = folder / "classes.npz"
    np.savez(paths["too_many_classes"], x=x, y=np.full(len(x), 7))
    return paths


def _predict(path, x) -> np.ndarray:
    from edgeact.runtime.onnx import OnnxRunner
    from edgeact.runtime.tflite import TFLiteRunner

    runner = TFLiteRunner(path) if path.suffix == ".tflite" else OnnxRunner(path)
    (outputs,) = runner.predict(x).values()
    return np.asarray(outputs, np.float64)


def _best(search: dict) -> dict:
    return next(a for a in search["attempts"] if a["attempt"] == search["best"])


@pytest.mark.slow
def test_max_drop_is_met_in_both_formats_by_float_fallback(files, tmp_path):
    out = tmp_path / "out"
    result = invoke("convert", files["relu6"], "-c", files["calibration"], "--eval-data", files["eval"],
                    "--max-drop", 5, *SCORES, "-f", "tflite", "-f", "onnx", "-o", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "onebad_relu6.edgeact.json").read_text())
    section = report["accuracy_budget"]
    assert section["met"] and section["eval_data"]["samples"] == len(files["x"]) and section["eval_data"]["labelled"]
    for fmt, suffix in (("tflite", "tflite"), ("onnx", "onnx")):
        search = section["formats"][fmt]
        best = _best(search)
        plain = search["attempts"][0]
        assert plain["full_integer"] and plain["metric"] > 50  # plain INT8 loses most of top-1
        # Independently: the file on disk scores what the table says, and meets the budget.
        outputs = _predict(out / f"onebad_relu6_int8.{suffix}", files["x"])
        drop = 100.0 * (1.0 - np.mean(outputs.argmax(1) == files["y"]))
        assert drop == pytest.approx(best["metric"], abs=1e-9) and drop <= 5
        assert not best["full_integer"] and best["float_layers"][0] == "c2"
        assert report["formats"][fmt]["details"]["budget_attempt"] == best["attempt"]
        assert plain["stage"] == "default"  # attempt 1: the file convert wrote, with the INT8 steps it kept
        # the search wrote another model: no step the exporter kept is claimed for the file
        for key in ("weight_rounding", "activation_ranges", "equalization"):
            step = report["formats"][fmt]["details"].get(key) or {}
            if step.get("kept", "none") != "none":
                assert step["superseded"] == f"the accuracy budget search's attempt {best['attempt']}", (fmt, key)
    checks = {(c["kind"], c["format"]): c for c in report["checks"]}
    assert checks[("budget", "tflite")]["passed"] and checks[("budget", "onnx")]["passed"]
    assert "NOT full-integer" in checks[("integer_only", "tflite")]["summary"]
    assert "NOT full-integer" in checks[("integer_kernels", "onnx")]["summary"]
    assert "no longer full-integer" in result.stdout and "Edge TPU" in result.stdout
    assert result.stderr.count("tflite search: ") >= len(section["formats"]["tflite"]["attempts"])
    # The per-layer section is there after a search, and the checks that judge fusion and integer kernels
    # skip the layers the search kept in float, saying so (the run exits 0).
    assert report["layer_errors"] and report["layer_errors"]["layers"]
    assert "not judged" in checks[("integer_kernels", "onnx")]["summary"]
    # 64 samples: too few to hold some out (20 at least), and the report says so.
    assert section["formats"]["tflite"]["holdout"] is None and "no holdout" in " ".join(
        section["formats"]["tflite"]["notes"])


@pytest.mark.slow
def test_unreachable_budget_exits_1_with_the_best_model_written(files, tmp_path):
    out = tmp_path / "out"
    result = invoke("convert", files["relu6"], "-c", files["calibration"], "--eval-data", files["eval"],
                    "--min-sqnr", 200, "-o", out)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "accuracy budget" in errors[0]
    assert "NOT met" in result.stdout
    report = json.loads((out / "onebad_relu6.edgeact.json").read_text())
    search = report["accuracy_budget"]["formats"]["tflite"]
    assert not search["met"] and not report["checks_passed"]
    assert [a["attempt"] for a in search["attempts"]] == list(range(1, len(search["attempts"]) + 1))
    # Independently: the written file is the best attempt, by output SQNR against the Keras model.
    reference = np.asarray(files["relu6_model"].predict(files["x"], verbose=0), np.float64)
    outputs = _predict(out / "onebad_relu6_int8.tflite", files["x"])
    sqnr = 10 * np.log10(np.sum(reference ** 2) / np.sum((reference - outputs) ** 2))
    assert sqnr == pytest.approx(_best(search)["metric"], abs=1e-6)
    # the best of the attempts that are INT8 models (at least half the conv/dense MACs INT8)
    assert _best(search)["metric"] == max(a["metric"] for a in search["attempts"] if a["int8_share"] >= 0.5)
    assert search["needs"] and "not met:" in result.stdout


@pytest.mark.slow
def test_min_agreement_on_held_out_samples_keeps_the_model_integer(files, tmp_path):
    out = tmp_path / "out"
    result = invoke("convert", files["relu"], "-c", files["calibration"], "--min-agreement", 0.9, *SCORES,
                    "--samples", 32, "--holdout", 16, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    section = json.loads(result.stdout)["accuracy_budget"]
    assert section["eval_data"] == {"source": "the held-out calibration samples", "samples": 16, "labelled": False,
                                    "selection_samples": 16, "holdout_samples": 0}  # 16: too few to split
    best = _best(section["formats"]["tflite"])
    # met by an integer model before any fallback: convert's default INT8 file (attempt 1, the steps its
    # judge kept) or an integer fix
    assert best["stage"] in ("default", "fix") and best["full_integer"], best
    assert all(a["full_integer"] for a in section["formats"]["tflite"]["attempts"])


@pytest.mark.parametrize("extra, fragments", [
    (["--max-drop", -1, "--eval-data", "EVAL"], ["--max-drop -1", "0..100"]),
    (["--min-agreement", 1.5], ["--min-agreement 1.5", "(0, 1]"]),
    (["--max-drop", 1, "--min-sqnr", 20, "--eval-data", "EVAL"], ["one accuracy budget"]),
    (["--eval-data", "EVAL"], ["--eval-data is read only"]),
    (["--max-drop", 1], ["--max-drop needs labelled --eval-data", "no --eval-data"]),
    (["--max-drop", 1, "--eval-data", "UNLABELLED"], ["has no labels", "--min-agreement"]),
    (["--max-drop", 1, "--eval-data", "MISSING"], ["--eval-data", "does not exist"]),
    (["--max-drop", 1, "--eval-data", "EVAL", "--no-scores"], ["compares top-1", "judged dense", "--min-sqnr"]),
    (["--min-sqnr", 20, "--eval-data", "WRONG_SHAPE"], ["wrong_shape.npz"]),
    (["--max-drop", 1, "--eval-data", "TOO_MANY_CLASSES"], ["label 7", "5 classes"]),
    (["--min-agreement", 0.9, "--io", "uint8"], ["pixel-in", "--io int8"]),
    (["--min-sqnr", 20, "--min-int8-share", 2], ["--min-int8-share 2", "0..1"]),
    (["--min-sqnr", 20, "--eval-holdout", 1], ["--eval-holdout 1", "[0, 1)"]),
    (["--min-sqnr", 20, "--search-seconds", 0], ["--search-seconds 0", "not positive"]),
])
def test_bad_budget_input_is_one_line_exit_2_and_writes_nothing(files, tmp_path, extra, fragments):
    names = {"EVAL": files["eval"], "UNLABELLED": files["unlabelled"], "MISSING": tmp_path / "nope.npz",
             "WRONG_SHAPE": files["wrong_shape"], "TOO_MANY_CLASSES": files["too_many_classes"]}
    args = [names.get(a, a) for a in extra if a != "--no-scores"]
    scores = () if "--no-scores" in extra else SCORES
    out = tmp_path / "out"
    result = invoke("convert", files["relu6"], "-c", files["calibration"], *scores, *args, "-o", out)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_max_drop_on_two_class_score_outputs_is_refused_before_calibration(keras, files, tmp_path):
    layers = keras.layers
    inputs = keras.Input((8, 8, 3), name="image")
    h = layers.GlobalAveragePooling2D(name="gap")(layers.Conv2D(4, 3, name="c")(inputs))
    model = keras.Model(inputs, [layers.Dense(3, name="a")(h), layers.Dense(2, name="b")(h)], name="two")
    model.save(path := tmp_path / "two.keras")
    result = invoke("convert", path, "-c", files["calibration"], "--max-drop", 1, "--eval-data", files["eval"],
                    "--output-kind", "a=class_scores", "--output-kind", "b=class_scores", "-o", tmp_path / "out")
    assert result.exit_code == 2 and "one label per sample" in result.stderr and "a, b" in result.stderr


def test_the_report_reads_back_with_and_without_the_budget_section(files, tmp_path):
    from edgeact.report.budget import render_accuracy_budget
    from edgeact.report.records import ConvertReport

    search = {"budget": {"max_drop": 0.5, "min_agreement": None, "min_sqnr": None}, "metric": "top-1 drop (pp)",
              "met": False, "best": 2, "file": "m_int8.tflite", "attempts": [
                  {"attempt": 1, "changed": "minmax ranges", "metric": 3.0, "full_integer": True,
                   "latency_ms": 0.5, "float_layers": [], "ranges": "minmax"},
                  {"attempt": 2, "changed": "float: c2", "metric": 1.0, "full_integer": False,
                   "latency_ms": 0.9, "float_layers": ["c2"], "ranges": "minmax"}]}
    base = {"schema_version": 2, "name": "m", "edgeact_version": "x", "created": "now", "source": {},
            "inputs": [{"name": "image", "shape": [8, 8, 3]}], "outputs": [{"name": "fc", "shape": [5]}],
            "preprocessing": {"preset": "none"}}
    assert ConvertReport.from_dict(base).accuracy_budget is None
    section = {"budget": search["budget"], "metric": search["metric"], "met": False,
               "eval_data": {"source": "eval.npz", "samples": 64, "labelled": True}, "formats": {"tflite": search}}
    report = ConvertReport.from_dict({**base, "accuracy_budget": section})
    assert report.accuracy_budget == section
    text = render_accuracy_budget(section)
    assert "NOT met" in text and "attempt 2 (float: c2)" in text and "0.9 ms per sample vs 0.5 ms" in text
    failed = {**search, "attempts": [], "error": "ORT refused the model"}
    assert "failed: ORT refused the model" in render_accuracy_budget({**section, "formats": {"onnx": failed}})
    from edgeact.report.validate import ReportError

    with pytest.raises(ReportError, match="accuracy_budget"):
        ConvertReport.from_dict({**base, "accuracy_budget": [1]})


@pytest.mark.slow
def test_a_two_input_two_output_model_meets_min_sqnr_per_named_output(keras, tmp_path):
    from converters.budget.evaluate import split_holdout
    from edgeact.data.samples import Samples
    from edgeact.runtime.tflite import TFLiteRunner

    layers = keras.layers
    keras.utils.set_random_seed(4)
    image, extra = keras.Input((8, 8, 3), name="image"), keras.Input((4,), name="extra")
    h = layers.GlobalAveragePooling2D(name="gap")(layers.Conv2D(8, 3, activation="relu", name="c")(image))
    h = layers.Concatenate(name="join")([h, layers.Dense(4, activation="relu", name="e")(extra)])
    model = keras.Model([image, extra], [layers.Dense(5, name="scores")(h), layers.Dense(2, name="box")(h)],
                        name="twoio")
    model.save(path := tmp_path / "twoio.keras")
    rng = np.random.default_rng(0)

    def data(n):
        return {"image": rng.uniform(0, 1, (n, 8, 8, 3)).astype(np.float32),
                "extra": rng.uniform(0, 1, (n, 4)).astype(np.float32)}

    np.savez(calibration := tmp_path / "calib.npz", **data(160))
    np.savez(evaluation := tmp_path / "eval.npz", **(x := data(90)))
    out = tmp_path / "out"
    result = invoke("convert", path, "-c", calibration, "--eval-data", evaluation, "--min-sqnr", 25, "-o", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "twoio.edgeact.json").read_text())
    search = report["accuracy_budget"]["formats"]["tflite"]
    assert search["met"] and set(_best(search)["outputs"]) == {"scores", "box"}
    # Independently: the written file's holdout SQNR (the same seeded split as convert's), worst output.
    _, held = split_holdout(Samples(x))
    reference = dict(zip(model.output_names, model.predict([held.arrays["image"], held.arrays["extra"]], verbose=0)))
    outputs = TFLiteRunner(out / "twoio_int8.tflite").predict(held.arrays)
    sqnrs = {name: 10 * np.log10(np.sum(reference[name] ** 2) / np.sum((reference[name] - outputs[name]) ** 2))
             for name in reference}
    named = search["holdout"]["output"]  # the output whose interval reaches lowest
    assert search["holdout"]["samples"] == 27 and named in sqnrs
    assert search["holdout"]["value"] == pytest.approx(sqnrs[named], abs=1e-3) and min(sqnrs.values()) >= 25


@pytest.mark.slow
def test_a_budget_the_default_int8_file_meets_keeps_that_file_and_its_steps(keras, tmp_path):
    """The outlier CNN: convert's default INT8 (cross-layer equalization kept by its judge) meets
    --min-sqnr 30 at once, so the search tries nothing else, the file is the one convert writes
    without a budget, and its steps stand in the report."""
    model, _, x = outlier_cnn(keras)
    model.save(path := tmp_path / "outlier.keras")
    calibration = np.random.default_rng(3).uniform(0, 1, (300, 10, 10, 3)).astype(np.float32)
    np.save(tmp_path / "calibration.npy", calibration)
    np.savez(tmp_path / "eval.npz", x=x)
    common = ("-c", tmp_path / "calibration.npy", "-f", "tflite", "-f", "onnx", "--layer-error", "never")
    result = invoke("convert", path, *common, "--eval-data", tmp_path / "eval.npz", "--min-sqnr", 30,
                    "-o", tmp_path / "budget")
    assert result.exit_code == 0, result.output
    plain = invoke("convert", path, *common, "-o", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    report = json.loads((tmp_path / "budget" / "outlier.edgeact.json").read_text())
    reference = model.predict(x, verbose=0)
    unseen = np.random.default_rng(4).uniform(0, 1, (100, 10, 10, 3)).astype(np.float32)
    for fmt in ("tflite", "onnx"):
        search = report["accuracy_budget"]["formats"][fmt]
        assert [a["stage"] for a in search["attempts"]] == ["default"] and search["best"] == 1, fmt
        step = report["formats"][fmt]["details"]["equalization"]
        assert step["kept"] == "cross-layer equalization" and not step.get("superseded"), fmt
        written = tmp_path / "budget" / f"outlier_int8.{fmt}"
        assert sqnr(reference, _predict(written, x)) >= 30.0, fmt  # recomputed on the eval data
        # the exporter's file, untouched: the same outputs as convert's without a budget, on new samples
        assert np.array_equal(_predict(written, unseen), _predict(tmp_path / "plain" / f"outlier_int8.{fmt}", unseen))
    assert "the accuracy budget search's attempt" not in result.stdout
