"""A small ONNX CNN built with onnx.helper (no TensorFlow): Conv-Relu-GlobalAveragePool-Flatten-Gemm-Softmax."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def small_onnx_model(channels: int = 3, classes: int = 4, seed: int = 0):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {
        "w": rng.normal(0, 0.3, (8, channels, 3, 3)).astype(np.float32),
        "b": rng.normal(0, 0.1, 8).astype(np.float32),
        "fc": rng.normal(0, 0.3, (8, classes)).astype(np.float32),
        "fcb": np.zeros(classes, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", channels, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeact-test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path
