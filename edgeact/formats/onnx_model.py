"""Read an .onnx model for `edgeact inspect`: nodes, QDQ pairs, inputs/outputs, opset, size.

Needs the `onnx` package (imported here, lazily): a host-side convenience, not required
to run a model on a device.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from edgeact.config import ONNX_WEIGHT_LEVELS
from edgeact.errors import RuntimeUnavailableError

from .validate_onnx import load_checked


def _onnx():
    try:
        import onnx
    except ImportError:
        raise RuntimeUnavailableError("inspecting .onnx models needs the onnx package; pip install onnx") from None
    return onnx


def _dtype_name(onnx, elem_type: int) -> str:
    """numpy's name for an ONNX element type; ONNX's own for types numpy lacks (bfloat16, float8, int4)."""
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):
        return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type in onnx.TensorProto.DataType.values() \
            else f"type_{elem_type}"


def weight_levels(model) -> int | None:
    """The symmetric range of a QDQ model's int8 weights, one of config.ONNX_WEIGHT_LEVELS: 64 for
    ORT's 7-bit `reduce_range` (convert's default), 127 for full range; None without int8 weights.
    Per-channel symmetric rounding puts each channel's largest weight on the edge of the range, so
    the largest magnitude is the range. `model` is an onnx ModelProto."""
    from onnx import TensorProto, numpy_helper

    seven, full = ONNX_WEIGHT_LEVELS[7], ONNX_WEIGHT_LEVELS[8]
    peaks = [int(np.abs(numpy_helper.to_array(t).astype(np.int16)).max()) for t in model.graph.initializer
             if t.data_type == TensorProto.INT8 and len(t.dims) >= 2 and np.prod(t.dims) > 0]
    if not peaks:
        return None
    return seven if max(peaks) <= seven else full


def saturation_note(path: str | Path) -> str | None:
    """A note when ONNX Runtime on this host computes `path` wrongly: full-range int8 weights on an
    x86-64 CPU without VNNI, where ORT's U8S8 kernels saturate (edgeact.cpu_features). None when
    the model is exact here, or when the `onnx` package or the CPU flags are missing to tell."""
    from edgeact.cpu_features import u8s8_saturates

    from .validate_onnx import onnx_available

    if not u8s8_saturates() or not onnx_available():
        return None
    if weight_levels(load_checked(Path(path))) != ONNX_WEIGHT_LEVELS[8]:
        return None
    return (f"{path} has full-range int8 weights, which ONNX Runtime's U8S8 kernels saturate on "
            "this x86-64 CPU without VNNI: its accuracy here is lower than on an ARM device or a VNNI CPU. "
            "Convert with --onnx-weight-bits 7 (or --target x86-avx2) for a model exact everywhere, or set ORT's "
            "session option session.x64quantprecision=1 to compute it exactly here")


def read_onnx(path: str | Path) -> dict:
    """The model as a dict shaped like `TFLiteModel.to_dict()`, plus opset and QDQ pairs."""
    onnx = _onnx()
    path = Path(path)
    model = load_checked(path)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        pass  # shapes are a nicety here
    graph = model.graph
    types = {}
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        types[value.name] = (_dtype_name(onnx, tensor.elem_type), dims)
    for init in graph.initializer:
        types[init.name] = (_dtype_name(onnx, init.data_type), list(init.dims))

    def tensor(name: str) -> dict:
        dtype, shape = types.get(name, ("?", []))
        return {"name": name, "dtype": dtype, "shape": shape}

    producers = {out: node for node in graph.node for out in node.output}
    qdq_pairs = sum(1 for node in graph.node if node.op_type == "DequantizeLinear"
                    and node.input[0] in producers and producers[node.input[0]].op_type == "QuantizeLinear")
    initializers = {i.name for i in graph.initializer}
    counts = Counter(node.op_type for node in graph.node)
    return {
        "format": "onnx",
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [tensor(i.name) for i in graph.input if i.name not in initializers],
        "outputs": [tensor(o.name) for o in graph.output],
        "op_counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "qdq_pairs": qdq_pairs,
        "ops": [{"index": i, "type": node.op_type, "name": node.name, "fused_activation": None,
                 "inputs": [tensor(n) for n in node.input if n], "outputs": [tensor(n) for n in node.output]}
                for i, node in enumerate(graph.node)],
    }
