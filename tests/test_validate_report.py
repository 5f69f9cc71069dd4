"""Reports are validated before use: types, ranges, finite numbers, schema version; the error names the key."""
from __future__ import annotations

import json
import math
import shutil
import time

import pytest
from click.testing import CliRunner

from edgeact.cli import cli
from edgeact.report.sidecar import read_report
from edgeact.report.validate import ReportError


@pytest.fixture()
def model_and_report(converted_small, tmp_path):
    out, _ = converted_small
    model = shutil.copy(out / "small_cnn_int8.tflite", tmp_path / "small_cnn_int8.tflite")
    report = tmp_path / "small_cnn.edgeact.json"
    data = json.loads((out / "small_cnn.edgeact.json").read_text())
    return model, report, data


def _write(path, data):
    path.write_text(json.dumps(data, allow_nan=True))
    return path


CASES = {
    "huge input shape": (lambda d: d["inputs"][0].update(shape=[100000, 100000, 3]),
                         r"'inputs\[0\].shape' .* over edgeact's limit"),
    "negative dim": (lambda d: d["inputs"][0].update(shape=[16, -16, 3]), r"'inputs\[0\].shape'"),
    "shape of strings": (lambda d: d["inputs"][0].update(shape=["16", 16, 3]), r"'inputs\[0\].shape'"),
    "unknown output kind": (lambda d: d["outputs"][0].update(kind="bananas"), r"'outputs\[0\].kind'"),
    "NaN scale": (lambda d: d["preprocessing"].update(scale=math.nan), "'preprocessing.scale' is nan"),
    "zero std": (lambda d: d["preprocessing"].update(std=[1.0, 0.0, 1.0]), "'preprocessing.std'"),
    "infinite mean": (lambda d: d["preprocessing"].update(mean=[math.inf]), "'preprocessing.mean'"),
    "no preprocessing": (lambda d: d.pop("preprocessing"), "'preprocessing' is missing"),
    "labels not a list": (lambda d: d.update(labels="cat,dog"), "'labels'"),
    "inverted range": (lambda d: d["calibration"].update(input_min=2.0, input_max=1.0), "'calibration.input_min'"),
    "bool version": (lambda d: d.update(schema_version=True), "schema version True"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_report_names_the_key(model_and_report, case):
    _, report, data = model_and_report
    change, message = CASES[case]
    change(data)
    with pytest.raises(ReportError, match=message):
        read_report(_write(report, data))


def test_a_json_list_is_not_a_report(model_and_report):
    _, report, _ = model_and_report
    with pytest.raises(ReportError, match="top level"):
        read_report(_write(report, [1, 2]))


def test_schema_versions(model_and_report):
    _, report, data = model_and_report
    assert read_report(_write(report, data)).input_shape == (16, 16, 3)  # no key: version 1
    assert read_report(_write(report, {**data, "schema_version": 2})).input_shape == (16, 16, 3)
    with pytest.raises(ReportError) as info:
        read_report(_write(report, {**data, "schema_version": 3}))
    assert str(info.value) == (f"report {report} has schema version 3; this edgeact reads 1-2; "
                               "re-run edgeact convert")


def test_profile_refuses_a_huge_report_shape_before_allocating(model_and_report):
    model, report, data = model_and_report
    data["inputs"][0]["shape"] = [50000, 50000, 3]
    _write(report, data)
    start = time.monotonic()
    result = CliRunner().invoke(cli, ["profile", str(model), "--runs", "1", "--warmup", "0"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "'inputs[0].shape'" in result.output and time.monotonic() - start < 30
