"""Run the profiler in a child process (`profile --isolate`): a runtime crash becomes an error line.

The child runs `python -m edgeact.profiler`, the very module a device runs, and hands its
results back through files.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import errors
from .fileio import write_error
from .quiet import console, verbose
from .errors import EdgeactError, ModelLoadError, RuntimeCrashError
from .profiler import LoopSettings, ModelProfile


def run_isolated(path: Path, inputs: np.ndarray, settings: LoopSettings) -> ModelProfile:
    """The profiler in a child process (`python -m edgeact.profiler`): a crash there is an error here."""
    with tempfile.TemporaryDirectory(prefix="edgeact-profile-") as tmp:
        try:
            np.savez(Path(tmp) / "inputs.npz", x=inputs)
        except OSError as exc:  # a full /tmp: name the folder and the space, not a traceback
            raise write_error(Path(tmp) / "inputs.npz", inputs.nbytes, exc) from None
        result = Path(tmp) / "result"
        command = [sys.executable, "-m", "edgeact.profiler",
                   "-o", str(result), "--runs", str(settings.runs), "--warmup", str(settings.warmup),
                   "--delegate", settings.delegate, "--streams", str(settings.streams)]
        if settings.threads:
            command += ["--threads", str(settings.threads)]
        if settings.runtime:
            command += ["--runtime", settings.runtime]
        # Positionals last, after '--': a model named '-x.tflite' must not read as an option.
        command += ["--", str(path), str(Path(tmp) / "inputs.npz")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                          os.environ.get("PYTHONPATH")]))}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if verbose():  # the child's runtime logs, as `edgeact -v` promised; its JSON error line is ours
            log = [line for line in done.stderr.splitlines() if not line.startswith('{"error"')]
            if log:
                console().write("\n".join(log) + "\n")
        if done.returncode < 0:
            raise RuntimeCrashError(crash_message(path, -done.returncode))
        if done.returncode != 0:
            raise _child_error(done.stderr, path)
        summary = json.loads(result.with_suffix(".json").read_text())
        with np.load(result.with_suffix(".npz")) as arrays:
            outputs = [arrays[f"output_{i}"] for i in range(len(arrays.files))]
    return ModelProfile(summary, outputs)


def crash_message(path: Path, signum: int) -> str:
    """'the runtime crashed on MODEL (signal 11)', and what to try."""
    try:
        name = f", {signal.Signals(signum).name}"
    except ValueError:
        name = ""
    return (f"the runtime crashed on {path} (signal {signum}{name}); the file passed edgeact's checks but "
            "the runtime cannot run it: try another --runtime or --delegate, or re-export the model")


def _child_error(stderr: str, path: Path) -> EdgeactError:
    for line in reversed(stderr.strip().splitlines()):
        try:
            reported = json.loads(line)
            message, kind = reported["error"], reported.get("type", "")
        except (ValueError, KeyError, TypeError):
            continue
        error_type = getattr(errors, kind, None)
        if isinstance(error_type, type) and issubclass(error_type, EdgeactError):
            return error_type(message)
        return ModelLoadError(message)
    return ModelLoadError(f"profiling {path} failed in the child process: {stderr.strip()[-300:]}")
