"""Fix a TFLite model's open batch to 1, and fold the shape arithmetic it leaves.

TFLiteConverter keeps a Keras model's open batch (shape_signature -1). A Flatten or a Reshape
then computes its new shape at run time from the tensor's own::

    x (-1,6,6,4) -> SHAPE -> STRIDED_SLICE [0:1] -> PACK(., 144) -> RESHAPE(x, .) -> (-1,144)

four int32 ops that XNNPACK leaves on the reference kernels (edgeact.fastpath.coverage) and
that end the mapped part of an Edge TPU graph (edgeact.fastpath.edgetpu: the compiler wants
static sizes). With the batch fixed to 1::

    x (1,6,6,4) -> RESHAPE(x, const [1,144]) -> (1,144)

Guards: only the batch may be open (another open size is left as it is: the model would not
be the same); a RESHAPE takes its output's static shape only when that shape is fully known;
ops left without a consumer are removed, nothing else. The caller checks the function is
kept (`fixed_batch` runs both models on the same inputs and keeps the original when any
output differs by a single step).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

_RESHAPE = 22  # tflite BuiltinOperator.RESHAPE


def _is_constant(model, tensor) -> bool:
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and (buffer.data is not None and len(buffer.data) > 0 or bool(buffer.offset))


def _opcode(model, op) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def fold_open_batch(model_bytes: bytes) -> tuple[bytes, dict]:
    """The model with its batch fixed to 1 and the shape ops folded, and what changed.

    Returns (bytes, {"inputs": [...], "reshapes": n, "removed": {op: count}}), or the bytes
    unchanged and {"skipped": why} when there is nothing to fix or a guard holds.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    if len(model.subgraphs) != 1:
        return model_bytes, {"skipped": f"{len(model.subgraphs)} subgraphs (control flow): left as converted"}
    graph = model.subgraphs[0]
    signatures = [list(t.shapeSignature) if t.shapeSignature is not None else None for t in graph.tensors]
    if not any(s and s[0] < 0 for s in signatures):
        return model_bytes, {"skipped": "the batch is already fixed"}
    other = [graph.tensors[i].name for i, s in enumerate(signatures) if s and any(d < 0 for d in s[1:])]
    if other:
        name = other[0].decode() if isinstance(other[0], bytes) else other[0]
        return model_bytes, {"skipped": f"tensor '{name}' has an open size besides the batch: left as converted"}
    inputs = [graph.tensors[i].name for i in graph.inputs if signatures[i] and signatures[i][0] < 0]
    for tensor in graph.tensors:
        if tensor.shapeSignature is not None:
            tensor.shapeSignature = None  # `shape` holds 1 for the open batch: the static sizes
    reshapes = 0
    for op in graph.operators:
        if _opcode(model, op) != _RESHAPE or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        shape_tensor = graph.tensors[op.inputs[1]]
        if _is_constant(model, shape_tensor):
            continue
        out_shape = np.asarray(graph.tensors[op.outputs[0]].shape, dtype=np.int32)
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(out_shape.tobytes(), dtype=np.uint8)
        model.buffers.append(buffer)
        const = schema.TensorT()
        const.shape = np.asarray([len(out_shape)], dtype=np.int32)
        const.type = schema.TensorType.INT32
        const.buffer = len(model.buffers) - 1
        const.name = (shape_tensor.name or b"shape") + b"/fixed_batch" \
            if isinstance(shape_tensor.name, bytes) else f"{shape_tensor.name}/fixed_batch"
        graph.tensors.append(const)
        op.inputs[1] = len(graph.tensors) - 1
        if op.builtinOptions is not None and hasattr(op.builtinOptions, "newShape"):
            op.builtinOptions.newShape = out_shape.copy()
        reshapes += 1
    removed: dict[str, int] = {}
    while True:  # drop ops nothing reads any more (the SHAPE -> ... -> PACK chains), until none is left
        read = {i for op in graph.operators for i in op.inputs if i >= 0} | set(int(i) for i in graph.outputs)
        dead = [op for op in graph.operators if not any(int(o) in read for o in op.outputs)]
        if not dead:
            break
        for op in dead:
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
            removed[name] = removed.get(name, 0) + 1
        graph.operators = [op for op in graph.operators if not any(op is d for d in dead)]
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return data, {"inputs": [n.decode() if isinstance(n, bytes) else n for n in inputs], "reshapes": reshapes,
                  "removed": removed}


def fixed_batch(model_bytes: bytes, samples: int = 4) -> tuple[bytes, dict]:
    """`fold_open_batch`, kept only when the rewritten model computes what the original does:
    both run on the same random inputs (batch 1) and every output must match exactly."""
    data, changed = fold_open_batch(model_bytes)
    if "skipped" in changed:
        return model_bytes, changed
    from edgeact.runtime.tflite import TFLiteRunner

    with tempfile.TemporaryDirectory(prefix="edgeact-batch-") as tmp:
        paths = [Path(tmp) / "original.tflite", Path(tmp) / "fixed.tflite"]
        paths[0].write_bytes(model_bytes)
        paths[1].write_bytes(data)
        original, fixed = TFLiteRunner(paths[0], threads=1), TFLiteRunner(paths[1], threads=1)
        rng = np.random.default_rng(0)
        batch = {spec.name: rng.uniform(0, 1, (samples, *spec.shape[1:])).astype(np.float32)
                 for spec in original.inputs}
        before = original.predict(batch)
        after = fixed.predict(batch)
    same = before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    if not same:
        return model_bytes, {"skipped": "the batch-1 model's outputs differ from the converted model's: left as "
                                        "converted"}
    return data, {**changed, "verified_samples": samples}


__all__ = ["fixed_batch", "fold_open_batch"]
