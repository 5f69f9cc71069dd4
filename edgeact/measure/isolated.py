"""Run the profiler in a child process (`profile`'s default): a runtime crash becomes an error line.

The child runs `python -m edgeact.measure.profiler`, the very module a device runs, and hands its
results back through the files of `edgeact.measure.wire`.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from edgeact.errors import RuntimeCrashError
from edgeact.fileio import write_error
from edgeact.quiet import console, verbose

from .profiler import LoopSettings, ModelProfile
from .wire import child_error, profiler_arguments, read_result, write_inputs


def run_isolated(path: Path, inputs, settings: LoopSettings) -> ModelProfile:
    """The profiler in a child process (`python -m edgeact.measure.profiler`): a crash there is an error here."""
    with tempfile.TemporaryDirectory(prefix="edgeact-profile-") as tmp:
        try:
            write_inputs(Path(tmp) / "inputs.npz", inputs)
        except OSError as exc:  # a full /tmp: name the folder and the space, not a traceback
            size = sum(a.nbytes for a in inputs.values()) if isinstance(inputs, dict) else inputs.nbytes
            raise write_error(Path(tmp) / "inputs.npz", size, exc) from None
        result = Path(tmp) / "result"
        command = [sys.executable, "-m", "edgeact.measure.profiler",
                   *profiler_arguments(settings, str(path), str(Path(tmp) / "inputs.npz"), str(result))]
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
            raise child_error(done.stderr, str(path))
        summary, outputs = read_result(result.with_suffix(".json").read_text(), result.with_suffix(".npz"))
    return ModelProfile(summary, outputs)


def crash_message(path: Path, signum: int) -> str:
    """'the runtime crashed on MODEL (signal 11)', and what to try."""
    try:
        name = f", {signal.Signals(signum).name}"
    except ValueError:
        name = ""
    return (f"the runtime crashed on {path} (signal {signum}{name}); the file passed edgeact's checks but "
            "the runtime cannot run it: try another --runtime or --delegate, or re-export the model")
