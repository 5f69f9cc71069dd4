"""Prove the fusion in a written .tflite: read its flatbuffer and look for activations left behind.

A RELU / RELU6 / RELU_N1_TO_1 op right after CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED or
ADD whose output feeds nothing else could have been fused: that is a failure. Activations
that cannot fuse (LEAKY_RELU, PRELU, HARD_SWISH, GELU, ...) or whose input has other
consumers are listed with the reason.
"""
from __future__ import annotations

from edgeact.formats.tflite_model import TFLiteModel

FUSING_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD")
FUSABLE_ACTIVATIONS = ("RELU", "RELU6", "RELU_N1_TO_1")
OTHER_ACTIVATIONS = ("LEAKY_RELU", "PRELU", "HARD_SWISH", "GELU", "ELU", "LOGISTIC", "TANH", "RELU_0_TO_1")


def check_fusion(model: TFLiteModel, float_tensors=()) -> dict:
    """Counts of fused activations per op type, and every standalone activation with a reason.

    An activation after an op writing one of `float_tensors` (kept in float on purpose by an accuracy
    budget search) is standalone by design, and says so."""
    fused: dict[str, dict[str, int]] = {}
    for op in model.ops:
        if op.type in FUSING_OPS:
            key = op.fused_activation or "NONE"
            fused.setdefault(op.type, {}).setdefault(key, 0)
            fused[op.type][key] += 1
    unfused, standalone = [], []
    for op in model.ops:
        if op.type not in FUSABLE_ACTIVATIONS + OTHER_ACTIVATIONS or not op.inputs:
            continue
        producer = model.producer(op.inputs[0])
        producer_type = producer.type if producer else "model input"
        entry = {"op": op.type, "index": op.index, "after": producer_type,
                 "tensor": model.tensors[op.outputs[0]].name}
        if producer is not None and producer.outputs and model.tensors[producer.outputs[0]].name in set(float_tensors):
            standalone.append({**entry, "budget_float": True, "reason": f"follows {producer_type}, kept in float on "
                               "purpose by the accuracy budget search (not judged)"})
        elif op.type in OTHER_ACTIVATIONS:
            standalone.append({**entry, "reason": f"{op.type} has no fused form in {producer_type}"})
        elif producer is None or producer.type not in FUSING_OPS:
            standalone.append({**entry, "reason": f"follows {producer_type}, which carries no fused activation"})
        elif len(model.consumers(op.inputs[0])) > 1 or op.inputs[0] in model.outputs:
            standalone.append({**entry, "reason": f"the {producer_type} output has other consumers"})
        elif producer.fused_activation not in (None, "NONE"):
            standalone.append({**entry, "reason": f"{producer_type} already has {producer.fused_activation}"})
        else:
            unfused.append({**entry, "reason": "could have been fused into the op before it"})
    fused_total = sum(n for counts in fused.values() for act, n in counts.items() if act != "NONE")
    return {"fused": fused, "fused_total": fused_total, "unfused": unfused, "standalone": standalone,
            "passed": not unfused}


def check_integer_only(model: TFLiteModel, float_io: bool) -> dict:
    """Which ops still compute in float in a model meant to be full integer."""
    float_ops = [f"{op.type}#{op.index}" for op in model.float_ops(float_io)]
    return {"integer_ops": len(model.ops) - len(float_ops), "total_ops": len(model.ops),
            "float_ops": float_ops, "passed": not float_ops}
