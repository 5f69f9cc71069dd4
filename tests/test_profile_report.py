"""The typed profile report: what `profile_models` returns to a Python user, speed verdicts
included; its JSON read back to an equal report; a kept report of another schema, with a field
missing or of the wrong type, refused in one line naming the key."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgeact.fastpath.speed_verdict import SpeedVerdict
from edgeact.profile.fields import ProfileDataError
from edgeact.profile.render import render_json
from edgeact.profile.report import PROFILE_SCHEMA_VERSION, ProfileReport
from edgeact.profile.row import ProfileRow
from edgeact.profile.session import ProfileOptions, profile_models


@pytest.fixture(scope="module")
def pair(converted_small, tmp_path_factory):
    """The small CNN's INT8 model, its float export and a second float copy under another name,
    in a folder of their own, with the convert report naming the copy as the INT8 model's float
    sibling (at the folder convert wrote it to, which is not this one)."""
    out, _ = converted_small
    folder = tmp_path_factory.mktemp("pair")
    for name in ("small_cnn_int8.tflite", "small_cnn_fp32.tflite"):
        shutil.copy(out / name, folder / name)
    shutil.copy(out / "small_cnn_fp32.tflite", folder / "golden_fp32.tflite")
    report = json.loads((out / "small_cnn.edgeact.json").read_text())
    report["formats"]["tflite"]["files"]["fp32"] = "/somewhere/else/golden_fp32.tflite"
    (folder / "small_cnn.edgeact.json").write_text(json.dumps(report))
    models = [folder / "small_cnn_int8.tflite", folder / "small_cnn_fp32.tflite", folder / "golden_fp32.tflite"]
    return folder, profile_models(models, ProfileOptions(runs=15, warmup=2, threads=1, progress=False,
                                                         reference=folder / "small_cnn_fp32.tflite"))


def test_profile_models_returns_the_speed_verdicts_recomputed_from_the_rows_timings(pair):
    folder, report = pair
    assert isinstance(report, ProfileReport) and report.schema_version == PROFILE_SCHEMA_VERSION
    rows = {row.name: row for row in report.models}
    assert set(rows) == {"small_cnn_int8.tflite", "small_cnn_fp32.tflite", "golden_fp32.tflite"}
    (verdict,) = report.speed  # one INT8 model: one verdict, against the float file its report names
    assert isinstance(verdict, SpeedVerdict)
    assert verdict.int8 == str(folder / "small_cnn_int8.tflite")
    assert verdict.float == str(folder / "golden_fp32.tflite")  # by the report, not by the name small_cnn_fp32
    int8_ms = float(np.median(rows["small_cnn_int8.tflite"].timings_ms))
    float_ms = float(np.median(rows["golden_fp32.tflite"].timings_ms))
    assert len(rows["small_cnn_int8.tflite"].timings_ms) == 15
    assert verdict.int8_ms == pytest.approx(int8_ms, rel=1e-4)
    assert verdict.float_ms == pytest.approx(float_ms, rel=1e-4)
    assert verdict.speedup == pytest.approx(float_ms / int8_ms, rel=1e-3)
    assert verdict.slower == (int8_ms > float_ms)
    if verdict.slower:  # the ops XNNPACK left are named (SOFTMAX in the small CNN)
        assert verdict.coverage and verdict.coverage["total_ops"] > 0


def test_without_a_report_the_sibling_is_found_by_name(pair, tmp_path):
    folder, _ = pair
    for name in ("small_cnn_int8.tflite", "small_cnn_fp32.tflite", "golden_fp32.tflite"):
        shutil.copy(folder / name, tmp_path / name.replace("small_cnn", "lone"))
    models = [tmp_path / "lone_int8.tflite", tmp_path / "golden_fp32.tflite", tmp_path / "lone_fp32.tflite"]
    report = profile_models(models, ProfileOptions(runs=3, warmup=1, progress=False))
    assert [(v.int8, v.float) for v in report.speed] == [(str(models[0]), str(models[2]))]


def test_json_reads_back_to_an_equal_report(pair):
    _, report = pair
    text = render_json(report)
    data = json.loads(text)  # strict JSON: the fp32 row against itself has an infinite SQNR
    assert data["schema_version"] == PROFILE_SCHEMA_VERSION and data["speed"][0]["int8"].endswith("int8.tflite")
    again = ProfileReport.from_dict(data)
    assert again == report
    assert again.models[1].reference.sqnr_db == float("inf")
    assert ProfileReport.from_dict(again.to_dict()) == report  # without JSON in between too


def _broken(report: ProfileReport, change) -> dict:
    data = json.loads(render_json(report))
    change(data)
    return data


def _set(path: str, value):
    def change(data):
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return change


@pytest.mark.parametrize("path, value, message", [
    ("schema_version", 2, "has profile schema version 2; this edgeact reads version 1"),
    ("schema_version", "1", "has profile schema version '1'; this edgeact reads version 1"),
    ("schema_version", KeyError, "has profile schema version None"),
    ("settings", KeyError, "has no 'settings'; re-run edgeact profile --json"),
    ("models.0.latency_ms", KeyError, "has no 'models[0].latency_ms'"),
    ("data.samples", KeyError, "has no 'data.samples'"),
    ("settings.runs", "15", "'settings.runs' is str, not int"),
    ("models.0.latency_ms.p50", "fast", "'models[0].latency_ms.p50' is not a time in ms"),
    ("models.1.init_ms", float("nan"), "'models[1].init_ms' is nan, not a finite time"),
    ("models.0.accuracy", [0.9], "'models[0].accuracy' is list, not object or null"),
    ("speed.0.int8_ms", None, "'speed[0].int8_ms' is NoneType, not number"),
    ("models", {}, "'models' is dict, not list"),
])
def test_a_report_that_is_not_this_schema_is_refused_in_one_line(pair, path, value, message):
    _, report = pair
    with pytest.raises(ProfileDataError) as caught:
        ProfileReport.from_dict(_broken(report, _set(path, value)), "kept.json")
    text = str(caught.value)
    assert message in text and text.startswith("kept.json") and "\n" not in text


def test_a_row_refused_by_itself_names_its_key_without_a_prefix(pair):
    _, report = pair
    row = report.models[0].to_dict()
    row["memory"] = {"peak_rss_mb": 1.0}
    with pytest.raises(ProfileDataError, match=r"^a row has no 'memory.growth_mb'; the profiler"):
        ProfileRow.from_dict(row, "a row")
