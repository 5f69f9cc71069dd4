"""Ops XNNPACK runs in float only, written into the calibrated model as the INT8 ops they are.

    rewritten, found = depthwise_rewrites(calibrated)   # before quantize_calibrated
    found   # {"RELU -> DEPTHWISE_CONV_2D": 48, "AVERAGE_POOL_2D -> DEPTHWISE_CONV_2D": 3}

LiteRT 2.3's XNNPACK delegate takes RELU/RELU6 in float only (its VisitReluNode checks for a float
tensor) and left every INT8 AVERAGE_POOL_2D to the reference kernels in trials here; each such op
splits the delegated graph and runs the slow kernel. bench/repro_xnnpack_int8.py measures it on
28x28x64 maps (2-core EPYC, 2 threads): a standalone INT8 RELU 0.41 ms against 0.031 ms for the
same graph with the RELU written as a 1x1 identity depthwise convolution with a fused ReLU; a 2x2
valid average pool 0.072 ms against 0.013 ms as a 2x2 depthwise convolution of weights 1/4. The
float model runs both ops in XNNPACK, so only the INT8 model is rewritten, and only here, in its
calibrated float flatbuffer: no second conversion, and the Keras models (the ONNX export, the
float reference) keep the ops as they are.

Each rewrite computes the same function in float:
- RELU(x), RELU6(x): a depthwise 1x1 convolution with weights 1 and bias 0, the activation fused;
  its output is the op's output tensor, with the range calibration recorded for it;
- AVERAGE_POOL_2D with VALID padding (every window inside the map, so every divisor is the
  window's size): a depthwise convolution of the window's size and strides, weights 1/(h*w).
  SAME padding is left alone: TensorFlow divides a border window by the inputs it covers, which
  no fixed kernel does.
Only 4-D NHWC tensors with a known channel count are rewritten. The INT8 weights are exact: 1 and
1/(h*w) are each channel's largest weight, so per-channel quantization stores them as 127 * scale.
"""
from __future__ import annotations

import numpy as np

_FLOAT32 = 0
_RELU, _RELU6, _AVERAGE_POOL, _DEPTHWISE = 19, 21, 1, 4  # BuiltinOperator
_ACT_NONE, _ACT_RELU, _ACT_RELU6 = 0, 1, 3  # ActivationFunctionType
_VALID = 1  # Padding
_POOL_OPTIONS, _DEPTHWISE_OPTIONS = 5, 2  # BuiltinOptions
RELU_KEY, POOL_KEY = "RELU -> DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D -> DEPTHWISE_CONV_2D"


def _code(op_codes, op) -> int:
    code = op_codes[op.opcodeIndex]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _depthwise_index(model, schema) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) == _DEPTHWISE:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = _DEPTHWISE
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _constant(model, graph, schema, name: str, value: np.ndarray) -> int:
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(value, np.float32).tobytes(), np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name, tensor.type, tensor.buffer = name, _FLOAT32, len(model.buffers) - 1
    tensor.shape = np.array(value.shape, np.int32)
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _channels(graph, index: int) -> int | None:
    tensor = graph.tensors[index]
    shape = None if tensor.shape is None else [int(d) for d in tensor.shape]
    if tensor.type != _FLOAT32 or shape is None or len(shape) != 4 or shape[-1] <= 0:
        return None
    return shape[-1]


def _as_depthwise(model, graph, schema, op, depthwise: int, kernel: np.ndarray, strides: tuple[int, int],
                  activation: int, name: str) -> None:
    channels = kernel.shape[-1]
    weights = _constant(model, graph, schema, f"{name}/edgeact_depthwise_weights", kernel)
    bias = _constant(model, graph, schema, f"{name}/edgeact_depthwise_bias", np.zeros(channels, np.float32))
    options = schema.DepthwiseConv2DOptionsT()
    options.padding, options.strideH, options.strideW = _VALID, strides[0], strides[1]
    options.depthMultiplier, options.dilationHFactor, options.dilationWFactor = 1, 1, 1
    options.fusedActivationFunction = activation
    op.opcodeIndex = depthwise
    op.inputs = np.array([int(op.inputs[0]), weights, bias], np.int32)
    op.builtinOptionsType, op.builtinOptions = _DEPTHWISE_OPTIONS, options


def depthwise_rewrites(calibrated: bytes) -> tuple[bytes, dict[str, int]]:
    """The calibrated float model with its RELU/RELU6 and valid AVERAGE_POOL_2D ops written as
    depthwise convolutions, and how many of each (module docstring); the model as it is when none."""
    from edgeact.formats.flatbuf import Buffer
    from edgeact.formats.tflite_schema import SLOTS

    codes = Buffer(calibrated).root().tables(SLOTS["Model"]["OperatorCodes"], "operator codes")
    wanted = {_RELU, _RELU6, _AVERAGE_POOL}
    if not any(max(int(c.scalar(SLOTS["OperatorCode"]["BuiltinCode"], "i32")),
                   int(c.scalar(SLOTS["OperatorCode"]["DeprecatedBuiltinCode"], "i8"))) in wanted for c in codes):
        return calibrated, {}
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = model.subgraphs[0]
    found = {RELU_KEY: 0, POOL_KEY: 0}
    depthwise = None
    for op in list(graph.operators):
        kind = _code(model.operatorCodes, op)
        if kind not in wanted or op.inputs is None or len(op.inputs) < 1:
            continue
        channels = _channels(graph, int(op.inputs[0]))
        if channels is None:
            continue
        name = graph.tensors[int(op.outputs[0])].name
        name = name.decode() if isinstance(name, bytes) else str(name)
        if kind in (_RELU, _RELU6):
            depthwise = _depthwise_index(model, schema) if depthwise is None else depthwise
            _as_depthwise(model, graph, schema, op, depthwise, np.ones((1, 1, 1, channels), np.float32), (1, 1),
                          _ACT_RELU if kind == _RELU else _ACT_RELU6, name)
            found[RELU_KEY] += 1
            continue
        pool = op.builtinOptions
        if pool is None or int(pool.padding) != _VALID or int(pool.fusedActivationFunction) not in (
                _ACT_NONE, _ACT_RELU, _ACT_RELU6):
            continue
        height, width = int(pool.filterHeight), int(pool.filterWidth)
        depthwise = _depthwise_index(model, schema) if depthwise is None else depthwise
        kernel = np.full((1, height, width, channels), 1.0 / (height * width), np.float32)
        _as_depthwise(model, graph, schema, op, depthwise, kernel, (int(pool.strideH), int(pool.strideW)),
                      int(pool.fusedActivationFunction), name)
        found[POOL_KEY] += 1
    found = {k: v for k, v in found.items() if v}
    if not found:
        return calibrated, {}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), found


__all__ = ["POOL_KEY", "RELU_KEY", "depthwise_rewrites"]
