"""Per-layer error of an INT8 QDQ .onnx against its float .onnx, activation by activation.

The approach of ONNX Runtime's `quantization.qdq_loss_debug`: every quantized activation X
of the QDQ model is followed by QuantizeLinear -> DequantizeLinear; the DequantizeLinear
output is what the next layer really sees, and the float model has X under the same name
(ORT's quantizer keeps tensor names, and names the output of a Conv that absorbed its Relu
after the Relu's output, as the float model does). Both models get those tensors as extra
graph outputs and run with graph optimisation off, as `qdq_loss_debug.collect_activations`
does: ORT would otherwise fuse Q/DQ pairs into integer kernels, and a fused kernel's
intermediate is not observable. The numbers are therefore those of ORT's QDQ simulation,
which can differ from the integer kernels by a rounding step here and there.

Unlike `collect_activations`, which keeps every tensor of every sample in memory, the
energies are summed sample by sample: MobileNet-sized models stay within memory.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeact.config import ONNX_WEIGHT_LEVELS
from edgeact.errors import InputError, ModelLoadError, first_line
from edgeact.report.layer_errors import LayerError

from .measure import ErrorAccumulator, QuantGrid, keras_layer_name, make_layer_error


@dataclass(frozen=True)
class QuantizedActivation:
    tensor: str  # X, the float value before QuantizeLinear, by its name in the float model
    dequantized: str  # what the consumers read
    producer_op: str
    depth: int  # the producer's position among the graph's nodes
    grid: QuantGrid


def quantized_activations(model) -> list[QuantizedActivation]:
    """Every QuantizeLinear -> DequantizeLinear pair on an activation (weights are initializers)."""
    from onnx import numpy_helper

    graph = model.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producers = {out: (i, node) for i, node in enumerate(graph.node) for out in node.output}
    dequantizers = {node.input[0]: node for node in graph.node if node.op_type == "DequantizeLinear"}
    outputs = {o.name for o in graph.output}
    found = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in initializers:
            continue
        dq = dequantizers.get(node.output[0])
        scale = initializers.get(node.input[1])
        zero = initializers.get(node.input[2]) if len(node.input) > 2 else None
        if dq is None or scale is None or scale.size != 1:
            continue  # per-channel activations do not occur in edgeact's QDQ models
        dtype = zero.dtype if zero is not None else np.dtype(np.uint8)
        info = np.iinfo(dtype)
        grid = QuantGrid(float(scale.reshape(())), int(zero.reshape(())) if zero is not None else 0,
                         int(info.min), int(info.max))
        depth, producer = producers.get(node.input[0], (-1, None))
        found.append(QuantizedActivation(_float_name(node.input[0], outputs), dq.output[0],
                                         producer.op_type if producer else "input", depth, grid))
    return found


_OUTPUT_SUFFIX = "_QuantizeLinear_Input"


def _float_name(tensor: str, graph_outputs: set[str]) -> str:
    """ORT keeps a graph output's name for the DequantizeLinear that ends the graph and
    renames the float value before it to '<output>_QuantizeLinear_Input'."""
    if tensor.endswith(_OUTPUT_SUFFIX) and tensor[: -len(_OUTPUT_SUFFIX)] in graph_outputs:
        return tensor[: -len(_OUTPUT_SUFFIX)]
    return tensor


def _session_with_outputs(model, names: list[str], folder: Path, stem: str):
    """An ORT session (optimisation off) that also returns the named tensors."""
    import onnx
    import onnxruntime as ort

    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            existing.add(name)
    path = folder / f"{stem}.onnx"
    onnx.save(model, str(path))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for unloadable graphs
        raise ModelLoadError(f"ONNX Runtime cannot load the {stem} model for per-layer error: "
                             f"{first_line(exc)}") from None


def _load(path: str | Path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"cannot read {path} as ONNX: {first_line(exc)}") from None


def weight_levels(int8_path: str | Path) -> int:
    """The symmetric range of a QDQ model's int8 weights (edgeact.formats.onnx_model.weight_levels);
    full range for a model with none."""
    from edgeact.formats.onnx_model import weight_levels as levels

    return levels(_load(int8_path)) or ONNX_WEIGHT_LEVELS[8]


def fit_layout(samples: np.ndarray, model) -> np.ndarray:
    """NHWC samples as the model takes them: transposed to NCHW when its input is channels-first."""
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    shape = tuple(samples.shape[1:])
    if not dims or all(d in (0, s) for d, s in zip(dims, shape)):
        return samples
    if len(shape) == 3 and all(d in (0, s) for d, s in zip(dims, (shape[2], shape[0], shape[1]))):
        return np.ascontiguousarray(samples.transpose(0, 3, 1, 2))
    raise InputError(f"samples of shape {shape} do not fit the ONNX input {tuple(dims)}; "
                     "give data of the model's input size")


def onnx_layer_errors(float_path: str | Path, int8_path: str | Path, samples: np.ndarray,
                      layer_names: list[str] | None = None) -> tuple[list[LayerError], list[str]]:
    """Rows in graph order, and the quantized activations with no float twin."""
    float_model, int8_model = _load(float_path), _load(int8_path)
    float_tensors = {out for node in float_model.graph.node for out in node.output} | \
        {i.name for i in float_model.graph.input}
    activations = quantized_activations(int8_model)
    matched = [a for a in activations if a.tensor in float_tensors]
    unmatched = [a.tensor for a in activations if a.tensor not in float_tensors]
    if not matched:
        raise InputError("no quantized activation of the INT8 .onnx has a twin in the float .onnx; "
                         "give the float model the INT8 model was quantized from")
    input_name = float_model.graph.input[0].name
    q_input = int8_model.graph.input[0].name
    batch = fit_layout(np.asarray(samples, np.float32), float_model)
    with tempfile.TemporaryDirectory(prefix="edgeact-layers-") as tmp:
        f_session = _session_with_outputs(float_model, [a.tensor for a in matched], Path(tmp), "float")
        q_session = _session_with_outputs(int8_model, [a.dequantized for a in matched], Path(tmp), "int8")
        f_names = [a.tensor for a in matched]
        q_names = [a.dequantized for a in matched]
        accumulators = [ErrorAccumulator() for _ in matched]
        for sample in batch:
            x = sample[None]
            f_values = f_session.run(f_names, {input_name: x})
            q_values = q_session.run(q_names, {q_input: x})
            for acc, act, f, q in zip(accumulators, matched, f_values, q_values):
                acc.add(f, q, act.grid)
    ordered = sorted(zip(matched, accumulators), key=lambda pair: pair[0].depth)
    rows = [make_layer_error("onnx", depth, a.tensor, keras_layer_name(a.tensor, layer_names), a.producer_op,
                             acc, a.grid) for depth, (a, acc) in enumerate(ordered)]
    return rows, unmatched
