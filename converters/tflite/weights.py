"""The kernels converters.rounding chose, written into the calibrated float .tflite before it is quantized.

    calibrated, _ = calibrate_float(float_model, calibration)         # the unchanged model's ranges
    snapped, found = snap_buffers(calibrated, job.weight_rounding.changes(127))
    int8 = quantize_calibrated(snapped, io_type)                        # TFLite's own rounding: the chosen integers

The rounding was chosen against the activation grids of the model as it is; calibrating the
snapped model instead would move each grid a little (its min/max change with the weights), and
the rounding error of an input, a deterministic function of that grid, with it. So the model
is calibrated as it is, and only its float kernels (and corrected biases) are replaced between
calibration and quantization, as `converters.onnx.weights` does through ORT's range cache.

Each kernel is found by content (converters.rounding.placement); a bias is the third input of
the op reading that kernel, given its own buffer when the converter shared one between tensors
(identical constants, zero biases among them, are deduplicated). Whatever is found nowhere is
reported and keeps the calibrated values.
"""
from __future__ import annotations

import numpy as np

from converters.rounding.placement import arrange, core, placed

_FLOAT32 = 0  # TensorType.FLOAT32


def _constants(model, graph) -> dict[int, np.ndarray]:
    found = {}
    for index, tensor in enumerate(graph.tensors):
        buffer = model.buffers[tensor.buffer] if 0 <= tensor.buffer < len(model.buffers) else None
        if tensor.type == _FLOAT32 and buffer is not None and buffer.data is not None and len(buffer.data):
            shape = () if tensor.shape is None else tuple(int(d) for d in tensor.shape)
            found[index] = np.frombuffer(bytes(buffer.data), np.float32).reshape(shape)
    return found


def _write(model, graph, index: int, value: np.ndarray) -> None:
    from tensorflow.lite.python import schema_py_generated as schema

    tensor = graph.tensors[index]
    data = np.frombuffer(np.ascontiguousarray(value, np.float32).tobytes(), np.uint8)
    shared = sum(1 for g in model.subgraphs for t in g.tensors if t.buffer == tensor.buffer) > 1
    if shared:
        buffer = schema.BufferT()
        buffer.data = data
        model.buffers.append(buffer)
        tensor.buffer = len(model.buffers) - 1
    else:
        model.buffers[tensor.buffer].data = data


def snap_buffers(calibrated: bytes, changes: list) -> tuple[bytes, dict]:
    """The calibrated model with each change's kernel and bias written in; what was and was not found."""
    if not changes:
        return calibrated, {"snapped": 0, "biases": 0, "unmatched": []}
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = model.subgraphs[0]
    arrays = _constants(model, graph)
    snapped, biases, unmatched = 0, 0, []
    for change, index, order in placed(changes, arrays, unmatched):
        value = arrange(change.new_kernel, order, arrays[index].shape)
        _write(model, graph, index, value)
        arrays[index] = value
        snapped += 1
        if change.new_bias is None:
            continue
        readers = [op for op in graph.operators if len(op.inputs) > 2 and int(op.inputs[1]) == index]
        bias = int(readers[0].inputs[2]) if len(readers) == 1 else -1
        if bias in arrays and np.array_equal(core(arrays[bias]), core(change.bias)):
            new_bias = change.new_bias.reshape(arrays[bias].shape)
            _write(model, graph, bias, new_bias)
            arrays[bias] = new_bias
            biases += 1
        else:
            unmatched.append(f"{change.layer} (bias)")
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), {
        "snapped": snapped, "biases": biases, "unmatched": unmatched}


__all__ = ["snap_buffers"]
