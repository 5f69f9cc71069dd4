"""Temporary files of a killed run are removed by the next run into the same folder; a live
run's and another host's are not."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from edgeact.fileio import _temp_prefix, staged_outputs


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_next_run_removes_a_killed_runs_temporaries_only(tmp_path):
    target = tmp_path / "m_int8.tflite"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f"{_temp_prefix(target.name, dead_pid())}abc123.tmp"
        running = tmp_path / f"{_temp_prefix(target.name, live.pid)}def456.tmp"
        other_host = tmp_path / f".{target.name}.edgeact-not-{socket.gethostname()}-{dead_pid()}.ghi789.tmp"
        other_file = tmp_path / f"{_temp_prefix('m_fp32.tflite', dead_pid())}jkl012.tmp"
        for path in (stale, running, other_host, other_file):
            path.write_bytes(b"half a model")
        with staged_outputs() as staged:
            staged.write_bytes(target, b"model")
            staged.commit()
        assert target.read_bytes() == b"model"
        assert not stale.exists()
        assert running.exists() and other_host.exists()
        assert other_file.exists()  # another output's leftovers go when that output is written
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()


def test_temporaries_of_a_killed_convert_are_gone_after_the_next(tmp_path):
    """A run killed mid-write leaves its temporary file; the next run into the folder removes it."""
    target = tmp_path / "report.json"
    script = (f"from edgeact.fileio import staged_outputs\nimport os, pathlib\n"
              f"with staged_outputs() as s:\n    s.write_bytes(pathlib.Path({str(target)!r}), b'x')\n"
              f"    os.kill(os.getpid(), 9)\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    assert subprocess.run([sys.executable, "-c", script], env=env).returncode == -signal.SIGKILL
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".report.json.")]
    assert len(leftovers) == 1
    with staged_outputs() as staged:
        staged.write_bytes(target, b"{}")
        staged.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
