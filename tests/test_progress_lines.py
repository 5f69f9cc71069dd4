"""Off a terminal each conversion step prints one line with its time; on a terminal a bar."""
from __future__ import annotations

import io
import re
import time

import pytest

from converters.progress import step


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_one_timed_line_per_step_when_not_a_terminal():
    out = io.StringIO()
    with step("activation statistics", stream=out):
        time.sleep(0.2)
    with step("tflite: int8", total=3, stream=out) as bar:
        bar.update(3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    seconds = float(re.fullmatch(r"edgeact: activation statistics \.\.\. ([0-9.]+) s", lines[0]).group(1))
    assert 0.2 <= seconds < 5
    assert re.fullmatch(r"edgeact: tflite: int8 \.\.\. [0-9.]+ s", lines[1])


def test_a_failed_step_prints_nothing_so_the_error_line_stays_last():
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="boom"):  # the step lets the error through, unchanged
        with step("onnx: float (tf2onnx)", stream=out):
            raise RuntimeError("boom")
    assert out.getvalue() == ""


def test_a_terminal_gets_a_bar_and_no_timed_line():
    out = Tty()
    with step("tflite: int8", total=4, stream=out) as bar:
        bar.update(4)
    assert "edgeact:" not in out.getvalue() and "tflite: int8" in out.getvalue() and "\r" in out.getvalue()


def test_disabled_prints_nothing():
    out = Tty()
    with step("graph passes", enabled=False, stream=out):
        pass
    assert out.getvalue() == ""
