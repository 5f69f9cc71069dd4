"""Is the INT8 model really faster than its float sibling, and if not, which ops leave the fast path.

`profile` measures every model it is given; this module pairs each INT8 row with the float
row of the same format, runtime, delegate, threads and device (by file name, `x_int8` with
`x_fp32`, or through the edgeact report both came from), computes the speed-up from the
measured medians, and when INT8 is slower names the ops its delegate did not take
(`edgeact.fastpath.coverage`). `measure_speed_pair` is the same for `convert`: a short timed
loop of both files.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeact.cpu_features import SPEEDUP_BANDS, host_cpu_class
from edgeact.errors import EdgeactError

from .coverage import Coverage, model_coverage
from .op_time import measured_op_times

_INT8_NAME = re.compile(r"(int8|uint8|quant|q8)", re.IGNORECASE)
_FLOAT_NAME = re.compile(r"(fp32|float32|float|f32|fp16)", re.IGNORECASE)


@dataclass
class SpeedVerdict:
    """INT8 against float, one runtime setting: measured medians and, where known, the coverage."""

    int8: str
    float: str
    format: str
    int8_ms: float
    float_ms: float
    coverage: dict | None = None  # Coverage.to_dict() of the INT8 model
    op_times: dict | None = None  # OpTimes.to_dict() of the INT8 model: what the left ops cost
    device: str | None = None
    notes: list[str] = field(default_factory=list)
    runs: dict | None = None  # convert's timed loop: calls timed per model ({"int8": n, "float": n})
    band: dict | None = None  # the speed-up band of the CPU that ran it (`judge_band`)

    @property
    def speedup(self) -> float:
        return self.float_ms / self.int8_ms if self.int8_ms > 0 else float("inf")

    @property
    def slower(self) -> bool:
        return self.int8_ms > self.float_ms

    def text(self) -> str:
        where = f" on {self.device}" if self.device else ""
        line = (f"speed{where}: {Path(self.int8).name} is {self.speedup:.2f}x the speed of {Path(self.float).name} "
                f"({self.int8_ms:.3f} ms vs {self.float_ms:.3f} ms, p50)")
        if self.band:
            line += "\n  " + self.band["text"]
        if not self.slower:
            return line + self._time_line()
        line += f"\nWARNING: INT8 is slower than float ({self.format})"
        if self.coverage and self.coverage.get("left"):
            line += f": {self.coverage['summary']}"
            for op, reason in self.coverage["reasons"].items():
                line += f"\n  {op}: {reason}"
        elif self.coverage:
            line += f": every op is on the fast path ({self.coverage['summary']}); the float kernels win here"
        return line + self._time_line()

    def _time_line(self) -> str:
        """Where the INT8 time goes, when it was measured and something is off the fast path."""
        if self.op_times and "unavailable" in self.op_times:
            return f"\n  time shares: not measured ({self.op_times['unavailable']})"
        if not self.op_times or self.op_times.get("slow_share", 0) < 0.01:  # nothing worth a line
            return ""
        return f"\n  time: {self.op_times['summary']}"

    def to_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup, "slower": self.slower}


def judge_band(verdict: SpeedVerdict, cls=None, where: str = "this host") -> None:
    """Set `verdict.band`: the measured INT8/float ratio against the band of the CPU that ran it.

    `cls`: its edgeact.cpu_features.CpuClass (read from its feature flags, not its name); None:
    unknown, no band. Below the band, what leaves the fast path is named (from the coverage,
    when measured); above it, the pair is suspect.
    """
    from edgeact.cpu_features import SPEEDUP_BANDS, describe_cpu_class

    if cls is None:
        return
    low, high = SPEEDUP_BANDS[cls]
    ratio = verdict.speedup
    cpu = f"{describe_cpu_class(cls)} ({where})"
    if ratio < low:
        state = "below"
        text = f"band: {ratio:.2f}x is below the {low:g}-{high:g}x INT8 speed-up of {cpu}"
        if verdict.slower:
            pass  # the warning under it names what leaves the fast path
        elif verdict.coverage and verdict.coverage.get("left"):
            text += f": off the fast path, {verdict.coverage['summary']}"
            text += "".join(f"; {op}: {reason}" for op, reason in list(verdict.coverage["reasons"].items())[:3])
        elif verdict.coverage:
            text += ": every op is on the fast path, so the float kernels or the model's shape (small, memory-bound " \
                    "layers) are why"
        else:
            text += "; edgeact inspect --op-times names the ops that leave the fast path"
    elif ratio <= high:
        state = "ceiling"
        text = f"band: {ratio:.2f}x is at the ceiling, within the {low:g}-{high:g}x INT8 speed-up of {cpu}"
    else:
        state = "above"
        text = (f"band: {ratio:.2f}x is suspiciously above the {low:g}-{high:g}x INT8 speed-up of {cpu}: check that "
                "both files are the same network, run with the same threads, and that the float model is not "
                "slowed by an op off its fast path")
    verdict.band = {"cpu_class": cls.value, "low": low, "high": high, "state": state, "text": text}


def device_cpu_class(device: dict | None):
    """The CPU class a device reported (edgeact.remote.fleet's summary), or None."""
    from edgeact.cpu_features import CpuClass

    try:
        return CpuClass(device["cpu_class"]) if device and device.get("cpu_class") else None
    except ValueError:
        return None


# Below this speed-up on a CPU without an 8-bit dot product, the verdict says the CPU is why.
MODEST_SPEEDUP = 1.5


def add_cpu_note(verdict: SpeedVerdict) -> None:
    """A host verdict with a modest INT8 gain, on a CPU that explains it (edgeact.cpu_features)."""
    from edgeact.cpu_features import slow_int8_note

    note = slow_int8_note() if verdict.speedup < MODEST_SPEEDUP else None
    if note:
        verdict.notes.append(note)


def is_int8_model(path: str | Path) -> bool:
    """Whether a model computes in INT8: from its tensors where they can be read, else from its name."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".tflite":
            from edgeact.formats.tflite_model import read_tflite

            model = read_tflite(path)
            return any(t.quantized and t.dtype in ("int8", "uint8") for t in model.tensors if t.is_constant)
        if path.suffix.lower() == ".onnx":
            import onnx

            graph = onnx.load(str(path), load_external_data=False).graph
            return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") or n.op_type.startswith("QLinear")
                       for n in graph.node)
    except (ImportError, EdgeactError):
        pass
    return bool(_INT8_NAME.search(path.stem))


def _sibling_key(path: str) -> str:
    stem = Path(path).stem
    return _FLOAT_NAME.sub("", _INT8_NAME.sub("", stem)).strip("_-.")


def speed_verdicts(report: dict, coverage=model_coverage, op_times=None, sibling=None) -> list[SpeedVerdict]:
    """Pair INT8 and float rows of a profile report and judge each pair.

    Args:
        report: {"models": [row dicts]} (`ProfileRow.to_dict()`); `profile_models` calls this.
        sibling: `(model path, format) -> float file or None`: the float model the INT8 model's
            convert report names (`edgeact.report.sidecar.float_sibling`); None: by file name only.
        coverage: `(path, delegate=, threads=) -> Coverage`; replaced in tests.
        op_times: `(path, threads=, delegate=, coverage=, whole_ms=) -> dict` (`op_time.measured_op_times`),
            run when INT8 is slower and ops left the fast path (their share of the time); None: not measured.
    """
    rows = [r for r in report.get("models", []) if r.get("latency_ms")]
    kinds = {r["model"]: is_int8_model(r["model"]) for r in rows}

    def setting(r: dict) -> tuple:
        return (r["format"], r["runtime"], r.get("delegate"), r.get("threads"), (r.get("device") or {}).get("name"))

    verdicts = []
    for row in rows:
        if not kinds[row["model"]]:
            continue
        floats = [r for r in rows if not kinds[r["model"]] and setting(r) == setting(row)]
        if not floats:
            continue
        named = sibling(row["model"], row["format"]) if sibling else None
        match = [r for r in floats if named and Path(r["model"]).resolve() == Path(named).resolve()] \
            or [r for r in floats if _sibling_key(r["model"]) == _sibling_key(row["model"])] \
            or (floats if len(floats) == 1 else [])
        if not match:
            continue
        other = match[0]
        verdict = SpeedVerdict(row["model"], other["model"], row["format"], row["latency_ms"]["p50"],
                               other["latency_ms"]["p50"], device=(row.get("device") or {}).get("name"))
        on_cpu = row.get("delegate") not in ("edgetpu",)
        cls = (device_cpu_class(row.get("device")) if verdict.device else host_cpu_class()) if on_cpu else None
        below = cls is not None and verdict.speedup < SPEEDUP_BANDS[cls][0]
        if (verdict.slower or below) and coverage is not None and row.get("delegate") != "none":
            try:
                found: Coverage = coverage(row["model"], delegate=row.get("delegate") or "xnnpack",
                                           threads=row.get("threads"))
                verdict.coverage = found.to_dict()
                # ONNX: even with no float node left, Q/DQ and layout nodes may be where the time goes.
                if op_times is not None and (found.left or row["format"] == "onnx"):
                    # On this host the row's p50 is the whole-model time the TFLite shares divide by.
                    whole = row["latency_ms"]["p50"] if row["format"] == "tflite" and not verdict.device else None
                    verdict.op_times = op_times(row["model"], threads=row.get("threads"), whole_ms=whole,
                                                delegate=row.get("delegate") or "xnnpack", coverage=found)
            except EdgeactError as exc:
                verdict.notes.append(f"coverage not measured: {exc}")
            if verdict.device:
                verdict.notes.append("coverage measured with this host's runtime, not the device's")
        if not verdict.device:
            add_cpu_note(verdict)
        judge_band(verdict, cls, where=f"device {verdict.device}" if verdict.device else "this host")
        verdicts.append(verdict)
    return verdicts


def render_speed(report: dict) -> str:
    """The verdict lines under the profile table ("" when no INT8/float pair was profiled)."""
    lines = []
    for item in report.get("speed") or []:
        verdict = SpeedVerdict(**{k: item[k] for k in ("int8", "float", "format", "int8_ms", "float_ms",
                                                       "coverage", "device", "notes")}, op_times=item.get("op_times"),
                               band=item.get("band"))
        lines.append(verdict.text())
        lines.extend(f"  note: {n}" for n in verdict.notes)
    return ("\n" + "\n".join(lines)) if lines else ""


# convert's timed loop: at most this long per model once warm (VGG16 takes 0.2 s a call, so 20
# calls of each model were 9 s of a 2-minute conversion), never fewer than MIN_RUNS calls.
TIMED_BUDGET_S = 1.5
MIN_RUNS = 5


def measure_speed_pair(int8_path: str | Path, float_path: str | Path, fmt: str, runs: int = 20, warmup: int = 3,
                       threads: int | None = None, runners: tuple | None = None,
                       budget_s: float = TIMED_BUDGET_S) -> SpeedVerdict:
    """A short timed loop of an INT8 model and its float sibling (for `convert`), plus the INT8 coverage.

    `fmt` ("tflite" or "onnx") is given because convert's staged files carry no model suffix.
    Both run on one random input of their own shape; the medians of up to `runs` invocations
    each, fewer (not under MIN_RUNS) where the warm-up calls say `runs` would take over `budget_s`.
    `runners`: the (INT8, float) runners convert already opened with these threads, reused
    rather than opened (and their weights packed) again.
    """
    import time

    import numpy as np

    from edgeact.measure.profiler import time_invocations

    from .coverage import onnx_coverage, tflite_coverage

    if fmt == "tflite":
        from edgeact.runtime.tflite import TFLiteRunner as runner_class
    else:
        from edgeact.runtime.onnx import OnnxRunner as runner_class
    given = runners or (None, None)
    medians, counts, opened = [], [], []
    for path, runner in zip((int8_path, float_path), given):
        runner = runner or runner_class(path, threads=threads)
        opened.append(runner)
        shape = runner.inputs[0].shape
        sample = np.random.default_rng(0).uniform(0, 1, (1, *shape[1:])).astype(np.float32)
        prepared = runner.prepare(sample)
        start = time.perf_counter()
        time_invocations(runner, prepared, 0, warmup)
        per_call = (time.perf_counter() - start) / max(warmup, 1)
        count = max(MIN_RUNS, min(runs, int(budget_s / per_call) if per_call > 0 else runs))
        medians.append(float(np.median(time_invocations(runner, prepared, count))))
        counts.append(count)
    verdict = SpeedVerdict(str(int8_path), str(float_path), fmt, *medians)
    verdict.runs = {"int8": counts[0], "float": counts[1]}
    add_cpu_note(verdict)
    coverage = tflite_coverage(int8_path, threads=threads, runner=opened[0]) if fmt == "tflite" \
        else onnx_coverage(int8_path)
    verdict.coverage = coverage.to_dict()
    # The INT8 median just measured is the whole-model time the TFLite shares divide by; ORT's
    # profiler times its own runs (10: convert's time matters more than a tight figure).
    verdict.op_times = measured_op_times(int8_path, threads=threads, fmt=fmt, coverage=coverage, runs=10,
                                         whole_ms=medians[0] if fmt == "tflite" else None)
    judge_band(verdict, host_cpu_class())
    return verdict


def fast_path_report(int8_path: str | Path, float_path: str | Path, fmt: str, names: tuple[str, str],
                     threads: int | None = None, runners: tuple | None = None) -> dict:
    """The "fast_path" section of convert's report for one format: coverage, timings and the verdict.

    Args:
        int8_path, float_path: the (staged) model files.
        names: the final file names, shown instead of the staged ones.
        runners: the (INT8, float) runners convert verified them with, reused for the timing.
    """
    try:
        verdict = measure_speed_pair(int8_path, float_path, fmt, threads=threads, runners=runners)
    except EdgeactError as exc:  # a runtime without op details must not fail the conversion
        return {"error": str(exc), "text": f"speed: not measured ({exc})"}
    verdict.int8, verdict.float = names
    text = "\n".join([verdict.text(), *(f"  note: {n}" for n in verdict.notes)])
    return {**verdict.to_dict(), "text": text, "threads": threads,
            "note": "a short timed loop at convert time on one random input; use edgeact profile for figures"}


def render_fast_path(section: dict) -> str:
    """convert's lines for one format's fast_path section."""
    return "\n".join("  " + line for line in section["text"].splitlines())


def render_coverage(coverage: dict) -> str:
    """`inspect`'s lines on the fast path: the summary and one reason per op type left."""
    if "unavailable" in coverage:
        return f"fast path: not measured ({coverage['unavailable']})"
    lines = [f"fast path: {coverage['summary']}"]
    lines.extend(f"  {op}: {reason}" for op, reason in coverage["reasons"].items())
    return "\n".join(lines)
