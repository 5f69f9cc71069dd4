"""The kernels converters.rounding chose, written into the float ONNX model ORT's quantizer reads.

tf2onnx writes each Keras kernel as an initializer, transposed (Conv2D HWIO -> OIHW, a depthwise
HWC1 -> C1HW, Conv1D with an added unit axis) but with its float values unchanged. Each changed
kernel is found by content: the initializer equal to the Keras kernel under some transposition of
its non-unit axes, exactly one. The snapped kernel goes there in the same transposition, so
`quantize_static`'s own round-to-nearest (per channel, symmetric) gives the integers chosen.
A changed bias goes into the node reading that kernel (Conv and Gemm input 2), or into the Add
after a MatMul; a zero bias the exporter dropped is added back (as Conv's input 2; a 2-D MatMul
becomes a Gemm with it), which ORT's quantizer makes the int32 bias. A kernel or bias found
nowhere, or twice, is left as it was and reported.

The model is calibrated before the kernels go in, into ORT's range cache, and quantized from
that cache after (converters.onnx.exporter.quantize_onnx): the rounding was chosen for the
activation grids of the model as it is (see converters.tflite.weights).

    found = snap_initializers(prepared_path, job.onnx_weight_changes)   # {"snapped": n, "unmatched": [...]}
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.rounding.placement import arrange, core, placed


def _bias_name(graph, weight: str, bias: np.ndarray, arrays: dict[str, np.ndarray], inits: dict) -> str | None:
    """The initializer holding the bias of the node reading `weight`. A zero bias tf2onnx or ORT's
    optimiser dropped (a Conv without input 2, a MatMul without its Add) gets one, added here."""
    from onnx import numpy_helper

    readers = [n for n in graph.node if weight in n.input]
    if len(readers) != 1:
        return None
    node = readers[0]

    def same(name: str) -> bool:
        return name in arrays and arrays[name].size == bias.size and np.array_equal(core(arrays[name]), core(bias))

    dropped = not np.any(bias)
    if node.op_type in ("Conv", "Gemm"):
        if len(node.input) > 2 and node.input[2]:
            return node.input[2] if same(node.input[2]) else None
        if not dropped:
            return None
        name = f"{weight}__edgeact_bias"
        _add_initializer(graph, inits, arrays, name, np.zeros(bias.size, np.float32), numpy_helper)
        if len(node.input) > 2:
            node.input[2] = name
        else:
            node.input.append(name)
        return name
    if node.op_type == "MatMul":
        after = [n for n in graph.node if n.op_type == "Add" and node.output[0] in n.input]
        if len(after) == 1:
            return next((name for name in after[0].input if same(name)), None)
        if after or not dropped or _rank(graph, node.input[0]) != 2:
            return None
        # A Gemm computes the MatMul and takes the bias, under the same output name: the range ORT
        # cached for that tensor still applies (a new tensor would have none).
        name = f"{weight}__edgeact_bias"
        _add_initializer(graph, inits, arrays, name, np.zeros(bias.size, np.float32), numpy_helper)
        node.op_type = "Gemm"
        node.input.append(name)
        return name
    return None


def _rank(graph, tensor: str) -> int | None:
    """The rank shape inference recorded for `tensor` (quant_pre_process runs it), None when unknown."""
    for info in list(graph.value_info) + list(graph.input):
        if info.name == tensor and info.type.tensor_type.HasField("shape"):
            return len(info.type.tensor_type.shape.dim)
    return None


def _add_initializer(graph, inits: dict, arrays: dict, name: str, value: np.ndarray, numpy_helper) -> None:
    graph.initializer.append(numpy_helper.from_array(value, name))
    inits[name] = graph.initializer[-1]
    arrays[name] = value


def snap_initializers(path: Path, changes: list) -> dict:
    """Write each change's kernel and bias into the model at `path` (in place); what was and was not found."""
    if not changes:
        return {"snapped": 0, "biases": 0, "unmatched": []}
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    arrays = {name: numpy_helper.to_array(i) for name, i in inits.items()}
    snapped, biases, unmatched = 0, 0, []
    for change, name, order in placed(changes, arrays, unmatched):
        bias_name = None
        if change.new_bias is not None:
            bias_name = _bias_name(graph, name, change.bias, arrays, inits)
            if bias_name is None:
                unmatched.append(f"{change.layer} (bias)")
        new = arrange(change.new_kernel, order, arrays[name].shape)
        inits[name].CopyFrom(numpy_helper.from_array(new, name))
        arrays[name] = new
        snapped += 1
        if bias_name is not None:
            value = change.new_bias.reshape(arrays[bias_name].shape).astype(np.float32)
            inits[bias_name].CopyFrom(numpy_helper.from_array(value, bias_name))
            arrays[bias_name] = value
            biases += 1
    onnx.save(model, str(path))
    return {"snapped": snapped, "biases": biases, "unmatched": unmatched}


__all__ = ["snap_initializers"]
