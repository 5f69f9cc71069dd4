"""profile runs each model in a child process by default: a child killed by a signal is one error
line naming the model and the signal, exit 2, and the other models' rows are still printed."""
from __future__ import annotations

import json
import shutil
import sys

from click.testing import CliRunner

from edgeact.cli import cli


def _crashing_python(tmp_path, real: str):
    """A stand-in for sys.executable: kills itself with SIGSEGV when asked to profile a file named
    *crash*, else runs the real interpreter (as LiteRT segfaulting on one model would)."""
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\n"
                      'for arg in "$@"; do case "$arg" in *crash*.tflite) kill -SEGV $$;; esac; done\n'
                      f'exec "{real}" "$@"\n')
    script.chmod(0o755)
    return script


def test_a_segfaulting_child_is_one_error_and_the_other_rows_stay(converted_small, tmp_path, monkeypatch):
    out, _ = converted_small
    good = out / "small_cnn_int8.tflite"
    crash = tmp_path / "crash_int8.tflite"
    shutil.copy(good, crash)
    monkeypatch.setattr(sys, "executable", str(_crashing_python(tmp_path, sys.executable)))
    result = CliRunner().invoke(cli, ["profile", str(good), str(crash), "--runs", "3", "--warmup", "0", "--json"])
    assert result.exit_code == 2, result.output
    stdout, _, error = result.output.rpartition("error: ")
    assert error.startswith(f"the runtime crashed on {crash} (signal 11, SIGSEGV)") and error.count("\n") == 1
    report = json.loads(stdout)
    assert [row["name"] for row in report["models"]] == ["small_cnn_int8.tflite"]
    assert report["models"][0]["latency_ms"]["runs"] == 3 and report["settings"]["isolate"] is True
    assert report["crashed"] == [error.strip()]


def test_a_model_named_like_an_option_reaches_the_child_as_a_file(converted_small, tmp_path, monkeypatch):
    out, _ = converted_small
    shutil.copy(out / "small_cnn_int8.tflite", tmp_path / "-x.tflite")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["profile", "--runs", "2", "--warmup", "0", "--json", "--", "-x.tflite"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["models"][0]["name"] == "-x.tflite"
