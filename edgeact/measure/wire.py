"""The one protocol between edgeact and a profiler in another process: a child (`--isolate`,
`--device local`) or a device over SSH.

- arguments: `profiler_arguments(settings, model, inputs, result)` and `serve_arguments(settings,
  model)`: options first, then `--`, then the paths, so a model named `-x.tflite` is never read as
  an option; `profiler_parser()` / `serve_parser()` read them back and `settings_fields` turns
  them into LoopSettings fields, so writer and reader live side by side;
- results: `RESULT.json` (the summary) and `RESULT.npz` holding `output_0, output_1, ...` in
  the order of `summary["outputs"]`, whose entries carry the output names (npz keys are file
  names inside a zip, so names go in the JSON, not the keys);
- failure: one JSON line `{"error": "...", "type": "InputError"}` on stderr and exit code 2.

Device-side: the standard library and numpy only.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from edgeact import errors
from edgeact.errors import EdgeactError, ModelLoadError


def _runner_arguments(settings) -> list[str]:
    """The options both entry points take: how to open the runner."""
    argv = ["--delegate", settings.delegate]
    if settings.threads:
        argv += ["--threads", str(settings.threads)]
    if settings.runtime:
        argv += ["--runtime", settings.runtime]
    if settings.input_shape:
        argv += ["--input-shape", ",".join(str(int(d)) for d in settings.input_shape)]
    return argv


def profiler_arguments(settings, model: str, inputs: str, result: str, progress: bool = False) -> list[str]:
    """`python -m edgeact.measure.profiler` arguments for `settings` (a profiler.LoopSettings)."""
    argv = ["-o", str(result), "--runs", str(settings.runs), "--warmup", str(settings.warmup),
            "--streams", str(settings.streams), *_runner_arguments(settings)]
    if not settings.evaluate:
        argv.append("--no-evaluate")
    if progress:
        argv.append("--progress")
    return argv + ["--", str(model), str(inputs)]


def serve_arguments(settings, model: str) -> list[str]:
    """`python -m edgeact.measure.serve` arguments for `settings` (a profiler.LoopSettings)."""
    return [*_runner_arguments(settings), "--", str(model)]


def _runner_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("model")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--runtime")
    parser.add_argument("--delegate", default="xnnpack")
    parser.add_argument("--input-shape", help="sizes of a dynamic model input, e.g. 3,640,640")
    return parser


def profiler_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The parser of what `profiler_arguments` writes (`python -m edgeact.measure.profiler`)."""
    parser = _runner_parser("python -m edgeact.measure.profiler", description)
    parser.add_argument("inputs", help=".npz with x (float model inputs, N x H x W x C) or a .npy")
    parser.add_argument("-o", "--output", required=True, help="result path without suffix")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--no-evaluate", action="store_true")
    parser.add_argument("--progress", action="store_true", help="JSON progress lines on stderr")
    return parser


def serve_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The parser of what `serve_arguments` writes (`python -m edgeact.measure.serve`)."""
    return _runner_parser("python -m edgeact.measure.serve", description)


def settings_fields(args: argparse.Namespace) -> dict:
    """The profiler.LoopSettings fields a parsed command line gives (the profiler's, or the server's subset)."""
    fields = {"threads": args.threads, "runtime": args.runtime, "delegate": args.delegate,
              "input_shape": tuple(int(d) for d in args.input_shape.split(",")) if args.input_shape else None}
    if hasattr(args, "runs"):
        fields.update(runs=args.runs, warmup=args.warmup, streams=args.streams, evaluate=not args.no_evaluate)
    return fields


def write_inputs(path: Path | io.BytesIO, inputs) -> None:
    """Inputs for the profiler: `x` for one array; `x_0, x_1, ...` plus `input_names` for inputs by name."""
    if isinstance(inputs, dict):
        names = list(inputs)
        np.savez(path, input_names=np.asarray(names), **{f"x_{i}": inputs[n] for i, n in enumerate(names)})
    else:
        np.savez(path, x=inputs)


def read_inputs(path) -> np.ndarray | dict[str, np.ndarray]:
    """What `write_inputs` wrote (or a plain .npy array)."""
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return loaded
    with loaded:
        if "input_names" in loaded.files:
            names = [str(n) for n in loaded["input_names"]]
            return {name: loaded[f"x_{i}"] for i, name in enumerate(names)}
        return loaded["x"]


def write_result(result: Path, summary: dict, outputs: dict[str, np.ndarray]) -> None:
    """RESULT.json and RESULT.npz; `summary["outputs"]` names the arrays in order."""
    names = [spec["name"] for spec in summary.get("outputs", [])]
    result.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    np.savez(result.with_suffix(".npz"), **{f"output_{i}": outputs[name] for i, name in enumerate(names)
                                            if name in outputs})


def read_result(summary_text: str | bytes, npz: bytes | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(summary, outputs keyed by name) from what `write_result` wrote."""
    summary = json.loads(summary_text)
    names = [spec["name"] for spec in summary.get("outputs", [])]
    source = io.BytesIO(npz) if isinstance(npz, (bytes, bytearray)) else npz
    with np.load(source, allow_pickle=False) as arrays:
        outputs = {name: arrays[f"output_{i}"] for i, name in enumerate(names) if f"output_{i}" in arrays.files}
    return summary, outputs


def error_line(exc: BaseException) -> str:
    return json.dumps({"error": errors.first_line(exc, 400), "type": type(exc).__name__})


def parse_error(text: str) -> tuple[str, str] | None:
    """(message, type) from the last JSON error line in `text`, or None."""
    for line in reversed(text.strip().splitlines()):
        try:
            reported = json.loads(line)
            return str(reported["error"]), str(reported.get("type", ""))
        except (ValueError, KeyError, TypeError):
            continue
    return None


def child_error(stderr: str, what: str) -> EdgeactError:
    """The EdgeactError a failed child reported, or a ModelLoadError quoting the end of its stderr."""
    found = parse_error(stderr)
    if found is None:
        tail = errors.first_line(RuntimeError(stderr.strip()[-300:] or "no output"), 300)
        return ModelLoadError(f"profiling {what} failed in the child process: {tail}")
    message, kind = found
    error_type = getattr(errors, kind, None)
    if isinstance(error_type, type) and issubclass(error_type, EdgeactError):
        return error_type(message)
    return ModelLoadError(message)


# -- frames: the chunk server's stream (`edgeact.measure.serve`) ---------------------------------
# A frame is an 8-byte big-endian length and that many bytes of .npz; length 0 ends the stream.
# The host sends one frame of inputs per chunk (as `write_inputs` writes them); the server answers
# each with one frame of `output_0, output_1, ...` (the order of its hello frame's "outputs")
# and `meta`, a JSON string (the chunk's invoke time).


def write_frame(stream, arrays: dict[str, np.ndarray] | None) -> None:
    """One frame of arrays (None: the end of the stream), flushed."""
    if arrays is None:
        stream.write((0).to_bytes(8, "big"))
    else:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        stream.write(len(data).to_bytes(8, "big") + data)
    stream.flush()


def read_frame(stream) -> dict[str, np.ndarray] | None:
    """The next frame's arrays; None at the end of the stream. EOFError when it stops mid-frame or early."""
    head = _read_exactly(stream, 8)
    size = int.from_bytes(head, "big")
    if size == 0:
        return None
    with np.load(io.BytesIO(_read_exactly(stream, size)), allow_pickle=False) as loaded:
        return {name: loaded[name] for name in loaded.files}


def _read_exactly(stream, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = stream.read(left)
        if not part:
            raise EOFError("the stream ended mid-frame")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def input_frame(inputs) -> dict[str, np.ndarray]:
    """A chunk's inputs as a frame's arrays: `x`, or `x_0, ...` plus `input_names` (as `write_inputs`)."""
    if isinstance(inputs, dict):
        names = list(inputs)
        return {"input_names": np.asarray(names), **{f"x_{i}": inputs[n] for i, n in enumerate(names)}}
    return {"x": inputs}


def frame_inputs(frame: dict[str, np.ndarray]):
    """What `input_frame` packed."""
    if "input_names" in frame:
        return {str(name): frame[f"x_{i}"] for i, name in enumerate(frame["input_names"])}
    return frame["x"]


def meta_array(meta: dict) -> np.ndarray:
    return np.asarray(json.dumps(meta))


def array_meta(array: np.ndarray) -> dict:
    return json.loads(str(array))
