"""Prove what ONNX Runtime will really run: integer kernels and absorbed activations.

The QDQ model on disk still says Conv between DequantizeLinear and QuantizeLinear; what
runs is decided by ORT's graph optimisation. So the check lets ORT optimise the model
(SessionOptions.optimized_model_filepath, CPU provider) and reads the result: every Conv
must have become QLinearConv and every MatMul/Gemm an integer kernel.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgeact.runtime.onnx import optimized_graph  # the one copy, shared with the fast-path coverage

FLOAT_CONV = ("Conv", "FusedConv", "ConvTranspose", "NhwcFusedConv")
FLOAT_MATMUL = ("MatMul", "Gemm", "FusedMatMul", "FusedGemm")
INT_CONV = ("QLinearConv", "ConvInteger")
INT_MATMUL = ("QLinearMatMul", "MatMulInteger", "QGemm", "DynamicQuantizeMatMul")
ACTIVATIONS = ("Relu", "Clip")
FUSING_PRODUCERS = ("Conv",)


def _load(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False)


def count_ops(path: Path) -> dict[str, int]:
    counts = Counter(node.op_type for node in _load(path).graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def check_integer_kernels(int8_path: Path, float_nodes=()) -> dict:
    """How many Conv / MatMul / Gemm of the QDQ model run as integer kernels after ORT optimisation.

    `float_nodes` names nodes an accuracy budget search kept in float on purpose: they are not judged
    (as many float kernels as they are may remain), and the summary says so.
    """
    graph = _load(int8_path).graph
    before = Counter(node.op_type for node in graph.node)
    kept = {node.name: node.op_type for node in graph.node if node.name in set(float_nodes)}
    kept_convs = sum(1 for t in kept.values() if t in ("Conv", "ConvTranspose"))
    kept_matmuls = sum(1 for t in kept.values() if t in ("MatMul", "Gemm"))
    after = Counter(node.op_type for node in optimized_graph(int8_path).graph.node)
    convs = sum(before[t] for t in ("Conv", "ConvTranspose"))
    matmuls = sum(before[t] for t in ("MatMul", "Gemm"))
    int_convs = sum(after[t] for t in INT_CONV)
    int_matmuls = sum(after[t] for t in INT_MATMUL)
    float_left = {t: after[t] for t in FLOAT_CONV + FLOAT_MATMUL if after[t]}
    summary = f"{int_convs}/{convs} Conv run as QLinearConv, {int_matmuls}/{matmuls} MatMul/Gemm as integer kernels"
    if float_left:
        summary += f"; still float: {', '.join(f'{k} x{v}' for k, v in float_left.items())}"
    if kept:
        summary += (f"; not judged: {kept_convs + kept_matmuls} Conv/MatMul/Gemm kept in float on purpose by the "
                    "accuracy budget search")
    return {
        "conv": convs, "integer_conv": int_convs, "matmul_gemm": matmuls, "integer_matmul_gemm": int_matmuls,
        "float_compute_left": float_left, "optimized_op_counts": dict(after), "summary": summary,
        "kept_float": sorted(kept),
        "passed": sum(float_left.values()) <= kept_convs + kept_matmuls and int_convs >= convs - kept_convs
        and int_matmuls >= matmuls - kept_matmuls,
    }


def check_activations(path: Path, quantized: bool, float_nodes=()) -> dict:
    """Relu/Clip nodes and where they sit.

    INT8: none may remain after a Conv (their range belongs in the Conv's output quantization),
    but after a node in `float_nodes` (kept in float on purpose by an accuracy budget search) one
    is standalone by design, and says so.
    Float: each one after a Conv must be its only consumer, so that ORT fuses it (FusedConv);
    the optimised graph is read to confirm the fusion happened.
    """
    graph = _load(path).graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers = Counter(name for node in graph.node for name in node.input)
    users: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node.op_type)
    fusable, standalone, unfused = 0, [], []
    for node in graph.node:
        if node.op_type not in ACTIVATIONS:
            continue
        producer = producers.get(node.input[0])
        after = producer.op_type if producer is not None else "graph input"
        entry = {"op": node.op_type, "node": node.name, "after": after}
        if node.op_type == "Relu" and "Neg" in users.get(node.input[0], []):
            # tf2onnx writes PReLU/LeakyReLU as Relu(x) - alpha * Relu(-x): this Relu is half of one.
            standalone.append({**entry, "reason": "part of a PReLU/LeakyReLU that tf2onnx decomposed into "
                               "Relu, Neg, Mul, Add; it has no fused form"})
            continue
        if quantized and (producer is not None and producer.name in set(float_nodes)):
            standalone.append({**entry, "budget_float": True, "reason": f"follows {after} {producer.name}, kept in "
                               "float on purpose by the accuracy budget search (not judged)"})
            continue
        if quantized:
            if after in ("DequantizeLinear",) and producer.input[0] in producers \
                    and producers[producer.input[0]].op_type == "QuantizeLinear":
                after = _before_qdq(producers, producer)
                entry["after"] = after
            if after in FUSING_PRODUCERS:
                unfused.append({**entry, "reason": "left as a separate node after an INT8 Conv"})
            else:
                standalone.append({**entry, "reason": f"follows {after}"})
        elif after in FUSING_PRODUCERS and consumers[node.input[0]] == 1:
            fusable += 1
        else:
            reason = "the Conv output has other consumers" if after in FUSING_PRODUCERS \
                else f"follows {after}, which ONNX Runtime does not fuse with it"
            standalone.append({**entry, "reason": reason})
    result = {"activations": sum(1 for n in graph.node if n.op_type in ACTIVATIONS),
              "standalone": standalone, "unfused": unfused}
    if not quantized:
        fused = sum(1 for n in optimized_graph(path).graph.node if n.op_type == "FusedConv")
        result.update(after_conv=fusable, fused_by_ort=fused)
        result["fused"] = {"FusedConv": {"Relu/Clip": fused}} if fused else {}
        if fused < fusable:
            unfused.append({"op": "Relu/Clip", "node": "", "after": "Conv",
                            "reason": f"only {fused} of {fusable} were fused by ONNX Runtime"})
    else:
        result["fused"] = {}
    result["passed"] = not unfused
    return result


def _before_qdq(producers: dict, dequantize) -> str:
    quantize = producers[dequantize.input[0]]
    source = producers.get(quantize.input[0])
    return source.op_type if source is not None else "graph input"


def check_graph_shape(path: Path, layout: str) -> dict:
    """Layout transposes and unfolded BatchNorm left in the float export.

    With an NCHW input there should be no Transpose at all; with NHWC one at the input
    (ONNX convolutions are NCHW) and only those a layout-dependent op such as Flatten
    needs. BatchNormalization must be gone: the fold pass ran before export.
    """
    graph = _load(path).graph
    producers = {out: node for node in graph.node for out in node.output}
    inputs = {i.name for i in graph.input}
    transposes = []
    for node in graph.node:
        if node.op_type == "Transpose":
            source = producers.get(node.input[0])
            transposes.append("graph input" if node.input[0] in inputs else (source.op_type if source else "?"))
    batchnorms = sum(1 for n in graph.node if n.op_type == "BatchNormalization")
    at_input = transposes.count("graph input")
    expected_at_input = 1 if layout == "nhwc" else 0
    return {"transposes": len(transposes), "transposes_after": transposes, "batchnorm": batchnorms,
            "summary": f"{len(transposes)} Transpose ({at_input} at the input, layout {layout.upper()}), "
                       f"{batchnorms} BatchNormalization",
            "passed": batchnorms == 0 and at_input <= expected_at_input}
