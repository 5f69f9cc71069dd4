"""The measuring loop: init time, cold and warm latency, throughput, peak memory, and outputs.

This module runs on the device unchanged: it imports numpy, the standard library and
`edgeact.runtime` only, takes inputs that are already preprocessed (float, N x H x W x C),
and returns JSON-able results plus the output arrays. From the command line:

    python -m edgeact.measure.profiler model_int8.tflite inputs.npz --runs 200 --warmup 20 -o result

reads `x` from inputs.npz (or the array in a .npy) and writes result.json and result.npz in
the format of `edgeact.measure.wire` (outputs named in the JSON). With `--progress` it prints one
JSON line per progress step to stderr, `{"progress": "model.tflite: timing", "done": 100,
"total": 200}`, for a host to show; a failure is one JSON error line and exit code 2.

What is timed: inputs are quantized with the model's own scale and zero point before any
timing; each step copies one prepared sample into the runtime's input buffer, then
`invoke()` runs between two `perf_counter_ns` calls, with the garbage collector off.
Only `invoke()` is inside the timer, as in TFLite's benchmark_model.

Memory: Linux's peak-RSS counter (VmHWM) is reset before the model is loaded, by writing
5 to /proc/self/clear_refs; the profile reports that peak at the end of the timed loop and
its growth over the RSS before loading (interpreter, arena, delegate, up to 16 prepared
samples). Where the reset is not possible, the process's lifetime peak is reported and
`memory.method` says so.
"""
from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeact.data.pixel_input import feed_pixels
from edgeact.errors import EdgeactError, InputError, ModelLoadError, first_line
from edgeact.runtime import IOSpec, Runner, dequantize, import_runtime, model_format, open_runner

from .wire import error_line, profiler_parser, read_inputs, settings_fields, write_result

LATENCY_SAMPLES = 16  # distinct prepared inputs the timed loop cycles through
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class LoopSettings:
    """How to run one model. `runs` and `warmup` count single inferences."""

    runs: int = 100
    warmup: int = 10
    threads: int | None = None
    runtime: str | None = None
    delegate: str = "xnnpack"
    streams: int = 1
    evaluate: bool = True  # run every input once and return the outputs
    input_shape: tuple[int, ...] | None = None  # sizes of a model input with dynamic dimensions (ONNX)

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise InputError(f"--runs {self.runs}: give at least 1 timed run")
        if self.warmup < 0:
            raise InputError(f"--warmup {self.warmup}: give 0 or more warm-up runs")
        if self.streams < 1:
            raise InputError(f"--streams {self.streams}: give at least 1 stream")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads {self.threads}: give at least 1 thread")


@dataclass
class ModelProfile:
    """`summary` is JSON-able; `outputs` are the float outputs for every input (when evaluated), by name."""

    summary: dict
    outputs: dict[str, np.ndarray] = field(default_factory=dict)


def latency_stats(times_ms) -> dict:
    """Mean, std (population), min, percentiles and max of a list of latencies in ms."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timings")
    stats = {"runs": int(t.size), "mean": float(t.mean()), "std": float(t.std()), "min": float(t.min())}
    for p in PERCENTILES:
        stats[f"p{p}"] = float(np.percentile(t, p))
    stats["max"] = float(t.max())
    return stats


def fit_inputs(inputs: np.ndarray, spec: IOSpec, origin: str = "the data") -> np.ndarray:
    """(N, *input shape) from NHWC data; transposed when the model takes NCHW."""
    want = tuple(spec.shape[1:])
    got = tuple(inputs.shape[1:])
    if got == want:
        return inputs
    if len(got) == 3 and (got[2], got[0], got[1]) == want:
        return np.ascontiguousarray(inputs.transpose(0, 3, 1, 2))
    raise InputError(f"{origin} has samples of shape {got} but the model input '{spec.name}' takes {want}; "
                     "give data made for this model")


def time_invocations(runner: Runner, prepared, runs: int, warmup: int = 0,
                     progress=None, gc_off: bool = True) -> np.ndarray:
    """Latency in ms of `runs` invocations after `warmup` untimed ones, cycling through `prepared`.

    `prepared` is an array of samples (one input), or a list of per-sample tuples (several
    inputs, written with `write_inputs`). `gc_off=False` leaves the (process-wide) garbage
    collector to the caller, for threads.
    """
    write = runner.write_inputs if isinstance(prepared, list) else runner.write_input
    invoke, clock = runner.invoke, time.perf_counter_ns
    n = len(prepared)
    for i in range(warmup):
        write(prepared[i % n])
        invoke()
    times = [0] * runs
    step = max(1, runs // 20)
    gc_was_enabled = gc.isenabled()
    if gc_off:
        gc.disable()
    try:
        for i in range(runs):
            write(prepared[i % n])
            start = clock()
            invoke()
            times[i] = clock() - start
            if progress is not None and i % step == step - 1:
                progress.update(step)
    finally:
        if gc_off and gc_was_enabled:
            gc.enable()
    return np.asarray(times, dtype=np.float64) / 1e6


class MemoryProbe:
    """Peak RSS of this process from `start()` on, and its growth over the RSS at `start()`."""

    def start(self) -> None:
        self.method = "VmHWM after reset (/proc/self/clear_refs)" if _reset_peak() else \
            "ru_maxrss (process lifetime peak, not reset)"
        self.rss_before = _status_mb("VmRSS")
        if self.rss_before is None:
            self.rss_before = _maxrss_mb()

    def stop(self) -> dict:
        peak = _status_mb("VmHWM") or _maxrss_mb()
        return {"peak_rss_mb": round(peak, 2), "rss_before_mb": round(self.rss_before, 2),
                "growth_mb": round(max(0.0, peak - self.rss_before), 2), "method": self.method}


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _maxrss_mb() -> float:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def measure_throughput(path: str | Path, prepared: np.ndarray, settings: LoopSettings) -> dict:
    """Images per second with `streams` interpreters in as many threads, like benchmark_app -hint throughput.

    Each stream gets its own runner with threads // streams threads (at least 1; all cores when
    --threads is not given); `runs` inferences are shared out among the streams after each
    has done its warm-up. The runtimes release the GIL inside invoke, so streams overlap.
    """
    streams = settings.streams
    per_stream = max(1, (settings.threads or os.cpu_count() or 1) // streams)
    runners = [open_runner(path, settings.runtime, per_stream, settings.delegate, settings.input_shape)
               for _ in range(streams)]
    counts = [settings.runs // streams + (k < settings.runs % streams) for k in range(streams)]
    barrier = threading.Barrier(streams)
    spans: list[tuple[int, int]] = [(0, 0)] * streams
    timings: list[np.ndarray] = [np.empty(0)] * streams
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            runner = runners[k]
            time_invocations(runner, prepared, 0, settings.warmup, gc_off=False)
            barrier.wait()
            start = time.perf_counter_ns()
            timings[k] = time_invocations(runner, prepared, counts[k], gc_off=False)
            spans[k] = (start, time.perf_counter_ns())
        except BaseException as exc:  # re-raised in the calling thread
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(streams)]
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        if gc_was_enabled:
            gc.enable()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise real[0] if real else errors[0]
    wall_s = (max(s[1] for s in spans) - min(s[0] for s in spans)) / 1e9
    all_times = np.concatenate([t for t in timings if t.size])
    return {"streams": streams, "threads_per_stream": per_stream, "inferences": int(all_times.size),
            "wall_s": wall_s, "images_per_s": all_times.size / wall_s if wall_s > 0 else None,
            "latency_ms": latency_stats(all_times)}


def profile_model(path: str | Path, inputs: np.ndarray, settings: LoopSettings | None = None,
                  progress=None) -> ModelProfile:
    """Load a model, time it on `inputs`, and (with settings.evaluate) run every input once.

    Args:
        path: a .tflite or .onnx model.
        inputs: float model inputs (N, H, W, C), already preprocessed; quantized here with the
            model's own parameters, before any timing.
        progress: optional `progress(description, total)` returning an object with
            `update(n)` and `close()` (a tqdm bar on the host; None on a device).
    Raises:
        InputError / ModelLoadError / RuntimeUnavailableError for models and inputs that cannot run.
    """
    settings = settings or LoopSettings()
    path = Path(path)
    named = isinstance(inputs, dict)
    arrays = {k: np.asarray(v) for k, v in inputs.items()} if named else {"": np.asarray(inputs)}
    for array in arrays.values():
        if array.ndim < 2 or len(array) == 0:
            raise InputError(f"inputs of shape {array.shape}: give at least one sample (N, H, W, C)")
    import_runtime(model_format(path), settings.runtime)  # not part of the model's init time
    memory = MemoryProbe()
    memory.start()
    start = time.perf_counter_ns()
    runner = open_runner(path, settings.runtime, settings.threads, settings.delegate, settings.input_shape)
    init_ms = (time.perf_counter_ns() - start) / 1e6
    fitted, timed = _fit_and_prepare(runner, arrays, named)
    try:
        (runner.write_inputs if isinstance(timed, list) else runner.write_input)(timed[0])
        start = time.perf_counter_ns()
        runner.invoke()
        cold_ms = (time.perf_counter_ns() - start) / 1e6
        time_invocations(runner, timed, 0, settings.warmup)
        bar = progress(f"{path.name}: timing", settings.runs) if progress else None
        wall_start = time.perf_counter_ns()
        try:
            times = time_invocations(runner, timed, settings.runs, progress=bar)
        finally:
            if bar is not None:
                bar.close()
        wall_s = (time.perf_counter_ns() - wall_start) / 1e9
        mem = memory.stop()
        streams = measure_throughput(path, timed, settings) if settings.streams > 1 else None
        outputs = _evaluate(runner, fitted, path, progress) if settings.evaluate else {}
    except (RuntimeError, ValueError) as exc:  # the runtime failed inside invoke
        raise ModelLoadError(f"{runner.runtime} failed to run {path}: {first_line(exc)}") from None
    warm_loop_ips = settings.runs / wall_s if wall_s > 0 else None
    summary = {
        "model": str(path), "name": path.name, "format": runner.format, "runtime": runner.runtime,
        "runtime_version": runner.runtime_version, "delegate": runner.delegate, "threads": settings.threads,
        "size_bytes": path.stat().st_size, "inputs": [s.to_dict() for s in runner.inputs],
        "outputs": [s.to_dict() for s in runner.outputs],
        "init_ms": init_ms, "cold_ms": cold_ms, "warmup": settings.warmup,
        "latency_ms": latency_stats(times),
        "throughput_ips": streams["images_per_s"] if streams else warm_loop_ips,
        "streams": streams or {"streams": 1, "threads_per_stream": settings.threads, "inferences": settings.runs,
                               "wall_s": wall_s, "images_per_s": warm_loop_ips},
        "memory": mem, "samples_evaluated": _count(fitted) if settings.evaluate else 0,
        "timings_ms": [round(t, 6) for t in times.tolist()],
    }
    return ModelProfile(summary, outputs)


def _fit_and_prepare(runner: Runner, arrays: dict[str, np.ndarray], named: bool):
    """(fitted inputs, prepared samples for the timed loop): an array for one input, else per-sample tuples."""
    if not named:
        if len(runner.inputs) != 1:
            raise InputError(f"{runner.path.name} has {len(runner.inputs)} inputs "
                             f"({', '.join(s.name for s in runner.inputs)}); give one array per input name")
        fitted = feed_pixels(runner.path, fit_inputs(arrays[""], runner.inputs[0]))  # pixel-in: uint8 pixels
        return fitted, runner.prepare(fitted[:LATENCY_SAMPLES])
    from edgeact.data.arrays import match_input_names, same_length

    match_input_names(arrays, [s.name for s in runner.inputs], f"the inputs of {runner.path.name}")
    fitted = {s.name: fit_inputs(arrays[s.name], s) for s in runner.inputs}
    same_length(fitted, f"the inputs of {runner.path.name}")
    prepared = [runner.prepare(fitted[s.name][:LATENCY_SAMPLES], k) for k, s in enumerate(runner.inputs)]
    return fitted, [tuple(p[i] for p in prepared) for i in range(len(prepared[0]))]


def _count(fitted) -> int:
    return len(next(iter(fitted.values()))) if isinstance(fitted, dict) else len(fitted)


def _evaluate(runner: Runner, fitted, path: Path, progress) -> dict[str, np.ndarray]:
    """Float outputs for every input by output name, quantized once as a whole array."""
    bar = progress(f"{path.name}: evaluating", _count(fitted)) if progress else None
    try:
        if isinstance(fitted, dict):
            raw = runner._run_inputs([runner.prepare(fitted[s.name], k) for k, s in enumerate(runner.inputs)])
        else:
            raw = runner.run_prepared(runner.prepare(fitted), bar)
    finally:
        if bar is not None:
            bar.close()
    return {spec.name: dequantize(r, spec) for r, spec in zip(raw, runner.outputs)}



class LineProgress:
    """Progress as JSON lines on stderr, at most every `interval` seconds and at the end."""

    def __init__(self, description: str, total: int, interval: float = 0.5) -> None:
        self.description, self.total, self.done = description, total, 0
        self.interval, self._last = interval, 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._emit()

    def close(self) -> None:
        self.done = self.total
        self._emit()

    def _emit(self) -> None:
        line = {"progress": self.description, "done": self.done, "total": self.total}
        print(json.dumps(line), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m edgeact.measure.profiler MODEL INPUTS.npz -o RESULT`: RESULT.json and RESULT.npz."""
    args = profiler_parser(main.__doc__).parse_args(argv)
    try:
        inputs = read_inputs(args.inputs)
        settings = LoopSettings(**settings_fields(args))
        profile = profile_model(args.model, inputs, settings, LineProgress if args.progress else None)
    except (EdgeactError, OSError, KeyError, ValueError) as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    write_result(Path(args.output), profile.summary, profile.outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
