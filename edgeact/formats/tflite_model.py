"""Read a .tflite flatbuffer: operators, tensors, fused activations, quantization.

Reads the file with edgeact's own bounds-checked flatbuffer reader and validates its
structure (`edgeact.formats.validate_tflite`), so it works on a device with tflite-runtime only
(no schema, no TensorFlow) and turns a truncated, corrupt or hostile file into a one-line
error instead of a crash inside native code.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeact.errors import LimitError, ModelLoadError

from . import tflite_schema
from .flatbuf import FlatbufferError
from .limits import gib, machine_memory_bytes
from .validate_tflite import RawModel, read_raw_model, validate

_TFLITE_IDENTIFIER = b"TFL3"
FLOAT_TYPES = ("float32", "float16")


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    dtype: str
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    is_constant: bool = False

    @property
    def quantized(self) -> bool:
        return bool(self.scale) and any(s != 0 for s in self.scale)


@dataclass
class OpInfo:
    index: int
    type: str
    inputs: list[int]
    outputs: list[int]
    fused_activation: str | None  # None: this op type has no fused activation field


@dataclass
class TFLiteModel:
    """What `edgeact inspect` shows of a .tflite model and what the fusion check reads."""

    path: Path
    size_bytes: int
    tensors: list[TensorInfo]
    ops: list[OpInfo]
    inputs: list[int]
    outputs: list[int]
    # {tensor index: name} from the one SignatureDef of the main graph: the names a converter was
    # given (edgeact's: the Keras names). Empty when the model has no single signature.
    signature_names: dict[int, str] = field(default_factory=dict)

    def io_name(self, tensor: int) -> str:
        """An input's or output's name: its SignatureDef name, else the tensor's own name."""
        return self.signature_names.get(tensor, self.tensors[tensor].name)

    def producer(self, tensor: int) -> OpInfo | None:
        for op in self.ops:
            if tensor in op.outputs:
                return op
        return None

    def consumers(self, tensor: int) -> list[OpInfo]:
        return [op for op in self.ops if tensor in op.inputs]

    def float_ops(self, float_io: bool) -> list[OpInfo]:
        """Ops that compute in float; with `float_io`, the interface's own QUANTIZE/DEQUANTIZE
        (float in and out of an integer body) do not count."""
        io = set(self.inputs) | set(self.outputs)
        found = []
        for op in self.ops:
            if float_io and op.type in ("QUANTIZE", "DEQUANTIZE") and (set(op.inputs) | set(op.outputs)) & io:
                continue
            if any(self.tensors[i].dtype in FLOAT_TYPES for i in op.inputs + op.outputs if i >= 0):
                found.append(op)
        return found

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.type] = counts.get(op.type, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self) -> dict:
        def tensor(i: int) -> dict:
            t = self.tensors[i]
            return {
                "name": t.name, "shape": t.shape, "dtype": t.dtype,
                "scale": t.scale[:1] if len(t.scale) == 1 else t.scale[:4],
                "zero_point": t.zero_point[:1] if len(t.zero_point) == 1 else t.zero_point[:4],
                "per_channel": len(t.scale) > 1,
            }

        return {
            "format": "tflite",
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            # The model's interface by its SignatureDef names (the Keras names), the tensor's own beside it.
            "inputs": [{**tensor(i), "name": self.io_name(i), "tensor": self.tensors[i].name} for i in self.inputs],
            "outputs": [{**tensor(i), "name": self.io_name(i), "tensor": self.tensors[i].name} for i in self.outputs],
            "op_counts": self.op_counts(),
            "ops": [
                {
                    "index": op.index,
                    "type": op.type,
                    "fused_activation": op.fused_activation,
                    "inputs": [tensor(i) for i in op.inputs if i >= 0],
                    "outputs": [tensor(i) for i in op.outputs],
                }
                for op in self.ops
            ],
        }


def check_tflite_bytes(data: bytes, path: Path | str) -> None:
    """Cheap structural checks that catch non-models and truncated files."""
    if len(data) < 16 or data[4:8] != _TFLITE_IDENTIFIER:
        raise ModelLoadError(
            f"{path} is not a TFLite model (no 'TFL3' flatbuffer identifier); "
            "give a .tflite file written by TFLiteConverter or edgeact convert"
        )


def check_tflite_file(path: Path | str) -> None:
    """Before an interpreter sees a file: read and validate its whole structure."""
    read_tflite(path)


def _read_model_bytes(path: Path) -> bytes:
    try:
        size, memory = path.stat().st_size, machine_memory_bytes()
        if size > memory:  # it is read whole
            raise LimitError(f"{path} is {gib(size)} but this machine has {gib(memory)} of memory; "
                             "profile it on a larger machine")
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read model {path}: {exc.strerror}; check the path") from None
    check_tflite_bytes(data, path)
    return data


def read_tflite(path: Path | str) -> TFLiteModel:
    """Parse and validate a .tflite file; ModelLoadError (or LimitError) if it is not a sound model."""
    path = Path(path)
    raw = read_checked(path, read_raw_model)
    validate(raw, path)
    return _model(raw, path)


def read_checked(path: Path, reader):
    """`reader(bytes)` on the file's bytes, a reader's FlatbufferError made a one-line ModelLoadError."""
    data = _read_model_bytes(path)
    try:
        return reader(data)
    except FlatbufferError as exc:
        raise ModelLoadError(f"{path} is a corrupt or truncated TFLite model ({exc}); re-export it") from None


def _model(raw: RawModel, path: Path) -> TFLiteModel:
    graph = raw.subgraphs[0]
    tensors = []
    for i, t in enumerate(graph.tensors):
        scale = [] if t.scale is None else [float(s) for s in t.scale.tolist()]
        zero_point = [] if t.zero_point is None else [int(z) for z in t.zero_point.tolist()]
        inline, _, size = raw.buffers[t.buffer] if t.buffer < len(raw.buffers) else (0, 0, 0)
        shape = t.signature if t.signature is not None else t.shape
        tensors.append(TensorInfo(i, t.name, list(shape), t.type_name.lower(), scale, zero_point,
                                  bool(inline or size)))
    ops = []
    for i, op in enumerate(graph.ops):
        fused = None if op.fused_activation is None else \
            tflite_schema.ACTIVATIONS.get(op.fused_activation, f"ACTIVATION_{op.fused_activation}")
        ops.append(OpInfo(i, raw.op_name(op), list(op.inputs), list(op.outputs), fused))
    names: dict[int, str] = {}
    main = [sig for sig in raw.signatures if sig[1] == 0]
    if len(main) == 1:
        _, _, inputs, outputs = main[0]
        names = {index: name for name, index in {**inputs, **outputs}.items() if 0 <= index < len(tensors)}
    return TFLiteModel(path=path, size_bytes=raw.file_size, tensors=tensors, ops=ops,
                       inputs=list(graph.inputs), outputs=list(graph.outputs), signature_names=names)
