"""Read an .onnx model for `edgeact inspect`: nodes, QDQ pairs, inputs/outputs, opset, size.

Needs the `onnx` package (imported here, lazily): a host-side convenience, not required
to run a model on a device.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .errors import RuntimeUnavailableError
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
