"""Where an inference's time goes, per op type: the share the ops off the fast path take.

Coverage (`edgeact.delegate_coverage`) says which ops left the fast path; this module says what
they cost, measured, as a share of the whole model's time with the same runtime and threads.

ONNX Runtime: its session profiler (`SessionOptions.enable_profiling`) writes a Chrome-trace
JSON with one "Node" event per executed kernel (`args.op_name`, `dur` in microseconds) and one
"model_run" event per `run()`. The nodes are those of the graph ORT really executes (after its
optimiser: `QLinearConv`, `QuantizeLinear`, NCHWc `Conv`, `ReorderInput`...), so each op type is
sorted into integer kernels, quantize/dequantize, and the rest (float compute and layout work,
outside the fused integer kernels). A share is the op type's time over the model_run time,
summed over the profiled runs.

TFLite: LiteRT 2.3's Python interpreter has no op profiler, so `edgeact.op_time_tflite` times
each op left off the delegate as a one-op model (see there).

numpy and a runtime only.
"""
from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import EdgeactError, InputError, first_line


class OpKind:
    """How an op type runs; plain strings so the report's JSON reads as it prints."""

    INTEGER = "integer"  # ORT's QLinear*/ConvInteger kernels
    QDQ = "quantize"  # QuantizeLinear / DequantizeLinear left in the executed graph
    OTHER = "other"  # float compute and layout ops: outside the integer kernels
    DELEGATED = "delegated"  # TFLite: inside a delegate partition
    LEFT = "left"  # TFLite: left on the reference kernels


@dataclass
class OpTime:
    """One op type's time per inference."""

    type: str
    kind: str
    count: int  # nodes/ops of this type (per inference)
    ms: float  # their summed time per inference
    share: float  # ms over the whole model's time per inference


@dataclass
class OpTimes:
    """Per-op-type times of one model, and what share the ops outside the fast path take."""

    format: str
    method: str
    total_ms: float  # the whole model per inference, measured the same way as the ops
    ops: list[OpTime] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def share_of(self, *kinds: str) -> float:
        return float(sum(op.share for op in self.ops if op.kind in kinds))

    @property
    def slow_kinds(self) -> tuple[str, ...]:
        return (OpKind.LEFT,) if self.format == "tflite" else (OpKind.QDQ, OpKind.OTHER)

    @property
    def slow_share(self) -> float:
        """The share of time spent outside the fast path (left ops; ORT: outside integer kernels)."""
        return self.share_of(*self.slow_kinds)

    def summary(self, top: int = 4) -> str:
        if self.format == "onnx" and not any(op.kind in (OpKind.INTEGER, OpKind.QDQ) for op in self.ops):
            # A float model has no fast path to fall off; say where its time goes instead.
            return f"{self.total_ms:.3f} ms, no integer kernels (a float model): " + ", ".join(
                f"{op.type} {op.share:.0%}" for op in self.ops[:top])
        slow = [op for op in self.ops if op.kind in self.slow_kinds]
        where = "off the delegate" if self.format == "tflite" else "outside integer kernels"
        text = f"{self.slow_share:.0%} of {self.total_ms:.3f} ms {where}"
        shown = [op for op in slow if op.share >= 0.01][:top]
        if shown:
            text += ": " + ", ".join(f"{op.type} {op.share:.0%}" for op in shown)
        hidden = len(slow) - len(shown)
        if hidden:
            small = all(op.share < 0.01 for op in slow if op not in shown)
            text += ("; " if shown else ": ") + f"{hidden} {'more ' if shown else ''}op type{'s' * (hidden > 1)}" \
                + (" under 1% each" if small else "")
        rest = [op for op in self.ops if op.kind == OpKind.DELEGATED]
        if rest and slow:  # the partitions' share holds the hand-overs between them
            text += f"; the delegate's partitions {rest[0].share:.0%}"
        return text

    def to_dict(self) -> dict:
        return {**asdict(self), "slow_share": self.slow_share, "summary": self.summary()}


def render_op_times(data: dict, top: int = 8) -> str:
    """The per-op-type table shown by inspect (`data` is `OpTimes.to_dict()` or {"unavailable": why})."""
    if "unavailable" in data:
        return f"time shares: not measured ({data['unavailable']})"
    lines = [f"time shares ({data['method']}): {data['summary']}"]
    for op in data["ops"][:top]:
        lines.append(f"  {op['type']:<24} {op['kind']:<9} x{op['count']:<4} {op['ms']:8.3f} ms  {op['share']:6.1%}")
    if len(data["ops"]) > top:
        lines.append(f"  ... {len(data['ops']) - top} more op types")
    lines.extend(f"  note: {n}" for n in data.get("notes", []))
    return "\n".join(lines)


# -- ONNX Runtime ------------------------------------------------------------------------
_QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def onnx_kind(op_type: str) -> str:
    from .delegate_coverage import _is_integer_kernel

    if _is_integer_kernel(op_type):
        return OpKind.INTEGER
    return OpKind.QDQ if op_type in _QDQ else OpKind.OTHER


def shares_from_trace(events: list[dict]) -> OpTimes:
    """Per-op-type shares from an ORT profile trace (the JSON list `end_profiling` writes).

    Every "model_run" event is one inference; node events are summed by `args.op_name` and
    divided by the summed model_run time. The first run (cold: arena growth, prepacking) is
    left out when there are several.
    """
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    if not runs:
        raise InputError("the ONNX Runtime profile holds no model_run event; run the session before "
                         "ending the profile")
    if len(runs) > 1:
        runs = runs[1:]
    start = runs[0][0]
    times: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time") or event["ts"] < start:
            continue
        op = event.get("args", {}).get("op_name", "?")
        times[op] += event["dur"]
        counts[op] += 1
    total_us = float(sum(end - begin for begin, end in runs))
    n = len(runs)
    ops = [OpTime(op, onnx_kind(op), counts[op] // n, us / n / 1e3, us / total_us) for op, us in times.items()]
    ops.sort(key=lambda o: -o.ms)
    return OpTimes("onnx", f"onnxruntime session profiler, {n} runs", total_us / n / 1e3, ops)


def onnx_op_times(path: str | Path, threads: int | None = None, runs: int = 20, sample=None) -> OpTimes:
    """Profile `runs` inferences of an .onnx model with ORT's own profiler and return the shares.

    Args:
        sample: one input batch (list of arrays, one per input); None: random values of each
            input's shape and type.
    """
    from .runtime.onnx import import_onnxruntime, session_options

    ort = import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="edgeact-ort-profile-") as tmp:
        options = session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types
            raise InputError(f"onnxruntime cannot load {path}: {first_line(exc, 200)}") from None
        feed = {i.name: a for i, a in zip(session.get_inputs(), sample or _random_inputs(session))}
        for _ in range(runs + 1):
            session.run(None, feed)
        trace = Path(session.end_profiling())
        try:
            events = json.loads(trace.read_text())
        except (OSError, ValueError) as exc:
            raise EdgeactError(f"cannot read ONNX Runtime's profile {trace}: {first_line(exc)}") from None
    return shares_from_trace(events)


_ORT_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8, "tensor(int32)": np.int32, "tensor(int64)": np.int64}


def _random_inputs(session) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = []
    for spec in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        dtype = _ORT_NUMPY.get(spec.type, np.float32)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            arrays.append(rng.integers(max(info.min, -128), min(info.max, 255), shape).astype(dtype))
        else:
            arrays.append(rng.uniform(0, 1, shape).astype(dtype))
    return arrays


def model_op_times(path: str | Path, threads: int | None = None, delegate: str = "xnnpack", runs: int = 20,
                   fmt: str | None = None, coverage=None, whole_ms: float | None = None) -> OpTimes:
    """Per-op-type time shares of a .tflite or .onnx model; the entry point for inspect, convert, profile.

    Args:
        fmt: "tflite" or "onnx"; None: from the suffix (convert's staged files have none).
        coverage, whole_ms: the TFLite model's `Coverage` and median call time when already
            measured (not measured twice; ORT's profiler measures its own total).
    """
    fmt = fmt or Path(path).suffix.lower().lstrip(".")
    if fmt == "onnx":
        return onnx_op_times(path, threads=threads, runs=runs)
    if fmt == "tflite":
        from .op_time_tflite import tflite_op_times

        return tflite_op_times(path, threads=threads, delegate=delegate, runs=runs, coverage=coverage,
                               whole_ms=whole_ms)
    raise InputError(f"{path} is not a .tflite or .onnx file; op times are measured on converted models")


def measured_op_times(path: str | Path, **kwargs) -> dict:
    """`model_op_times(...).to_dict()`, or {"unavailable": why} where this runtime cannot measure them."""
    try:
        return model_op_times(path, **kwargs).to_dict()
    except EdgeactError as exc:
        return {"unavailable": str(exc)}
