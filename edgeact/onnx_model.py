"""Read an .onnx model for `edgeact inspect`: nodes, QDQ pairs, inputs/outputs, opset, size.

Needs the `onnx` package (imported here, lazily): a host-side convenience, not required
to run a model on a device.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .errors import ModelLoadError, RuntimeUnavailableError


def _onnx():
    try:
        import onnx
    except ImportError:
        raise RuntimeUnavailableError("inspecting .onnx models needs the onnx package; pip install onnx") from None
    return onnx


def read_onnx(path: str | Path) -> dict:
    """The model as a dict shaped like `TFLiteModel.to_dict()`, plus opset and QDQ pairs."""
    onnx = _onnx()
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelLoadError(f"{path} is not a valid ONNX model ({str(exc).splitlines()[0][:120]}); re-export it") from None
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:
        pass  # shapes are a nicety here
    graph = model.graph
    types = {}
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        types[value.name] = (onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name, dims)
    for init in graph.initializer:
        types[init.name] = (onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name, list(init.dims))

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
