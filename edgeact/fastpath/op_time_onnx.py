"""ONNX Runtime's time per op type, from its session profiler.

`SessionOptions.enable_profiling` writes a Chrome-trace JSON with one "Node" event per executed
kernel (`args.op_name`, `dur` in microseconds) and one "model_run" event per `run()`. The nodes
are those of the graph ORT really executes (after its optimiser: `QLinearConv`, `QuantizeLinear`,
NCHWc `Conv`, `ReorderInput`...), so each op type is sorted into integer kernels,
quantize/dequantize, and the rest (float compute and layout work, outside the fused integer
kernels). A share is the op type's time over the model_run time, summed over the profiled runs.
"""
from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgeact.errors import EdgeactError, InputError, first_line

from .op_shares import OpKind, OpTime, OpTimes

_QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def onnx_kind(op_type: str) -> str:
    from .coverage import _is_integer_kernel

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
    from edgeact.runtime.onnx import import_onnxruntime, session_options

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


