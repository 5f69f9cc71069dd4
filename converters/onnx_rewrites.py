"""Rewrites of the float ONNX graph (after tf2onnx, before quantization) that keep INT8 on integer kernels.

    ReduceMean(x, axes=[2, 3], keepdims=1)    x: (N, C, H, W)
becomes
    GlobalAveragePool(x)

Why: Keras' GlobalAveragePooling2D(keepdims=True) (every squeeze-excite block) is exported by
tf2onnx as a ReduceMean over H and W. ONNX Runtime's quantizer has no rule for ReduceMean, so
it stays a float node between DequantizeLinear and QuantizeLinear (10 of them in an INT8
MobileNetV3Small); GlobalAveragePool is quantized and ORT runs it as QLinearGlobalAveragePool.
Same function: the mean over the spatial axes, kept as (N, C, 1, 1).

Guards (the node stays): a 4-D input with known rank; axes exactly {2, 3} (or {-2, -1});
keepdims 1; noop_with_empty_axes unset. Axes are read from the attribute (opset < 18) or a
constant input (opset 18+).
"""
from __future__ import annotations

from pathlib import Path


def _axes(node, initializers: dict) -> list[int] | None:
    for attr in node.attribute:
        if attr.name == "axes":
            return list(attr.ints)
    if len(node.input) > 1 and node.input[1] in initializers:
        from onnx import numpy_helper

        return [int(a) for a in numpy_helper.to_array(initializers[node.input[1]]).ravel()]
    return None


def _attr(node, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _rank(graph, name: str) -> int | None:
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        if value.name == name and value.type.tensor_type.HasField("shape"):
            return len(value.type.tensor_type.shape.dim)
    return None


def reduce_mean_to_global_pool(path: str | Path) -> list[str]:
    """Rewrite, in place, every spatial keepdims ReduceMean of the ONNX file; return the rewritten node names."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    changed = []
    for index, node in enumerate(graph.node):
        if node.op_type != "ReduceMean" or _attr(node, "keepdims", 1) != 1 or _attr(node, "noop_with_empty_axes", 0):
            continue
        if _rank(inferred.graph, node.input[0]) != 4:
            continue
        axes = _axes(node, initializers)
        if axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            continue
        graph.node[index].CopyFrom(helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output),
                                                    name=node.name))
        changed.append(node.name)
    if changed:
        onnx.save(model, str(path))
    return changed
