"""What the ops left off the TFLite delegate cost: each one timed alone, as a one-op model.

LiteRT 2.3's Python interpreter exposes no op profiler (its C++ `Profiler` hook and the
`benchmark_model` tool are not in the wheel), so the time of an op the delegate did not take
is measured directly:

1. The whole model runs once on the reference kernels with `experimental_preserve_all_tensors`,
   which keeps every intermediate tensor: the real values each left op reads (a STRIDED_SLICE's
   int32 indices, a HARD_SWISH's INT8 activations) and their real shapes.
2. For each left op a one-op model is cut from the flatbuffer (LiteRT's own
   `schema_py_generated` object API): the op, its constant tensors with their buffers, its other
   inputs as graph inputs, its outputs as graph outputs.
3. That model runs with the same runtime and threads on the reference kernels (where the op
   runs inside the whole model too), fed the preserved values; the median call, less the median
   call of an empty model (the Python `invoke()` overhead), is the op's time.

The whole model is timed with its delegate, the way it runs. Share = op time / whole time. Not
counted: the hand-over at each partition boundary (the delegate's copy in and out), which lands
in the "delegated" remainder; and caches: an op timed alone finds its input warm in cache.
"""
from __future__ import annotations

import copy
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgeact.errors import EdgeactError, RuntimeUnavailableError, first_line

from .coverage import Coverage, tflite_coverage
from .op_shares import OpKind, OpTime, OpTimes

_SUBGRAPH_OPS = ("WHILE", "IF", "CALL_ONCE", "CUSTOM", "DELEGATE", "STABLEHLO_COMPOSITE")


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise RuntimeUnavailableError("timing single TFLite ops writes one-op models with LiteRT's schema; "
                                          "pip install ai-edge-litert") from None
    return schema


def _pack(schema, model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _constant(model, tensor) -> bool:
    """A tensor whose data is in the file (weights, biases, shapes), as opposed to one computed at run time."""
    buffer = model.buffers[tensor.buffer] if tensor.buffer else None
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def one_op_model(schema, model, op_index: int, shapes: dict[int, tuple[int, ...]]) -> tuple[bytes, list[int]]:
    """A .tflite (bytes) holding only operator `op_index` of the main graph of `model` (a ModelT).

    Returns the bytes and the original tensor indices of its graph inputs, in order.
    `shapes` gives the run-time shape of each non-constant tensor (from the preserved run).
    """
    graph = model.subgraphs[0]
    op = copy.copy(graph.operators[op_index])
    used = [t for t in list(op.inputs) + list(op.outputs) if t >= 0]
    order = list(dict.fromkeys(used))
    remap = {old: new for new, old in enumerate(order)}
    buffers = [schema.BufferT()]
    tensors, inputs = [], []
    for old in order:
        tensor = copy.copy(graph.tensors[old])
        if _constant(model, tensor):
            buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
            if old in shapes:
                tensor.shape = list(shapes[old])
                tensor.shapeSignature = None
            if old not in op.outputs:
                inputs.append(old)
        tensors.append(tensor)
    op.inputs = [remap[t] if t >= 0 else -1 for t in op.inputs]
    op.outputs = [remap[t] for t in op.outputs]
    op.intermediates = []
    sub = schema.SubGraphT()
    sub.tensors, sub.operators, sub.name = tensors, [op], "one_op"
    sub.inputs, sub.outputs = [remap[t] for t in inputs], list(op.outputs)
    cut = copy.copy(model)
    cut.subgraphs, cut.buffers, cut.signatureDefs, cut.metadata, cut.metadataBuffer = [sub], buffers, [], [], []
    return _pack(schema, cut), inputs


def _empty_model(schema, model, tensor_index: int) -> bytes:
    """A model with no operator (its input is its output): times the bare `invoke()` call."""
    graph = model.subgraphs[0]
    tensor = copy.copy(graph.tensors[tensor_index])
    tensor.buffer, tensor.shape, tensor.shapeSignature = 0, [1], None
    sub = schema.SubGraphT()
    sub.tensors, sub.operators, sub.inputs, sub.outputs, sub.name = [tensor], [], [0], [0], "empty"
    cut = copy.copy(model)
    cut.subgraphs, cut.buffers, cut.signatureDefs, cut.metadata, cut.metadataBuffer = \
        [sub], [schema.BufferT()], [], [], []
    return _pack(schema, cut)


def _median_call_ms(interpreter, runs: int, warmup: int = 3) -> float:
    invoke, clock = interpreter.invoke, time.perf_counter_ns
    for _ in range(warmup):
        invoke()
    times = []
    for _ in range(runs):
        start = clock()
        invoke()
        times.append(clock() - start)
    return float(np.median(times)) / 1e6


def _reference_interpreter(backend, threads: int | None, **kwargs):
    if backend.op_resolver is None:
        raise RuntimeUnavailableError(f"{backend.name.value} {backend.version} cannot turn XNNPACK off, so ops "
                                      "cannot be timed on the reference kernels; pip install ai-edge-litert")
    options = {"experimental_op_resolver_type": backend.op_resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES, **kwargs}
    if threads is not None:
        options["num_threads"] = int(threads)
    interpreter = backend.interpreter(**options)
    interpreter.allocate_tensors()
    return interpreter


def _sample_inputs(interpreter) -> None:
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        dtype, shape = detail["dtype"], detail["shape"]
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
        else:
            value = rng.uniform(0, 1, shape).astype(dtype)
        interpreter.set_tensor(detail["index"], value)


def tflite_op_times(path: str | Path, threads: int | None = None, delegate: str = "xnnpack", runs: int = 20,
                    runtime: str | None = None, coverage: Coverage | None = None,
                    whole_ms: float | None = None) -> OpTimes:
    """Time of each op left off the delegate, by op type, as a share of the whole model's time.

    Args:
        coverage, whole_ms: the coverage and the whole model's median call with its delegate, when
            already measured (convert's timed loop): not measured twice.

    Raises:
        RuntimeUnavailableError: no schema to write one-op models with, or no reference-kernel resolver.
    """
    from edgeact.runtime.tflite import TFLiteRunner, tflite_backend

    coverage = coverage or tflite_coverage(path, delegate=delegate, threads=threads, runtime=runtime)
    if whole_ms is None:
        whole = TFLiteRunner(path, runtime=runtime, threads=threads, delegate=delegate)
        _sample_inputs(whole.interpreter)
        whole_ms = _median_call_ms(whole.interpreter, runs)
    result = OpTimes("tflite", f"one-op models on the reference kernels against the whole model on {delegate}, "
                     f"median of {runs} calls", whole_ms)
    left_ms = 0.0
    if coverage.left:
        schema = _schema()
        backend = tflite_backend(runtime)
        data = Path(path).read_bytes()
        model = schema.ModelT.InitFromPackedBuf(data, 0)
        preserved = _reference_interpreter(backend, threads, model_content=data,
                                           experimental_preserve_all_tensors=True)
        _sample_inputs(preserved)
        preserved.invoke()
        overhead = _median_call_ms(_reference_interpreter(backend, threads, model_content=_empty_model(
            schema, model, model.subgraphs[0].inputs[0])), runs)
        times: dict[str, list[float]] = defaultdict(list)
        for op in coverage.left:
            try:
                times[op.type].append(_time_one_op(schema, model, backend, preserved, op.index, threads, runs,
                                                   overhead))
            except (EdgeactError, ValueError, RuntimeError) as exc:
                result.notes.append(f"{op.type} (op {op.index}) not timed: {first_line(exc, 160)}")
        for kind, values in times.items():
            ms = float(sum(values))
            left_ms += ms
            result.ops.append(OpTime(kind, OpKind.LEFT, len(values), ms, ms / whole_ms))
        result.notes.append(f"one invoke() call costs {overhead * 1e3:.1f} us from Python; subtracted from each op")
    rest = max(whole_ms - left_ms, 0.0)
    result.ops.append(OpTime(f"{delegate} partitions", OpKind.DELEGATED, coverage.fast_ops, rest, rest / whole_ms))
    result.ops.sort(key=lambda o: -o.ms)
    if left_ms > whole_ms:
        result.notes.append("the left ops timed alone took longer than the whole model: a busy machine, or "
                            "threads the one-op models did not share; shares are rough")
    return result


def _time_one_op(schema, model, backend, preserved, index: int, threads: int | None, runs: int,
                 overhead: float) -> float:
    graph = model.subgraphs[0]
    op = graph.operators[index]
    code = model.operatorCodes[op.opcodeIndex]
    kind = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    if names.get(kind) in _SUBGRAPH_OPS:
        raise RuntimeUnavailableError(f"a {names[kind]} op cannot be cut out of its graph")
    values = {t: preserved.get_tensor(t) for t in list(op.inputs) + list(op.outputs)
              if t >= 0 and not _constant(model, graph.tensors[t])}
    content, inputs = one_op_model(schema, model, index, {t: v.shape for t, v in values.items()})
    interpreter = _reference_interpreter(backend, threads, model_content=content)
    for detail, original in zip(interpreter.get_input_details(), inputs):
        interpreter.set_tensor(detail["index"], values[original])
    return max(_median_call_ms(interpreter, runs) - overhead, 0.0)
