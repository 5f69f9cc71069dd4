"""Per-layer error of an INT8 .tflite against its float .tflite, tensor by tensor.

Both models run in LiteRT with `experimental_preserve_all_tensors=True` and without the
default XNNPACK delegate: a delegated subgraph keeps its intermediate tensors to itself, so
they would read as zeros. The numbers are therefore those of TFLite's builtin int8 kernels;
XNNPACK's can round a little differently (0.1 dB on a MEAN in the tests). The TFLite
converter names each op's output after the TensorFlow ops it came from
("tiny_1/c1_1/Relu;tiny_1/c1_1/convolution"), the same in the float and the INT8 model
converted from the same Keras model, so tensors are matched by name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.job import verify_threads
from edgeact.errors import InputError, ModelLoadError, first_line
from edgeact.quiet import native_output_captured
from edgeact.report.layer_errors import LayerError

from .measure import ErrorAccumulator, QuantGrid, dequantize, keras_layer_name, make_layer_error

_INT_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int16): (-32768, 32767)}
# Ops whose output is the same tensor re-typed, not a layer's work.
_SKIPPED_OPS = {"QUANTIZE", "DEQUANTIZE", "DELEGATE"}


def open_interpreter(model: str | Path | bytes):
    """A LiteRT interpreter that keeps every intermediate tensor readable after invoke().

    On every core: the builtin kernels (ruy's GEMM under CONV_2D, FULLY_CONNECTED) split their
    work over the interpreter's threads, and LiteRT's default is one.
    """
    from edgeact.runtime.tflite import tflite_backend

    backend = tflite_backend()
    kwargs = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    kwargs["num_threads"] = verify_threads()
    if backend.op_resolver is not None:
        kwargs["experimental_op_resolver_type"] = backend.op_resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        with native_output_captured():
            interpreter = backend.interpreter(experimental_preserve_all_tensors=True, **kwargs)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        name = "the model" if isinstance(model, (bytes, bytearray)) else str(model)
        raise ModelLoadError(f"cannot load {name} for per-layer error: {first_line(exc)}") from None
    return interpreter


def quantized_outputs(interpreter) -> list[tuple[int, str, int, int, QuantGrid]]:
    """(op position, op name, output tensor index, first input index, grid) of every op writing a
    quantized tensor."""
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():  # noqa: SLF001  (the only op listing LiteRT offers)
        if op["op_name"] in _SKIPPED_OPS:
            continue
        for index in op["outputs"]:
            detail = details.get(int(index))
            if detail is None:
                continue
            scale, zero_point = detail["quantization"]
            dtype = np.dtype(detail["dtype"])
            if scale > 0 and dtype in _INT_RANGES:
                qmin, qmax = _INT_RANGES[dtype]
                first_input = int(op["inputs"][0]) if len(op["inputs"]) else -1
                found.append((int(op["index"]), op["op_name"], int(index), first_input,
                              QuantGrid(scale, int(zero_point), qmin, qmax)))
    return found


def feed_sample(interpreter, sample: np.ndarray) -> None:
    """Run one float sample (quantized first for an integer input); intermediates stay readable."""
    detail = interpreter.get_input_details()[0]
    dtype = np.dtype(detail["dtype"])
    shape = tuple(detail["shape"])
    x = sample.reshape(shape) if int(np.prod(shape)) == sample.size else None
    if x is None:
        raise InputError(f"a sample of shape {sample.shape} does not fit the model input {shape}; "
                         "give data of the model's input size")
    if dtype in _INT_RANGES:
        scale, zero_point = detail["quantization"]
        qmin, qmax = _INT_RANGES[dtype]
        x = np.clip(np.round(x / scale) + zero_point, qmin, qmax)
    interpreter.set_tensor(detail["index"], x.astype(dtype))
    interpreter.invoke()


def tflite_layer_errors(float_model: str | Path | bytes, int8_model: str | Path | bytes, samples: np.ndarray,
                        layer_names: list[str] | None = None, output_layer: str = "",
                        layer_twins: dict[str, float] | None = None) -> tuple[list[LayerError], list[str]]:
    """Rows in op order, and the names of quantized tensors with no float twin.

    `output_layer` names the Keras layer of the model's output, whose tensor the converter
    names after the signature ("StatefulPartitionedCall_1:0"), not after the layer.
    `layer_twins` names the layers that an INT8-only rewrite spelled differently in the INT8
    model (converters.passes.pipeline.INT8_ONLY_PASSES): their last INT8 tensor is paired with
    the float model's last tensor of the same layer, whose values times the factor it equals
    (6 where decompose_hard_swish moved the 1/6 into the next kernels).
    """
    fp32, int8 = open_interpreter(float_model), open_interpreter(int8_model)
    float_index = {d["name"]: d["index"] for d in fp32.get_tensor_details()}
    int8_names = {d["index"]: d["name"] for d in int8.get_tensor_details()}
    pairs, unmatched = [], []
    layer_of: dict[int, str] = {}  # tensor index -> Keras layer
    graph_outputs = {d["index"] for d in int8.get_output_details()}
    quantized = quantized_outputs(int8)
    for _, op, index, first_input, grid in quantized:
        name = int8_names[index]
        # A graph output is the output layer's (unknown without the Keras model: it may be a
        # Dense's own output or its softmax); other unnamed tensors belong to the layer whose
        # tensor the op reads.
        layer_of[index] = keras_layer_name(name, layer_names) or (
            output_layer if index in graph_outputs else layer_of.get(first_input, ""))
        if name in float_index:
            pairs.append((op, name, layer_of[index], float_index[name], index, grid, ErrorAccumulator(), 1.0))
        else:
            unmatched.append(name)
    if layer_twins:
        pairs = _pair_rewritten_layers(fp32, int8, quantized, pairs, unmatched, layer_of, layer_names, layer_twins)
    if not pairs:
        raise InputError("no quantized tensor of the INT8 .tflite has a twin in the float .tflite; "
                         "give the float model converted from the same Keras model")
    for sample in samples:
        feed_sample(fp32, sample)
        feed_sample(int8, sample)
        for _, _, _, f_index, q_index, grid, acc, factor in pairs:
            acc.add(fp32.get_tensor(f_index) * np.float32(factor), dequantize(int8.get_tensor(q_index), grid), grid)
    rows = [make_layer_error("tflite", depth, name, layer, op, acc, grid)
            for depth, (op, name, layer, _, _, grid, acc, _) in enumerate(pairs)]
    return rows, unmatched


def _pair_rewritten_layers(fp32, int8, quantized, pairs, unmatched, layer_of, layer_names, layer_twins):
    """`pairs` (in INT8 op order) with each rewritten layer's last INT8 tensor paired to its float twin;
    the tensors paired here leave `unmatched` (the rewrite's inner tensors stay there: float has none)."""
    float_details = {d["index"]: d for d in fp32.get_tensor_details()}
    int8_details = {d["index"]: d for d in int8.get_tensor_details()}
    float_last: dict[str, int] = {}  # layer -> its last output tensor in the float model's op order
    for op in fp32._get_ops_details():
        for index in map(int, op["outputs"]):
            layer = keras_layer_name(float_details[index]["name"], layer_names) if index in float_details else None
            if layer in layer_twins:
                float_last[layer] = index
    int8_last = {layer_of[index]: index for _, _, index, _, _ in quantized if layer_of.get(index) in layer_twins}
    added = {}
    for _, op, index, _, grid in quantized:
        layer = layer_of.get(index)
        twin, name = float_last.get(layer), int8_details[index]["name"]
        if twin is None or int8_last.get(layer) != index or name not in unmatched:
            continue
        if tuple(float_details[twin]["shape"]) != tuple(int8_details[index]["shape"]):
            continue
        added[index] = (op, name, layer, twin, index, grid, ErrorAccumulator(), layer_twins[layer])
        unmatched.remove(name)
    by_index = {p[4]: p for p in pairs} | added
    return [by_index[index] for _, _, index, _, _ in quantized if index in by_index]
