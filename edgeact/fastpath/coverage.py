"""Which ops of a converted model run on the fast path, and which fall off it, and why.

TFLite: an interpreter with a delegate (XNNPACK by default) lists, after delegation, the
original ops plus one DELEGATE node per partition. The partition a DELEGATE node stands for
is every op on a path from its inputs to its outputs, so walking back from its outputs finds
the ops it took; the others run on LiteRT's reference kernels, and each split of the graph
costs a hand-over between the delegate and the interpreter. Why an op was left is told
from its type, dtype and quantization (`_tflite_reason`), the rules of LiteRT 2.3's XNNPACK
delegate as measured here.

ONNX Runtime: the QDQ model is optimised by ORT itself (the graph it will execute) and
every node that still computes on float tensors (between DequantizeLinear and
QuantizeLinear) is listed: it runs in float and pays a dequantize/quantize round trip.

numpy and a runtime only; onnx is imported lazily for the ONNX part.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeact.errors import InputError, RuntimeUnavailableError, first_line

INT_TYPES = ("int8", "uint8", "int16")


@dataclass
class LeftOp:
    """One op outside the fast path: where it is, what it computes on, and why it was left."""

    index: int
    type: str
    dtype: str
    shape: list[int]
    reason: str


@dataclass
class Coverage:
    """What the delegate (or ORT's integer kernels) took of one model."""

    format: str
    delegate: str
    total_ops: int
    fast_ops: int
    partitions: int  # TFLite: delegate partitions; ONNX: 0
    left: list[LeftOp] = field(default_factory=list)

    @property
    def fully_delegated(self) -> bool:
        return not self.left

    def left_counts(self) -> dict[str, int]:
        counts = Counter(op.type for op in self.left)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def summary(self) -> str:
        if self.format == "tflite":
            text = (f"{self.delegate}: {self.fast_ops}/{self.total_ops} ops delegated in "
                    f"{self.partitions} partition{'s' if self.partitions != 1 else ''}")
        else:
            text = f"onnxruntime: {self.fast_ops}/{self.total_ops} nodes on integer kernels or Q/DQ"
        if self.left:
            text += "; left: " + ", ".join(f"{t} x{n}" for t, n in self.left_counts().items())
        return text

    def reasons(self) -> dict[str, str]:
        """One reason per distinct (op type, reason), for a short listing."""
        seen: dict[str, str] = {}
        for op in self.left:
            seen.setdefault(f"{op.type} ({op.dtype})", op.reason)
        return seen

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(summary=self.summary(), left_counts=self.left_counts(), reasons=self.reasons())
        return data


# -- TFLite ----------------------------------------------------------------------------
_FLOAT_ONLY = {
    "HARD_SWISH": "XNNPACK runs HARD_SWISH in float only; the decompose_hard_swish pass rewrites "
                  "hard-swish as (x/6) * ReLU6(x + 3), which it runs in INT8",
    "SOFTMAX": "XNNPACK runs SOFTMAX in float only (a final softmax on the reference kernel costs little)",
    "RELU": "a standalone RELU is run in float only; fuse it into the op before (fuse_activation)",
    "MINIMUM": "XNNPACK runs MINIMUM in float only (a ReLU with max_value other than 6 lowers to it)",
    "MAXIMUM": "XNNPACK runs MAXIMUM in float only",
    "LOGISTIC": "XNNPACK runs LOGISTIC (sigmoid) in float only",
    "TANH": "XNNPACK runs TANH in float only",
    "AVERAGE_POOL_2D": "LiteRT 2.3's XNNPACK left INT8 AVERAGE_POOL_2D to the reference kernel in trials here; "
                       "for a global pool keep GlobalAveragePooling2D (a MEAN), which it runs in INT8",
}
_SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK", "GATHER", "CONCATENATION", "CAST", "FILL")
_ELEMENTWISE = ("ADD", "SUB", "MUL")


def _tflite_reason(op: dict, tensors: dict[int, dict], constant: set[int]) -> str:
    kind = op["op_name"]
    ins = [tensors[i] for i in op["inputs"] if i >= 0]
    outs = [tensors[i] for i in op["outputs"]]
    dtype = outs[0]["dtype"].__name__ if outs else "?"
    if kind == "RESHAPE" and len(op["inputs"]) > 1 and op["inputs"][1] >= 0 and op["inputs"][1] not in constant:
        return "its new shape is computed at run time (Flatten/Reshape with a dynamic batch); XNNPACK needs " \
               "a constant shape"
    if dtype == "int32" or (kind in _SHAPE_OPS and all(t["dtype"].__name__ == "int32" for t in ins)):
        return "shape arithmetic on int32 (from a Flatten/Reshape with a dynamic batch); XNNPACK takes no int32 ops"
    if dtype in ("float32", "float16") and kind not in ("QUANTIZE", "DEQUANTIZE"):
        return f"computes in {dtype}"
    if kind in _FLOAT_ONLY and dtype in INT_TYPES:
        return _FLOAT_ONLY[kind]
    per_channel = [t["name"] for t in ins if len(t["quantization_parameters"]["scales"]) > 1]
    if per_channel and kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        return f"per-channel quantized input '{per_channel[0]}': XNNPACK's {kind} takes per-tensor scales only"
    if kind in _ELEMENTWISE and dtype in INT_TYPES and outs:
        out_scale = outs[0]["quantization"][0]
        # XNNPACK's checks: each input/output scale ratio for ADD/SUB, the product of the input
        # scales over the output scale for MUL.
        ratios = [t["quantization"][0] / out_scale for t in ins if out_scale and t["quantization"][0]]
        low, low_text = 2.0 ** -10, "2^-10"
        if kind == "MUL" and len(ratios) == 2:
            ratios = [ins[0]["quantization"][0] * ins[1]["quantization"][0] / out_scale]
            low, low_text = 2.0 ** -16, "2^-16"
        bad = [r for r in ratios if not low <= r < 256.0]
        if bad:
            return (f"input/output scale ratio {bad[0]:.2g} is outside [{low_text}, 256), the range XNNPACK's "
                    f"quantized {kind} accepts (its inputs have very different ranges; retrain or recalibrate)")
    if kind == "MEAN":
        return "XNNPACK takes a MEAN over the spatial axes (H, W) of a 4-D tensor with constant axes " \
               "(GlobalAveragePooling2D); other axes stay on the reference kernel"
    return f"not supported by the delegate for {dtype} (op type, options or quantization)"


def tflite_coverage(path: str | Path, delegate: str = "xnnpack", threads: int | None = None,
                    runtime: str | None = None, runner=None) -> Coverage:
    """Delegate coverage of a .tflite model, read from the interpreter after delegation.

    `runner`: a TFLiteRunner of this model already open with this delegate (not opened again).

    Raises:
        RuntimeUnavailableError: the runtime does not list its ops (tflite-runtime before 2.5).
    """
    from edgeact.runtime.tflite import TFLiteRunner

    runner = runner or TFLiteRunner(path, runtime=runtime, threads=threads, delegate=delegate)
    interpreter = runner.interpreter
    if not hasattr(interpreter, "_get_ops_details"):
        raise RuntimeUnavailableError(f"{runner.runtime} {runner.runtime_version} does not list its ops; "
                                      "pip install ai-edge-litert to measure delegate coverage")
    ops = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    inputs = tuple(d["index"] for d in interpreter.get_input_details())
    return coverage_from_ops(ops, tensors, delegate, inputs)


def coverage_from_ops(ops: list[dict], tensors: dict[int, dict], delegate: str,
                      graph_inputs: tuple[int, ...] = ()) -> Coverage:
    """Coverage from an interpreter's op list (original ops followed by DELEGATE nodes)."""
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    producer = {int(t): op["index"] for op in original for t in op["outputs"]}
    by_index = {op["index"]: op for op in original}
    taken: set[int] = set()
    for node in partitions:
        stop = {int(t) for t in node["inputs"]}
        stack, seen = [int(t) for t in node["outputs"]], set()
        while stack:
            tensor = stack.pop()
            if tensor in stop or tensor in seen or tensor not in producer:
                continue
            seen.add(tensor)
            taken.add(producer[tensor])
            stack.extend(int(t) for t in by_index[producer[tensor]]["inputs"] if t >= 0)
    constant = {i for i in tensors if i not in producer and i not in set(graph_inputs)}
    left = []
    for op in original:
        if op["index"] in taken:
            continue
        out = tensors[int(op["outputs"][0])] if len(op["outputs"]) else None
        left.append(LeftOp(op["index"], op["op_name"], out["dtype"].__name__ if out else "?",
                           [int(d) for d in out["shape"]] if out else [], _tflite_reason(op, tensors, constant)))
    return Coverage("tflite", delegate, len(original), len(taken), len(partitions), left)


# -- ONNX Runtime ----------------------------------------------------------------------
_QDQ = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def _is_integer_kernel(op_type: str) -> bool:
    return op_type.startswith("QLinear") or op_type in (
        "ConvInteger", "MatMulInteger", "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QAttention")


def onnx_coverage(path: str | Path) -> Coverage:
    """Nodes of ORT's optimised graph that still compute on float tensors in an INT8 (QDQ) model."""
    from edgeact.runtime.onnx import optimized_graph

    try:
        import onnx  # noqa: F401  (optimized_graph reads the graph back with it)
    except ImportError:
        raise RuntimeUnavailableError("ONNX coverage reads ORT's optimised graph with the onnx package; "
                                      "pip install onnx") from None
    try:
        graph = optimized_graph(path).graph
    except Exception as exc:  # ORT raises its own exception types
        raise InputError(f"onnxruntime cannot load {path}: {first_line(exc, 200)}") from None
    return coverage_from_onnx_graph(graph)


def coverage_from_onnx_graph(graph) -> Coverage:
    """Float-computing nodes of an (optimised) ONNX graph: a tensor is float when it is a float graph
    input or initializer, comes out of DequantizeLinear, or out of a node that took a float input."""
    float_types = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
    is_float = {v.name for v in graph.input if v.type.tensor_type.elem_type in float_types}
    initializers = {i.name for i in graph.initializer}
    is_float |= {i.name for i in graph.initializer if i.data_type in float_types}
    left, fast = [], 0
    for index, node in enumerate(graph.node):
        op = node.op_type
        float_in = [name for name in node.input if name in is_float and name not in initializers]
        if op == "DequantizeLinear" or (op not in _QDQ and not _is_integer_kernel(op) and float_in):
            is_float.update(node.output)
        if op in _QDQ or _is_integer_kernel(op) or not float_in:
            fast += 1
            continue
        left.append(LeftOp(index, op, "float32", [], _onnx_reason(op)))
    return Coverage("onnx", "cpu", len(graph.node), fast, 0, left)


def _onnx_reason(op: str) -> str:
    if op in ("HardSwish", "HardSigmoid"):
        return f"ORT has no INT8 {op} kernel; the decompose_hard_swish pass spells it as Add/Clip/Mul"
    if op in ("Mul", "Add"):
        return f"ORT runs {op} as QLinear{op} only when both inputs and the output are Q/DQ-wrapped"
    if op in ("ReduceMean", "GlobalAveragePool"):
        return f"no integer {op} kernel was selected by ORT: it runs in float between DequantizeLinear and " \
               "QuantizeLinear"
    if op == "Softmax":
        return "Softmax stays in float unless its output is quantized (a final softmax costs little)"
    return "ORT has no integer kernel for this node in the optimised graph"


def model_coverage(path: str | Path, delegate: str = "xnnpack", threads: int | None = None) -> Coverage:
    """Coverage of a .tflite or .onnx model; the entry point for inspect, profile and convert."""
    suffix = Path(path).suffix.lower()
    if suffix == ".tflite":
        return tflite_coverage(path, delegate=delegate, threads=threads)
    if suffix == ".onnx":
        return onnx_coverage(path)
    raise InputError(f"{path} is not a .tflite or .onnx file; coverage is measured on converted models")


def left_op_elements(coverage: Coverage) -> int:
    """Output elements the left ops produce per inference: a size hint, not a measured time."""
    return int(sum(np.prod(op.shape) for op in coverage.left if op.shape))
