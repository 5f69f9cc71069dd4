"""Read a .tflite flatbuffer and check its structure before any interpreter sees it.

LiteRT trusts the file: an operator input index of -1 where a weight belongs, or past
the tensor list, ends in a segmentation fault, not an error. `read_raw_model` reads every
table edgeact or the interpreter will follow (with the bounds-checked `edgeact.formats.flatbuf`,
so it needs neither TensorFlow nor ai-edge-litert's schema) and `validate` checks:

- opcode, tensor and buffer indices in range; subgraph inputs/outputs are real tensors;
- operator outputs are real tensors; an input is -1 only where the op takes an optional one
  (a bias); weights, data and every input of ops without optional inputs must be present;
- shapes: rank and dimensions bounded, no tensor larger than this machine's memory;
- quantization: as many zero points as scales, finite positive scales on integer tensors,
  zero points inside the type's range, per-channel dimension in range and matching the shape;
- buffers: external data (offset/size) inside the file; constant data exactly as long as
  the tensor's shape and type require.

Every problem is a `ModelLoadError` (or `LimitError`) naming the file, the subgraph,
operator or tensor, and what to do.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeact.errors import ModelLoadError, shown

from . import tflite_schema as schema
from .flatbuf import Buffer, FlatbufferError, Table
from .limits import check_bytes, check_shape, elements_of

ITEM_SIZES = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
              "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8, "UINT32": 4,
              "UINT16": 2, "BFLOAT16": 2, "FLOAT8_E4M3FN": 1, "FLOAT8_E5M2": 1}
_INT_RANGES = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}
# Index of the first optional input (a bias) of ops that have one; inputs before it are required.
OPTIONAL_FROM = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3,
                 "CONV_3D": 2, "CONV_3D_TRANSPOSE": 3, "SVDF": 3, "LSH_PROJECTION": 2,
                 "RESHAPE": 1}  # RESHAPE: an absent shape tensor means "use ReshapeOptions.new_shape"
# Ops with many optional inputs (recurrent cells), custom ops and control flow: only input 0 is required.
_LENIENT = ("LSTM", "RNN", "CUSTOM", "STABLEHLO", "EMBEDDING", "CALL", "WHILE", "IF", "DELEGATE", "HASHTABLE")


@dataclass
class RawTensor:
    shape: list[int]
    signature: list[int] | None
    type: int
    buffer: int
    name: str
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    quantized_dimension: int
    sparse: bool = False  # its constant data is compressed: not shape x item size bytes

    @property
    def type_name(self) -> str:
        return schema.TENSOR_TYPES.get(self.type, f"TYPE_{self.type}")


@dataclass
class RawOp:
    opcode_index: int
    inputs: list[int]
    outputs: list[int]
    fused_activation: int | None  # None: its options have no fused activation field


@dataclass
class RawSubgraph:
    tensors: list[RawTensor]
    ops: list[RawOp]
    inputs: list[int]
    outputs: list[int]


@dataclass
class RawModel:
    opcodes: list[tuple[int, str | None]]  # (builtin code, custom code)
    subgraphs: list[RawSubgraph]
    buffers: list[tuple[int, int, int]]  # (inline data bytes, external offset, external size)
    file_size: int
    # SignatureDefs: (key, subgraph index, {input name: tensor}, {output name: tensor})
    signatures: list[tuple[str, int, dict[str, int], dict[str, int]]] = field(default_factory=list)
    invalid_text: list[str] = field(default_factory=list)  # strings that are not UTF-8 (the interpreter refuses them)

    def op_name(self, op: RawOp) -> str:
        builtin, custom = self.opcodes[op.opcode_index]
        name = schema.BUILTIN_OPERATORS.get(builtin, f"OP_{builtin}")
        return f"CUSTOM:{shown(custom)}" if name == "CUSTOM" and custom else name


def _ints(table: Table, slot: int, what: str) -> list[int]:
    values = table.numbers(slot, "i32", what)
    return [] if values is None else values.tolist()


def _tensor(table: Table, what: str) -> RawTensor:
    s = schema.SLOTS["Tensor"]
    shape = table.numbers(s["Shape"], "i32", f"{what}.shape")
    signature = table.numbers(s["ShapeSignature"], "i32", f"{what}.shape_signature")
    q = table.table(s["Quantization"], f"{what}.quantization")
    scale = zero_point = None
    quantized_dimension = 0
    if q is not None:
        qs = schema.SLOTS["QuantizationParameters"]
        scale = q.numbers(qs["Scale"], "f32", f"{what}.scale")
        zero_point = q.numbers(qs["ZeroPoint"], "i64", f"{what}.zero_point")
        quantized_dimension = q.scalar(qs["QuantizedDimension"], "i32")
    return RawTensor(
        shape=[] if shape is None else shape.tolist(), signature=None if signature is None else signature.tolist(),
        type=table.scalar(s["Type"], "i8"), buffer=table.scalar(s["Buffer"], "u32"),
        name=table.string(s["Name"], f"{what}.name") or "", scale=scale, zero_point=zero_point,
        quantized_dimension=quantized_dimension, sparse=table.table(s["Sparsity"], f"{what}.sparsity") is not None)


def _op(table: Table, what: str) -> RawOp:
    s = schema.SLOTS["Operator"]
    options_type = table.scalar(s["BuiltinOptionsType"], "u8")
    fused = None
    slot = schema.FUSED_ACTIVATION_SLOT.get(options_type)
    if slot is not None:
        options = table.table(s["BuiltinOptions"], f"{what}.options")
        fused = options.scalar(slot, "i8") if options is not None else 0
    return RawOp(table.scalar(s["OpcodeIndex"], "u32"), _ints(table, s["Inputs"], f"{what}.inputs"),
                 _ints(table, s["Outputs"], f"{what}.outputs"), fused)


def read_raw_model(data: bytes) -> RawModel:
    """Every table of the model that edgeact or an interpreter follows; FlatbufferError if any lies outside."""
    buf = Buffer(data)
    root = buf.root()
    s = schema.SLOTS
    opcodes = []
    for code in root.tables(s["Model"]["OperatorCodes"], "operator_codes"):
        c = s["OperatorCode"]
        builtin = max(code.scalar(c["DeprecatedBuiltinCode"], "i8"), code.scalar(c["BuiltinCode"], "i32"))
        opcodes.append((builtin, code.string(c["CustomCode"], "custom_code")))
    subgraphs = []
    for g, graph in enumerate(root.tables(s["Model"]["Subgraphs"], "subgraphs")):
        sg = s["SubGraph"]
        subgraphs.append(RawSubgraph(
            tensors=[_tensor(t, f"{g}:{i}") for i, t in enumerate(graph.tables(sg["Tensors"], "tensors"))],
            ops=[_op(o, f"operator {g}:{i}") for i, o in enumerate(graph.tables(sg["Operators"], "operators"))],
            inputs=_ints(graph, sg["Inputs"], "subgraph inputs"),
            outputs=_ints(graph, sg["Outputs"], "subgraph outputs")))
    buffers = []
    for i, b in enumerate(root.tables(s["Model"]["Buffers"], "buffers")):
        inline = b.numbers(s["Buffer"]["Data"], "u8", f"buffer {i}")
        buffers.append((0 if inline is None else len(inline), b.scalar(s["Buffer"]["Offset"], "u64"),
                        b.scalar(s["Buffer"]["Size"], "u64")))
    signatures = []
    for d in root.tables(s["Model"]["SignatureDefs"], "signature_defs"):
        sd, tm = s["SignatureDef"], s["TensorMap"]
        maps = [{m.string(tm["Name"], "signature tensor name") or "": m.scalar(tm["TensorIndex"], "u32")
                 for m in d.tables(sd[kind], "signature tensors")} for kind in ("Inputs", "Outputs")]
        signatures.append((d.string(sd["SignatureKey"], "signature key") or "",
                           d.scalar(sd["SubgraphIndex"], "u32"), maps[0], maps[1]))
    return RawModel(opcodes, subgraphs, buffers, len(data), signatures, list(buf.invalid_text))


def read_metadata_entries(data: bytes) -> dict[str, bytes]:
    """The model's metadata entries (name -> the bytes of its buffer), bounds-checked like the rest.

    FlatbufferError when an entry or its buffer lies outside the file.
    """
    buf = Buffer(data)
    root = buf.root()
    s = schema.SLOTS
    buffers = root.tables(s["Model"]["Buffers"], "buffers")
    entries = {}
    for entry in root.tables(s["Model"]["Metadata"], "metadata"):
        name = entry.string(s["Metadata"]["Name"], "metadata name") or ""
        index = entry.scalar(s["Metadata"]["Buffer"], "u32")
        if index >= len(buffers):
            raise FlatbufferError(f"metadata '{shown(name)}' points at buffer {index} of {len(buffers)}")
        b = buffers[index]
        inline = b.numbers(s["Buffer"]["Data"], "u8", f"buffer {index}")
        if inline is not None and len(inline):
            entries[name] = inline.tobytes()
            continue
        offset, size = b.scalar(s["Buffer"]["Offset"], "u64"), b.scalar(s["Buffer"]["Size"], "u64")
        if offset > 1:
            buf.check(offset, size, f"buffer {index}")
            entries[name] = bytes(data[offset:offset + size])
        else:
            entries[name] = b""
    return entries


def validate(model: RawModel, path: Path | str) -> None:
    """Check the rules in the module docstring; ModelLoadError/LimitError at the first broken one."""
    def fail(message: str) -> None:
        raise ModelLoadError(f"{path} is not a valid TFLite model: {message}; re-export it")

    if not model.subgraphs:
        fail("it holds no subgraph")
    if model.invalid_text:
        fail(f"the string {model.invalid_text[0]} is not valid UTF-8")
    for i, (_, offset, size) in enumerate(model.buffers):
        if offset > 1 and offset + size > model.file_size:
            fail(f"buffer {i} points at bytes {offset}..{offset + size} of a {model.file_size}-byte file")
    for g, graph in enumerate(model.subgraphs):
        n = len(graph.tensors)
        where = f"subgraph {g}" if len(model.subgraphs) > 1 else "the graph"
        for t, tensor in enumerate(graph.tensors):
            _check_tensor(model, tensor, f"tensor {t} '{shown(tensor.name)}'", path, fail)
        for kind, indices in (("input", graph.inputs), ("output", graph.outputs)):
            bad = [i for i in indices if not 0 <= i < n]
            if bad:
                fail(f"{where} {kind} {bad[0]} is not one of its {n} tensors")
        if g == 0 and (not graph.inputs or not graph.outputs):
            fail("its main graph has no inputs or no outputs")
        for k, op in enumerate(graph.ops):
            if not 0 <= op.opcode_index < len(model.opcodes):
                fail(f"operator {k} has opcode index {op.opcode_index} of {len(model.opcodes)}")
            _check_op(model.op_name(op), op, k, n, fail)


def _check_op(name: str, op: RawOp, k: int, n: int, fail) -> None:
    lenient = any(word in name for word in _LENIENT)
    optional_from = 1 if lenient else OPTIONAL_FROM.get(name, len(op.inputs))
    for position, index in enumerate(op.inputs):
        if index == -1 and position >= optional_from:
            continue
        if not 0 <= index < n:
            what = "missing (-1)" if index == -1 else f"tensor {index} of {n}"
            fail(f"operator {k} ({name}) input {position} is {what}")
    if not op.outputs:
        fail(f"operator {k} ({name}) has no outputs")
    for position, index in enumerate(op.outputs):
        if not 0 <= index < n:
            fail(f"operator {k} ({name}) output {position} is tensor {index} of {n}")


def _check_tensor(model: RawModel, tensor: RawTensor, what: str, path, fail) -> None:
    check_shape(tensor.shape, what, str(path))
    if tensor.signature is not None:
        check_shape(tensor.signature, what, str(path), allow_unknown=True)
        if len(tensor.signature) != len(tensor.shape):
            fail(f"{what} has shape {tensor.shape} but shape signature {tensor.signature}")
    type_name = tensor.type_name
    if type_name not in schema.TENSOR_TYPES.values():
        fail(f"{what} has unknown type {tensor.type}")
    item = ITEM_SIZES.get(type_name)
    elements = elements_of(tensor.shape)
    check_bytes(elements, item or 1, what, str(path))
    if not 0 <= tensor.buffer < max(len(model.buffers), 1):
        fail(f"{what} uses buffer {tensor.buffer} of {len(model.buffers)}")
    if model.buffers and item is not None and not tensor.sparse:
        inline, _, size = model.buffers[tensor.buffer]
        stored = inline or size
        if stored and stored != elements * item:
            fail(f"{what} ({type_name} {tensor.shape}) needs {elements * item} bytes but its buffer holds {stored}")
    _check_quantization(tensor, what, type_name, fail)


def _check_quantization(tensor: RawTensor, what: str, type_name: str, fail) -> None:
    scale, zero_point = tensor.scale, tensor.zero_point
    if scale is None or len(scale) == 0:
        return
    if zero_point is None or len(zero_point) != len(scale):
        fail(f"{what} has {len(scale)} quantization scales but "
             f"{0 if zero_point is None else len(zero_point)} zero points")
    if not all(math.isfinite(s) and s >= 0 for s in scale.tolist()):
        fail(f"{what} has a negative, NaN or infinite quantization scale")
    if type_name in _INT_RANGES:
        low, high = _INT_RANGES[type_name]
        if not all(s > 0 for s in scale.tolist()):
            fail(f"{what} ({type_name}) has a zero quantization scale")
        if int(zero_point.min()) < low or int(zero_point.max()) > high:
            fail(f"{what} has a zero point outside {type_name}'s range {low}..{high}")
    if len(scale) > 1:
        dim = tensor.quantized_dimension
        if not 0 <= dim < len(tensor.shape) or tensor.shape[dim] != len(scale):
            fail(f"{what} has {len(scale)} per-channel scales along dimension {dim} of shape {tensor.shape}")
