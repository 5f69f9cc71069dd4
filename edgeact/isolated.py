"""Run the profiler in a child process (`profile --isolate`): a runtime crash becomes an error line.

The child runs `python -m edgeact.profiler`, the very module a device runs, and hands its
results back through files.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import ModelLoadError
from .profiler import LoopSettings, ModelProfile
from .wire import child_error, profiler_arguments, read_result, write_inputs


def run_isolated(path: Path, inputs, settings: LoopSettings) -> ModelProfile:
    """The profiler in a child process (`python -m edgeact.profiler`): a crash there is an error here."""
    with tempfile.TemporaryDirectory(prefix="edgeact-profile-") as tmp:
        write_inputs(Path(tmp) / "inputs.npz", inputs)
        result = Path(tmp) / "result"
        command = [sys.executable, "-m", "edgeact.profiler",
                   *profiler_arguments(settings, str(path), str(Path(tmp) / "inputs.npz"), str(result))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                          os.environ.get("PYTHONPATH")]))}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode < 0:
            name = signal.Signals(-done.returncode).name
            raise ModelLoadError(f"{path} crashed the runtime ({name}) while loading or running; "
                                 "the model file is corrupt or needs a different runtime/delegate")
        if done.returncode != 0:
            raise child_error(done.stderr, str(path))
        summary, outputs = read_result(result.with_suffix(".json").read_text(), result.with_suffix(".npz"))
    return ModelProfile(summary, outputs)
