"""Ops XNNPACK does not run in INT8, written into the calibrated model as INT8 ops it does run.

    rewritten, found = xnnpack_rewrites(calibrated)   # before quantize_calibrated
    found   # {"RELU -> DEPTHWISE_CONV_2D": 48, "AVERAGE_POOL_2D (same) -> DEPTHWISE_CONV_2D + MUL + ADD": 28, ...}

LiteRT 2.3's XNNPACK delegate takes RELU/RELU6 in float only (its VisitReluNode checks for a float
tensor), left every INT8 AVERAGE_POOL_2D to the reference kernels in trials here, and takes a
CONCATENATION of at most five inputs; each such op splits the delegated graph and runs the slow
kernel. bench/repro_xnnpack_int8.py measures it on 28x28x64 maps (2-core EPYC, 2 threads): a
standalone INT8 RELU 0.41 ms against 0.031 ms for the same graph with the RELU written as a 1x1
identity depthwise convolution with a fused ReLU; a 2x2 valid average pool 0.072 ms against
0.013 ms as a 2x2 depthwise convolution of weights 1/4. The float model runs these ops in XNNPACK,
so only the INT8 model is rewritten, and only here, in its calibrated float flatbuffer: no second
conversion, and the Keras models (the ONNX export, the float reference) keep the ops as they are.

Each rewrite computes the same function in float:
- RELU(x), RELU6(x): a depthwise 1x1 convolution with weights 1 and bias 0, the activation fused;
  its output is the op's output tensor, with the range calibration recorded for it;
- AVERAGE_POOL_2D with VALID padding (every window inside the map, so every divisor is the
  window's size): a depthwise convolution of the window's size and strides, weights 1/(h*w);
- AVERAGE_POOL_2D with SAME padding, where TensorFlow divides a border window by the n inputs it
  covers, not by h*w:

      x -> AVERAGE_POOL_2D(same) -> out
      x -> DEPTHWISE_CONV_2D(same, 1/(h*w)) -> y -> MUL(y, m) -> z -> ADD(y, z) -> out
                                                       m[i, j] = h*w / n[i, j] - 1

  so y * (1 + m) = sum / n. m is a constant [1, H, W, 1] map, 0 wherever the window is inside
  the map: there z is 0 and out is y, both exact in INT8 (0 is always representable), so only
  border values carry the MUL's and ADD's rounding. y and z are each a share of out of the same
  sign (y = out * n/(h*w), z = out * (1 - n/(h*w))), so out's calibrated range holds both and they
  get it; the ADD then adds two tensors of one scale, which XNNPACK's INT8 ADD takes. With a fused
  activation out's range is after it, so y and z get the input's range instead (an average lies
  within it). When every window is inside the map (a 1x1 pool, say), the depthwise alone does it;
- CONCATENATION of more than five inputs: the first five are concatenated into a tensor of the
  output's calibrated range (the output's scale, so the outer concatenation copies those values
  unchanged), and that with the rest, as many times as it takes.
Only 4-D NHWC tensors with a known shape are rewritten. The INT8 depthwise weights are exact:
1 and 1/(h*w) are each channel's largest weight, so per-channel quantization stores them as 127 *
scale. An op whose output has no calibrated range is left as it is.
"""
from __future__ import annotations

import numpy as np

from converters.pool_windows import same_padding, window_counts

_FLOAT32 = 0
_ADD, _AVERAGE_POOL, _CONCATENATION, _DEPTHWISE, _MUL, _RELU, _RELU6 = 0, 1, 2, 4, 18, 19, 21  # BuiltinOperator
_ACT_NONE, _ACT_RELU, _ACT_RELU6 = 0, 1, 3  # ActivationFunctionType
_SAME, _VALID = 0, 1  # Padding
_DEPTHWISE_OPTIONS, _CONCATENATION_OPTIONS, _ADD_OPTIONS, _MUL_OPTIONS = 2, 10, 11, 21  # BuiltinOptions
XNNPACK_CONCATENATION_INPUTS = 5  # LiteRT 2.3's delegate: five inputs delegated, six not (tested)
RELU_KEY = "RELU -> DEPTHWISE_CONV_2D"
POOL_KEY = "AVERAGE_POOL_2D -> DEPTHWISE_CONV_2D"
SAME_POOL_KEY = "AVERAGE_POOL_2D (same) -> DEPTHWISE_CONV_2D + MUL + ADD"
CONCAT_KEY = f"CONCATENATION (over {XNNPACK_CONCATENATION_INPUTS} inputs) -> nested CONCATENATION"


def _builtin(code) -> int:
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def _code(op_codes, op) -> int:
    return _builtin(op_codes[op.opcodeIndex])


class _Graph:
    """The model object and its main subgraph, with what the rewrites add to them."""

    def __init__(self, model, schema):
        self.model, self.graph, self.schema = model, model.subgraphs[0], schema
        self._codes: dict[int, int] = {}

    def opcode(self, builtin: int) -> int:
        if builtin not in self._codes:
            for i, code in enumerate(self.model.operatorCodes):
                if _builtin(code) == builtin:
                    self._codes[builtin] = i
                    break
            else:
                code = self.schema.OperatorCodeT()
                code.builtinCode = code.deprecatedBuiltinCode = builtin
                code.version = 1
                self.model.operatorCodes.append(code)
                self._codes[builtin] = len(self.model.operatorCodes) - 1
        return self._codes[builtin]

    def constant(self, name: str, value: np.ndarray) -> int:
        buffer = self.schema.BufferT()
        buffer.data = np.frombuffer(np.ascontiguousarray(value, np.float32).tobytes(), np.uint8)
        self.model.buffers.append(buffer)
        return self._tensor(name, value.shape, len(self.model.buffers) - 1)

    def activation(self, name: str, shape, like: int) -> int:
        """A new float tensor of `shape` with the calibrated min/max of tensor `like`."""
        empty = self.schema.BufferT()
        self.model.buffers.append(empty)
        index = self._tensor(name, shape, len(self.model.buffers) - 1)
        params = self.schema.QuantizationParametersT()
        params.min, params.max = self.range(like)
        self.graph.tensors[index].quantization = params
        return index

    def _tensor(self, name: str, shape, buffer: int) -> int:
        tensor = self.schema.TensorT()
        tensor.name, tensor.type, tensor.buffer = name, _FLOAT32, buffer
        tensor.shape = np.array(shape, np.int32)
        self.graph.tensors.append(tensor)
        return len(self.graph.tensors) - 1

    def shape(self, index: int) -> list[int] | None:
        """A float 4-D tensor's known shape, else None."""
        tensor = self.graph.tensors[index]
        shape = None if tensor.shape is None else [int(d) for d in tensor.shape]
        if tensor.type != _FLOAT32 or shape is None or len(shape) != 4 or min(shape) <= 0:
            return None
        return shape

    def range(self, index: int):
        params = self.graph.tensors[index].quantization
        if params is None or params.min is None or params.max is None or len(params.min) != 1:
            return None
        return np.array(params.min, np.float32), np.array(params.max, np.float32)

    def name(self, index: int) -> str:
        name = self.graph.tensors[index].name
        return name.decode() if isinstance(name, bytes) else str(name)

    def op(self, builtin: int, inputs: list[int], outputs: list[int], options_type: int, options):
        op = self.schema.OperatorT()
        op.opcodeIndex = self.opcode(builtin)
        op.inputs, op.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        return op


def _depthwise(g: _Graph, op, x: int, kernel: np.ndarray, strides, padding: int, activation: int, name: str):
    """`op` made into a depthwise convolution of `kernel` ([1, h, w, C]) on tensor `x`, in place."""
    weights = g.constant(f"{name}/edgeact_depthwise_weights", kernel)
    bias = g.constant(f"{name}/edgeact_depthwise_bias", np.zeros(kernel.shape[-1], np.float32))
    options = g.schema.DepthwiseConv2DOptionsT()
    options.padding, options.strideH, options.strideW = padding, strides[0], strides[1]
    options.depthMultiplier, options.dilationHFactor, options.dilationWFactor = 1, 1, 1
    options.fusedActivationFunction = activation
    op.opcodeIndex = g.opcode(_DEPTHWISE)
    op.inputs = np.array([x, weights, bias], np.int32)
    op.builtinOptionsType, op.builtinOptions = _DEPTHWISE_OPTIONS, options
    return op


def same_pool_counts(size: int, window: int, stride: int) -> np.ndarray:
    """How many inputs each output position of a SAME-padded window covers along one axis."""
    return window_counts(size, window, stride, *same_padding(size, window, stride))


def _relu(g: _Graph, op, kind: int) -> list | None:
    x = int(op.inputs[0])
    shape = g.shape(x)
    if shape is None:
        return None
    _depthwise(g, op, x, np.ones((1, 1, 1, shape[-1]), np.float32), (1, 1), _VALID,
               _ACT_RELU if kind == _RELU else _ACT_RELU6, g.name(int(op.outputs[0])))
    return [op]


def _pool(g: _Graph, op) -> tuple[str, list] | None:
    x, out = int(op.inputs[0]), int(op.outputs[0])
    shape, out_shape, pool = g.shape(x), g.shape(out), op.builtinOptions
    activation = None if pool is None else int(pool.fusedActivationFunction)
    if shape is None or out_shape is None or activation not in (_ACT_NONE, _ACT_RELU, _ACT_RELU6):
        return None
    height, width = int(pool.filterHeight), int(pool.filterWidth)
    strides, padding, name = (int(pool.strideH), int(pool.strideW)), int(pool.padding), g.name(out)
    kernel = np.full((1, height, width, shape[-1]), 1.0 / (height * width), np.float32)
    if padding == _VALID:
        return POOL_KEY, [_depthwise(g, op, x, kernel, strides, _VALID, activation, name)]
    counts = np.outer(same_pool_counts(shape[1], height, strides[0]), same_pool_counts(shape[2], width, strides[1]))
    if padding != _SAME or counts.shape != tuple(out_shape[1:3]):
        return None
    if np.all(counts == height * width):
        return SAME_POOL_KEY, [_depthwise(g, op, x, kernel, strides, _SAME, activation, name)]
    like = out if activation == _ACT_NONE else x
    if g.range(out) is None or g.range(like) is None:
        return None
    y = g.activation(f"{name}/edgeact_window_mean", out_shape, like)
    z = g.activation(f"{name}/edgeact_border_share", out_shape, like)
    m = g.constant(f"{name}/edgeact_border_map", (height * width / counts - 1.0).astype(np.float32)[None, :, :, None])
    depthwise = _depthwise(g, op, x, kernel, strides, _SAME, _ACT_NONE, name)
    depthwise.outputs = np.array([y], np.int32)
    mul_options, add_options = g.schema.MulOptionsT(), g.schema.AddOptionsT()
    mul_options.fusedActivationFunction, add_options.fusedActivationFunction = _ACT_NONE, activation
    return SAME_POOL_KEY, [depthwise, g.op(_MUL, [y, m], [z], _MUL_OPTIONS, mul_options),
                           g.op(_ADD, [y, z], [out], _ADD_OPTIONS, add_options)]


def _concatenation(g: _Graph, op) -> list | None:
    inputs, out = [int(i) for i in op.inputs], int(op.outputs[0])
    options, out_shape = op.builtinOptions, g.shape(out)
    if (len(inputs) <= XNNPACK_CONCATENATION_INPUTS or options is None or out_shape is None
            or int(options.fusedActivationFunction) != _ACT_NONE or g.range(out) is None):
        return None
    shapes = [g.shape(i) for i in inputs]
    if any(s is None for s in shapes):
        return None
    axis = int(options.axis) % 4
    ops = []
    while len(inputs) > XNNPACK_CONCATENATION_INPUTS:
        head, shape = inputs[:XNNPACK_CONCATENATION_INPUTS], list(shapes[0])
        shape[axis] = sum(s[axis] for s in shapes[:XNNPACK_CONCATENATION_INPUTS])
        joined = g.activation(f"{g.name(out)}/edgeact_concatenation_{len(ops)}", shape, out)
        inner = g.schema.ConcatenationOptionsT()
        inner.axis, inner.fusedActivationFunction = options.axis, _ACT_NONE
        ops.append(g.op(_CONCATENATION, head, [joined], _CONCATENATION_OPTIONS, inner))
        inputs = [joined] + inputs[XNNPACK_CONCATENATION_INPUTS:]
        shapes = [shape] + shapes[XNNPACK_CONCATENATION_INPUTS:]
    op.inputs = np.array(inputs, np.int32)
    return ops + [op]


def xnnpack_rewrites(calibrated: bytes) -> tuple[bytes, dict[str, int]]:
    """The calibrated float model with its RELU/RELU6, AVERAGE_POOL_2D and over-five-input
    CONCATENATION ops written as INT8 ops XNNPACK runs, and how many of each (module docstring);
    the model as it is when there are none."""
    from edgeact.formats.flatbuf import Buffer
    from edgeact.formats.tflite_schema import SLOTS

    codes = Buffer(calibrated).root().tables(SLOTS["Model"]["OperatorCodes"], "operator codes")
    wanted = {_RELU, _RELU6, _AVERAGE_POOL, _CONCATENATION}
    if not any(max(int(c.scalar(SLOTS["OperatorCode"]["BuiltinCode"], "i32")),
                   int(c.scalar(SLOTS["OperatorCode"]["DeprecatedBuiltinCode"], "i8"))) in wanted for c in codes):
        return calibrated, {}
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    g = _Graph(flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated)), schema)
    found: dict[str, int] = {}
    operators = []
    for op in g.graph.operators:
        kind = _code(g.model.operatorCodes, op)
        done = None
        if kind in wanted and op.inputs is not None and len(op.inputs) >= 1:
            if kind in (_RELU, _RELU6):
                done = (RELU_KEY, _relu(g, op, kind))
            elif kind == _AVERAGE_POOL:
                done = _pool(g, op)
            else:
                done = (CONCAT_KEY, _concatenation(g, op))
        if done is None or done[1] is None:
            operators.append(op)
            continue
        found[done[0]] = found.get(done[0], 0) + 1
        operators += done[1]
    if not found:
        return calibrated, {}
    g.graph.operators = operators
    order = (RELU_KEY, POOL_KEY, SAME_POOL_KEY, CONCAT_KEY)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(g.model)), {k: found[k] for k in order if k in found}


__all__ = ["CONCAT_KEY", "POOL_KEY", "RELU_KEY", "SAME_POOL_KEY", "XNNPACK_CONCATENATION_INPUTS",
           "same_pool_counts", "xnnpack_rewrites"]
