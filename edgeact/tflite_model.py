"""Read a .tflite flatbuffer: operators, tensors, fused activations, quantization.

Uses the TFLite flatbuffer schema that ships with the runtime (ai-edge-litert) or with
TensorFlow, so it works on a device without TensorFlow. Reading the file ourselves,
before an interpreter sees it, also turns a truncated or corrupt file into a clear
error instead of a crash inside native code.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelLoadError, RuntimeUnavailableError

_SCHEMA_MODULES = ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated")
_TFLITE_IDENTIFIER = b"TFL3"
FLOAT_TYPES = ("float32", "float16")


def _schema():
    for name in _SCHEMA_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise RuntimeUnavailableError(
        "reading .tflite files needs the TFLite flatbuffer schema; pip install ai-edge-litert"
    )


def _enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


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
            "inputs": [tensor(i) for i in self.inputs],
            "outputs": [tensor(i) for i in self.outputs],
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


def schema_available() -> bool:
    try:
        _schema()
    except RuntimeUnavailableError:
        return False
    return True


def check_tflite_file(path: Path | str) -> None:
    """Before an interpreter sees a file: parse it fully where the schema is installed, else the
    cheap structural check (tflite-runtime ships no schema; a device gets files whose hash the
    host already checked)."""
    if schema_available():
        read_tflite(path)
    else:
        _read_model_bytes(Path(path))


def _read_model_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read model {path}: {exc.strerror}; check the path") from None
    check_tflite_bytes(data, path)
    return data


def read_tflite(path: Path | str) -> TFLiteModel:
    """Parse a .tflite file; raise ModelLoadError if it is not a complete, valid model."""
    path = Path(path)
    data = _read_model_bytes(path)
    schema = _schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
        parsed = _parse(schema, model, path, len(data))
    except ModelLoadError:
        raise
    except Exception:  # flatbuffers raises IndexError/struct.error on truncated buffers
        raise ModelLoadError(f"{path} is a corrupt or truncated TFLite model; re-export it") from None
    return parsed


def _parse(schema, model, path: Path, size: int) -> TFLiteModel:
    if not model.subgraphs:
        raise ModelLoadError(f"{path} holds no subgraph; re-export it")
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    act_names = _enum_names(schema.ActivationFunctionType)
    graph = model.subgraphs[0]
    buffers = model.buffers or []
    tensors = []
    for i, t in enumerate(graph.tensors or []):
        q = t.quantization
        scale = [float(s) for s in np.ravel(q.scale)] if q is not None and q.scale is not None else []
        zp = [int(z) for z in np.ravel(q.zeroPoint)] if q is not None and q.zeroPoint is not None else []
        buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
        constant = buf is not None and (buf.data is not None and len(buf.data) > 0 or (buf.size or 0) > 0)
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        shape = [int(d) for d in np.ravel(t.shapeSignature if t.shapeSignature is not None else t.shape)] \
            if t.shape is not None else []
        tensors.append(TensorInfo(i, name, shape, type_names.get(t.type, str(t.type)).lower(), scale, zp, constant))
    ops = []
    for i, op in enumerate(graph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = op_names.get(builtin, f"OP_{builtin}")
        if name == "CUSTOM" and code.customCode:
            name = f"CUSTOM:{code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode}"
        options = op.builtinOptions
        fused = None
        if options is not None and hasattr(options, "fusedActivationFunction"):
            fused = act_names.get(options.fusedActivationFunction, "NONE")
        ops.append(OpInfo(i, name, [int(x) for x in np.ravel(op.inputs)] if op.inputs is not None else [],
                          [int(x) for x in np.ravel(op.outputs)] if op.outputs is not None else [], fused))
    return TFLiteModel(
        path=path, size_bytes=size, tensors=tensors, ops=ops,
        inputs=[int(x) for x in np.ravel(graph.inputs)], outputs=[int(x) for x in np.ravel(graph.outputs)],
    )
