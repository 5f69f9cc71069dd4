"""Edge TPU pre-flight: which ops of an INT8 .tflite the Edge TPU compiler will map, and why not.

Read from the flatbuffer alone (no compiler, no runtime), so `edgeact inspect --target
coral-usb` answers on any machine, before `edgetpu_compiler` (x86-64 Linux only) is run.
Every rule is the compiler's public documentation or what its logs say in public issue threads:

- [models-intro] coral.ai/docs/edgetpu/models-intro, "Model requirements" and "Supported
  operations" (the table of operations and their known limitations; mirrored with the same
  wording by Axis for its Edge TPU SoC, developer.axis.com .../artpec-7/supported-ops).
- [compile] the same page, "Compiling": the compiler cannot partition the model more than
  once, so from the first unsupported op on, that op and everything after it run on the CPU,
  even where supported ops follow. Logged as "More than one subgraph is not supported"
  (google-coral/edgetpu#490, #512; tiny_yolo_edgetpu.log).
- Log statuses, verbatim: "Operation is working on an unsupported data type" (#490, #708:
  int32 shape ops, float DEQUANTIZE), "Tensor has unsupported rank (up to 3 innermost dimensions
  mapped)" (#708), "Operation is otherwise supported, but not mapped due to some unspecified
  limitation" (#219, #433, #512).
- Dynamic sizes: "ERROR: Attempting to use a delegate that only supports static-sized tensors
  with a graph that has dynamic-sized tensors. Compilation failed" (#829, #831).
- On-chip memory: the compiler caches parameters in the Edge TPU's ~8 MB of SRAM and streams the
  rest ("Off-chip memory used for streaming uncached model parameters"); its logs show 6.89 MiB
  used + 1 KiB remaining (#512), 3.21 + 3.78 MiB (#393), 0.91 + 6.71 MiB (#714) available for
  parameters: `ON_CHIP_PARAMETER_BYTES` takes the smallest, 6.89 MiB.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeact.formats.tflite_model import TFLiteModel, read_tflite

MIB = 1024 * 1024
ON_CHIP_PARAMETER_BYTES = int(6.89 * MIB)

UNSUPPORTED_TYPE = "Operation is working on an unsupported data type"
UNSUPPORTED_RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
AFTER_UNMAPPED = "More than one subgraph is not supported"
NOT_IN_TABLE = "Operation not supported"
LIMITATION = "Operation is otherwise supported, but not mapped due to some unspecified limitation"

# [models-intro] "Supported operations", by TFLite builtin name, with the known limitation where
# it has one (the checks in `_limitation` apply what a flatbuffer shows of them).
SUPPORTED: dict[str, str] = {
    "ADD": "", "AVERAGE_POOL_2D": "No fused activation function.",
    "CONCATENATION": "No fused activation function. If any input is a compile-time constant tensor, there must be "
                     "only 2 inputs, and this constant tensor must be all zeroes (effectively, a zero-padding op).",
    "CONV_2D": "Must use the same dilation in x and y dimensions.",
    "DEPTHWISE_CONV_2D": "Must use the same dilation in x and y dimensions.",
    "EXPAND_DIMS": "", "FULLY_CONNECTED": "Only the default format is supported for fully-connected weights. "
                                          "Output tensor is one-dimensional.",
    "L2_NORMALIZATION": "", "LOGISTIC": "", "LSTM": "Unidirectional LSTM only.",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "Unidirectional LSTM only.", "MAXIMUM": "",
    "MAX_POOL_2D": "No fused activation function.",
    "MEAN": "No reduction in batch dimension. If a z-reduction, the z-dimension must be multiple of 4.",
    "MINIMUM": "", "MUL": "", "PACK": "No packing in batch dimension.", "PAD": "No padding in batch dimension.",
    "PRELU": "Alpha must be 1-dimensional (only the innermost dimension can be >1 size).", "QUANTIZE": "",
    "REDUCE_MAX": "Cannot operate on the batch dimension.", "REDUCE_MIN": "Cannot operate on the batch dimension.",
    "RELU": "", "RELU6": "", "RELU_N1_TO_1": "",
    "RESHAPE": "Certain reshapes might not be mapped for large tensor sizes.",
    "RESIZE_BILINEAR": "Input/output is a 3-dimensional tensor. Depending on input/output size, this operation "
                       "might not be mapped to the Edge TPU to avoid loss in precision.",
    "RESIZE_NEAREST_NEIGHBOR": "Input/output is a 3-dimensional tensor. Depending on input/output size, this "
                               "operation might not be mapped to the Edge TPU to avoid loss in precision.",
    "RSQRT": "", "SLICE": "", "SOFTMAX": "Supports only 1D input tensor with a max of 16,000 elements.",
    "SPACE_TO_DEPTH": "", "SPLIT": "", "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "Supported only when input tensor dimensions that have leading 1s (that is, no relayout needed).",
    "STRIDED_SLICE": "Supported only when all strides are equal to 1 (that is, effectively a Stride op), and with "
                     "ellipsis-axis-mask == 0, and new-axis-max == 0.",
    "SUB": "", "SUM": "Cannot operate on the batch dimension.", "TANH": "", "TRANSPOSE": "",
    "TRANSPOSE_CONV": "",
}
_NO_FUSED = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION")
# Limitations the flatbuffer's shapes and flags do not settle: predicted mapped, with the rule as a caveat.
# TRANSPOSE is in the table, yet compiler 16 logged it "otherwise supported, but not mapped due to some
# unspecified limitation" and left 190 of 191 ops on the CPU after it (google-coral/edgetpu#433).
_CAVEATS = {
    "STRIDED_SLICE": SUPPORTED["STRIDED_SLICE"], "RESHAPE": SUPPORTED["RESHAPE"],
    "RESIZE_BILINEAR": SUPPORTED["RESIZE_BILINEAR"], "RESIZE_NEAREST_NEIGHBOR": SUPPORTED["RESIZE_NEAREST_NEIGHBOR"],
    "TRANSPOSE": "in the table, but compiler 16 left it off in public logs ('not mapped due to some unspecified "
                 "limitation', google-coral/edgetpu#433), and everything after it with it",
}
_INT8 = ("int8", "uint8")
# What convert --target coral-* does about an open batch (converters.tflite.fixed_batch).
BATCH_FIX = ("fix the batch to 1: convert --target coral-usb (or coral-devboard) folds the SHAPE/STRIDED_SLICE/PACK "
             "chain into a constant RESHAPE")


@dataclass
class OpVerdict:
    index: int
    type: str
    mapped: bool
    status: str  # the compiler's log wording: "Mapped to Edge TPU" or why not
    why: str = ""  # what in this model meets the rule
    macs: int = 0
    parameter_bytes: int = 0
    caveat: str = ""  # a mapped op whose known limitation the flatbuffer does not show: it may still stay off


@dataclass
class Preflight:
    """The prediction for one model: per op, the mapped share, parameters against on-chip memory."""

    model: str
    ops: list[OpVerdict]
    compiled: bool = False  # already an edgetpu_compiler output (an edgetpu-custom-op inside)
    notes: list[str] = field(default_factory=list)
    on_chip_bytes: int = ON_CHIP_PARAMETER_BYTES

    @property
    def first_unmapped(self) -> OpVerdict | None:
        return next((op for op in self.ops if not op.mapped and op.status != AFTER_UNMAPPED
                     and not op.why.startswith("prefix")), None)

    @property
    def mapped_ops(self) -> int:
        return sum(op.mapped for op in self.ops)

    @property
    def total_macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def mapped_macs(self) -> int:
        return sum(op.macs for op in self.ops if op.mapped)

    @property
    def parameter_bytes(self) -> int:
        return sum(op.parameter_bytes for op in self.ops if op.mapped)

    @property
    def streamed_bytes(self) -> int:
        return max(0, self.parameter_bytes - self.on_chip_bytes)

    def summary(self) -> str:
        total = len(self.ops)
        share = self.mapped_ops / total if total else 0.0
        macs = self.mapped_macs / self.total_macs if self.total_macs else share
        # Rounded down: 99.96% is not "100.0%" when a convolution is left on the CPU.
        line = (f"Edge TPU pre-flight: {self.mapped_ops} of {total} ops ({math.floor(share * 100):d}%) and "
                f"{math.floor(macs * 1000) / 10:.1f}% of MACs predicted on the Edge TPU")
        first = self.first_unmapped
        if first is not None:
            line += f"; from op #{first.index} {first.type} on, the rest runs on the CPU"
        caveats = [op for op in self.ops if op.caveat]
        if caveats:
            line += f"; {len(caveats)} mapped op{'s' if len(caveats) > 1 else ''} with a limitation the file " \
                    "does not show (see below)"
        line += f"; parameters {_mib(self.parameter_bytes)} of ~{_mib(self.on_chip_bytes)} on-chip"
        if self.streamed_bytes:
            line += f" ({_mib(self.streamed_bytes)} streamed from host memory on every inference)"
        return line

    def by_type(self) -> dict[str, dict[str, int]]:
        """Per op type and status, how many: the shape of the compiler's "Operator / Count / Status" table."""
        table: dict[str, dict[str, int]] = {}
        for op in self.ops:
            status = "Mapped to Edge TPU" if op.mapped else op.status
            table.setdefault(op.type, {})
            table[op.type][status] = table[op.type].get(status, 0) + 1
        return table

    def to_dict(self) -> dict:
        return {"model": self.model, "compiled": self.compiled, "ops": [asdict(op) for op in self.ops],
                "mapped_ops": self.mapped_ops, "total_ops": len(self.ops), "mapped_macs": self.mapped_macs,
                "total_macs": self.total_macs, "parameter_bytes": self.parameter_bytes,
                "on_chip_bytes": self.on_chip_bytes, "streamed_bytes": self.streamed_bytes,
                "first_unmapped": asdict(self.first_unmapped) if self.first_unmapped else None,
                "by_type": self.by_type(), "notes": self.notes, "summary": self.summary()}


def _mib(n: int) -> str:
    return f"{n / MIB:.2f} MiB" if n >= MIB / 10 else f"{n / 1024:.1f} KiB"


def _dims(shape: list[int]) -> list[int]:
    return [1 if i == 0 and d < 0 else int(d) for i, d in enumerate(shape)]  # an open batch reads as 1


def _elements(shape: list[int]) -> int:
    return int(math.prod(max(d, 1) for d in shape)) if shape else 1


def _bytes(dtype: str) -> int:
    return {"int8": 1, "uint8": 1, "int16": 2, "float16": 2, "int32": 4, "float32": 4, "int64": 8}.get(dtype, 4)


def _macs(model: TFLiteModel, op) -> int:
    """Multiply-accumulates of the ops that do them (convolutions, fully connected), from the shapes."""
    tensors = model.tensors
    ins = [tensors[i] for i in op.inputs if i >= 0]
    outs = [tensors[i] for i in op.outputs if i >= 0]
    if not outs or len(ins) < 2:
        return 0
    out, weights = _elements(outs[0].shape), ins[1].shape
    if op.type == "CONV_2D" and len(weights) == 4:
        return out * weights[1] * weights[2] * weights[3]
    if op.type == "DEPTHWISE_CONV_2D" and len(weights) == 4:
        return out * weights[1] * weights[2]
    if op.type == "FULLY_CONNECTED" and len(weights) == 2:
        return out * weights[1]
    if op.type == "TRANSPOSE_CONV" and len(ins) >= 3 and len(weights) == 4:
        return _elements(ins[2].shape) * weights[0] * weights[1] * weights[2]
    return 0


def _problem(model: TFLiteModel, op) -> tuple[str, str] | None:
    """(status, what in the model meets it) when the compiler will not map this op on its own merits."""
    tensors = model.tensors
    ins = [tensors[i] for i in op.inputs if i >= 0]
    outs = [tensors[i] for i in op.outputs if i >= 0]
    activations = [t for t in ins if not t.is_constant] + outs
    # [models-intro] "Tensor parameters are quantized (8-bit fixed-point numbers; int8 or uint8)".
    wrong = [t for t in activations if t.dtype not in _INT8]
    if wrong:
        t = wrong[0]
        why = f"tensor '{t.name}' is {t.dtype}"
        if t.dtype == "int32":
            why += " (shape arithmetic, from a Flatten/Reshape with an open batch)"
        elif t.dtype.startswith("float"):
            why += " (float: convert full-integer INT8 with --io int8)"
        return UNSUPPORTED_TYPE, why
    unquantized = [t for t in activations if not t.scale]
    if unquantized:
        return UNSUPPORTED_TYPE, f"tensor '{unquantized[0].name}' has no quantization parameters"
    # [models-intro] "Tensor sizes are constant at compile-time (no dynamic sizes)". An open batch
    # alone is read as 1 (the flatbuffer's `shape`; the -1 is in `shape_signature`): the ops it
    # leaves behind (int32 shape arithmetic) are what stop the mapping, and a note says so.
    dynamic = [t for t in activations if any(d < 0 for d in t.shape[1:])]
    if dynamic:
        return LIMITATION, f"tensor '{dynamic[0].name}' has a dynamic size {tuple(dynamic[0].shape)}"
    if op.type == "RESHAPE" and len(op.inputs) > 1 and op.inputs[1] >= 0 and not tensors[op.inputs[1]].is_constant:
        return LIMITATION, "its new shape is computed at run time (a dynamic size)"
    # [models-intro] "Tensors are either 1-, 2-, or 3-dimensional. If a tensor has more than 3
    # dimensions, then only the 3 innermost dimensions may have a size greater than 1."
    deep = [t for t in activations if len(t.shape) > 3 and any(d > 1 for d in _dims(t.shape)[:-3])]
    if deep:
        return UNSUPPORTED_RANK, f"tensor '{deep[0].name}' is {tuple(deep[0].shape)}: more than the 3 innermost " \
                                 "dimensions above 1"
    if op.type not in SUPPORTED:
        return NOT_IN_TABLE, f"{op.type} is not in the Edge TPU's supported operations (coral.ai models-intro)"
    return _limitation(model, op, ins, outs)


def _limitation(model: TFLiteModel, op, ins, outs) -> tuple[str, str] | None:
    """The table's known limitations, where the flatbuffer's shapes and flags show them."""
    kind = op.type
    rule = SUPPORTED[kind]
    if kind in _NO_FUSED and op.fused_activation not in (None, "NONE"):
        return LIMITATION, f"fused {op.fused_activation}: {rule.split('.')[0]}"
    if kind == "CONCATENATION":
        constants = [t for t in ins if t.is_constant]
        if constants and len(ins) != 2:
            return LIMITATION, f"{len(ins)} inputs with a constant one: {rule}"
    if not outs or not ins:
        return None
    src, dst = _dims(ins[0].shape), _dims(outs[0].shape)
    if kind == "FULLY_CONNECTED" and len([d for d in dst[1:] if d > 1]) > 1:
        return LIMITATION, f"output {tuple(dst)} is not one-dimensional: {rule}"
    if kind == "SOFTMAX":
        inner = [d for d in src[1:] if d > 1]
        if len(inner) > 1 or _elements(src[1:]) > 16000:
            return LIMITATION, f"input {tuple(src)}: {rule}"
    if kind in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "PAD", "PACK") and src and dst and len(src) == len(dst) \
            and src[0] != dst[0]:
        return LIMITATION, f"changes the batch dimension ({src[0]} -> {dst[0]}): {rule}"
    if kind == "MEAN" and len(src) == 4 and len(dst) == 4 and dst[-1] == 1 and src[-1] > 1 and src[-1] % 4:
        return LIMITATION, f"reduces {src[-1]} channels, not a multiple of 4: {rule}"
    if kind == "SQUEEZE":
        kept = [d for d in src if d != 1]
        if [d for d in src if d > 1] != kept or src[: len(src) - len(dst)] != [1] * (len(src) - len(dst)):
            return LIMITATION, f"input {tuple(src)}: {rule}"
    return None


def preflight(path: str | Path) -> Preflight:
    """The Edge TPU compiler's mapping of `path`, predicted op by op in graph order.

    An op is mapped when it meets every rule above and no earlier op was left on the CPU
    ([compile]: one Edge TPU subgraph). Leading ops that only read the model's inputs (a float
    interface's QUANTIZE) run on the CPU before the mapped part without ending it.
    """
    model = read_tflite(path)
    found = Preflight(str(path), [])
    found.compiled = any(op.type == "CUSTOM:edgetpu-custom-op" for op in model.ops)
    if found.compiled:
        found.notes.append("already compiled for the Edge TPU: pre-flight reads the CPU ops left around its "
                           "edgetpu-custom-op; run it on the _int8.tflite model instead")
    inputs = set(model.inputs)
    if any(any(d < 0 for d in model.tensors[i].shape) for i in model.inputs):
        found.notes.append("an open input size (-1): edgetpu_compiler 16 may stop with 'Attempting to use a delegate "
                           "that only supports static-sized tensors with a graph that has dynamic-sized tensors' "
                           "(google-coral/edgetpu#829); " + BATCH_FIX)
    segment_started, ended = False, False
    fed_by_cpu: set[int] = set()  # tensors written by ops before the mapped part (the prefix)
    for op in model.ops:
        params = sum(_elements(model.tensors[i].shape) * _bytes(model.tensors[i].dtype)
                     for i in op.inputs if i >= 0 and model.tensors[i].is_constant)
        verdict = OpVerdict(op.index, op.type, False, "", macs=_macs(model, op), parameter_bytes=params)
        problem = _problem(model, op)
        if ended:
            verdict.status, verdict.why = AFTER_UNMAPPED, "after the first op left on the CPU"
        elif problem is not None:
            reads_inputs = all(i in inputs or i in fed_by_cpu or model.tensors[i].is_constant
                               for i in op.inputs if i >= 0)
            if not segment_started and reads_inputs:
                # before the Edge TPU part: runs on the CPU and does not end it
                verdict.status, verdict.why = problem[0], f"prefix: {problem[1]}; on the CPU before the Edge TPU part"
                fed_by_cpu.update(op.outputs)
            else:
                verdict.status, verdict.why = problem
                ended = True
        else:
            verdict.mapped, verdict.status = True, "Mapped to Edge TPU"
            segment_started = True
            verdict.caveat = _CAVEATS.get(op.type, "")
        found.ops.append(verdict)
    first = found.first_unmapped
    if first is not None and ("open batch" in first.why or "computed at run time" in first.why):
        found.notes.append("the first op left on the CPU comes from an open batch: " + BATCH_FIX)
    return found


def render_preflight(data: dict) -> str:
    """The pre-flight lines: the summary, the ops not mapped with the reason, the notes."""
    lines = [data["summary"]]
    shown = 0
    for op in data["ops"]:
        if op["mapped"] or op["status"] == AFTER_UNMAPPED:
            continue
        lines.append(f"  #{op['index']} {op['type']}: {op['status']} ({op['why']})")
        shown += 1
    caveats: dict[str, list[int]] = {}
    for op in data["ops"]:
        if op.get("caveat"):
            caveats.setdefault(f"{op['type']}: {op['caveat']}", []).append(op["index"])
    for text, where in caveats.items():
        lines.append(f"  may not map, ops {', '.join(f'#{i}' for i in where[:5])}: {text}")
    after = [op for op in data["ops"] if op["status"] == AFTER_UNMAPPED]
    if after:
        lines.append(f"  {len(after)} ops after it: {AFTER_UNMAPPED} (they run on the CPU)")
    lines.extend(f"  note: {n}" for n in data["notes"])
    return "\n".join(lines)


def render_edgetpu_step(found: dict) -> list[str]:
    """convert's summary lines for the Edge TPU step."""
    lines = ["  " + line for line in render_preflight(found["preflight"]).splitlines()]
    compiled = found["compiler"]
    if not compiled.get("available"):
        lines.append(f"  compile: {compiled['advice']}")
    elif compiled.get("compiled"):
        get = compiled.get
        lines.append(f"  compiled by edgetpu_compiler {get('version', '?')}: {get('tpu_ops', '?')} ops on the Edge "
                     f"TPU, {get('cpu_ops', '?')} on the CPU, {get('subgraphs', '?')} Edge TPU subgraph(s); parameters "
                     f"on-chip {_mib(get('on_chip_used') or 0)}, streamed {_mib(get('streamed') or 0)}")
        for line in found["disagreements"]:
            lines.append(f"  DISAGREES with the pre-flight: {line}")
        if not found["disagreements"]:
            lines.append("  the compiler's table agrees with the pre-flight, op type by op type")
    else:
        lines.append(f"  edgetpu_compiler failed: {compiled.get('error', 'no detail')}")
    return lines


__all__ = ["AFTER_UNMAPPED", "ON_CHIP_PARAMETER_BYTES", "SUPPORTED", "OpVerdict", "Preflight", "preflight",
           "render_edgetpu_step", "render_preflight"]
