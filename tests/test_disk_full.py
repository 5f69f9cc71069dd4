"""A full disk is a one-line error naming the folder and the space needed, and nothing is left behind.
Simulated with RLIMIT_FSIZE in a child process (writes past the limit fail with EFBIG once SIGXFSZ
is ignored), which needs no root and no tmpfs."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _limited(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _edgeact(args, limit, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "edgeact", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, preexec_fn=_limited(limit))


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_full_disk_while_writing_csv(converted_small, tmp_path):
    out, _ = converted_small
    target = tmp_path / "results"
    done = _edgeact(["profile", str(out / "small_cnn_int8.tflite"), "--in-process", "--runs", "2", "--warmup", "0",
                     "--csv", str(target / "r.csv")], limit=64, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: no space to write r.csv in {target}: it needs ")
    assert "bytes and" in done.stderr and "free some space" in done.stderr
    assert not target.exists() or list(target.iterdir()) == []  # no half-written CSV, no temp file


def test_full_tmp_in_the_isolated_runner(converted_small, tmp_path):
    """The child-process runner stages the inputs in TMPDIR first: a full TMPDIR is one line too."""
    out, _ = converted_small
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env_tmp = {"TMPDIR": str(tmp)}
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_tmp}
    done = subprocess.run([sys.executable, "-m", "edgeact", "profile", str(out / "small_cnn_int8.tflite"),
                           "--runs", "2", "--warmup", "0"], capture_output=True, text=True, cwd=tmp_path, env=env,
                          preexec_fn=_limited(4096))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: no space to write inputs.npz in ") and done.stderr.count("\n") == 1
    assert list(tmp.iterdir()) == []
