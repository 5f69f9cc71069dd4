"""The chunk server: one model loaded once, evaluating chunks of inputs streamed to it.

    python -m edgeact.measure.serve --runtime litert --delegate xnnpack -- model_int8.tflite

runs on the device (from the zip edgeact sends) or in a child process on the desktop, and
reads frames of `edgeact.measure.wire` on stdin: one frame of inputs per chunk (float, NHWC,
or already quantized for the model's integer input), answered with one frame of float outputs
on stdout, until an empty frame or the end of stdin. The first frame it writes is a hello
(the outputs' specs), so the host knows the model loaded before it sends data. Memory is the
model and one chunk, whatever the number of chunks. A failure is one JSON error line on stderr
and exit code 2, as for the profiler.

Nothing here is timed for the latency figures: the profiler's timed runs are separate. The
`invoke_s` of each chunk is the wall time of its invocations, for an evaluation rate.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from edgeact.data.pixel_input import feed_pixels
from edgeact.errors import EdgeactError, InputError, ModelLoadError, first_line
from edgeact.runtime import Runner, dequantize, open_runner

from .profiler import fit_inputs
from .wire import (
    error_line,
    frame_inputs,
    input_frame,
    meta_array,
    read_frame,
    serve_arguments,
    serve_parser,
    settings_fields,
    write_frame,
)


def evaluate_chunk(runner: Runner, inputs) -> dict[str, np.ndarray]:
    """Float outputs by name for one chunk of inputs (an array, or arrays keyed by input name)."""
    if isinstance(inputs, dict):
        from edgeact.data.arrays import match_input_names

        match_input_names(inputs, [s.name for s in runner.inputs], f"the inputs of {runner.path.name}")
        prepared = [runner.prepare(fit_inputs(np.asarray(inputs[s.name]), s), k) for k, s in enumerate(runner.inputs)]
        raw = runner._run_inputs(prepared)
    else:
        if len(runner.inputs) != 1:
            raise InputError(f"{runner.path.name} has {len(runner.inputs)} inputs; give one array per input name")
        fitted = feed_pixels(runner.path, fit_inputs(np.asarray(inputs), runner.inputs[0]))
        raw = runner.run_prepared(runner.prepare(fitted))
    return {spec.name: dequantize(r, spec) for r, spec in zip(raw, runner.outputs)}


def serve(runner: Runner, stdin, stdout) -> int:
    """Answer chunks until the end of the stream; the number of chunks served."""
    write_frame(stdout, {"meta": meta_array({"outputs": [s.to_dict() for s in runner.outputs],
                                             "runtime": runner.runtime, "delegate": runner.delegate})})
    served = 0
    while True:
        frame = read_frame(stdin)
        if frame is None:
            return served
        start = time.perf_counter()
        try:
            outputs = evaluate_chunk(runner, frame_inputs(frame))
        except (RuntimeError, ValueError) as exc:  # the runtime failed inside invoke
            raise ModelLoadError(f"{runner.runtime} failed to run {runner.path}: {first_line(exc)}") from None
        invoke_s = time.perf_counter() - start
        write_frame(stdout, {**{f"output_{i}": outputs[s.name] for i, s in enumerate(runner.outputs)},
                             "meta": meta_array({"invoke_s": invoke_s})})
        served += 1


def main(argv: list[str] | None = None) -> int:
    args = serve_parser(__doc__.splitlines()[0]).parse_args(argv)
    try:
        fields = settings_fields(args)
        # Frames go to the original stdout; anything a runtime prints to fd 1 goes to stderr instead.
        frames = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        runner = open_runner(args.model, fields["runtime"], fields["threads"], fields["delegate"],
                             fields["input_shape"])
        serve(runner, sys.stdin.buffer, frames)
    except (EdgeactError, OSError, KeyError, ValueError, EOFError) as exc:
        print(error_line(exc), file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


class ChunkClient:
    """The host's side of a chunk server: hello first, then one frame of outputs per frame of inputs.

    Args:
        process: the server, with `stdin` and `stdout` pipes (a child here, or ssh to a device).
        failure: the EdgeactError to raise when the stream ends early (a crash, a dropped connection).
    """

    def __init__(self, process, failure) -> None:
        self.process, self.failure = process, failure
        hello = self._read()
        self.outputs = [spec["name"] for spec in json.loads(str(hello["meta"]))["outputs"]]

    def _read(self) -> dict:
        try:
            frame = read_frame(self.process.stdout)
        except (EOFError, OSError, ValueError):
            frame = None
        if frame is None:
            raise self.failure() from None
        return frame

    def run(self, inputs) -> tuple[dict[str, np.ndarray], float]:
        """(outputs by name, invoke seconds) for one chunk of inputs."""
        try:
            write_frame(self.process.stdin, input_frame(inputs))
        except (BrokenPipeError, OSError, ValueError):
            raise self.failure() from None
        frame = self._read()
        meta = json.loads(str(frame["meta"]))
        return {name: frame[f"output_{i}"] for i, name in enumerate(self.outputs)}, float(meta["invoke_s"])

    def close(self) -> None:
        try:
            write_frame(self.process.stdin, None)
            self.process.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass


def spawn_server(path, settings) -> ChunkClient:
    """A chunk server in a child process of this machine (`profile --isolate`): a crash becomes an error."""
    import subprocess
    import threading
    from pathlib import Path

    from .isolated import crash_message
    from .wire import child_error

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                      os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "edgeact.measure.serve", *serve_arguments(settings, str(path))],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()

    def failure():
        from edgeact.errors import RuntimeCrashError

        process.wait()
        reader.join(timeout=10)
        if process.returncode < 0:
            return RuntimeCrashError(crash_message(Path(path), -process.returncode))
        return child_error(b"".join(lines).decode(errors="replace"), str(path))

    client = ChunkClient(process, failure)
    client.wait = process.wait  # type: ignore[attr-defined]
    return client
