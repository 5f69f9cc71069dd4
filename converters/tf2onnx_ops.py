"""Handlers for TensorFlow ops tf2onnx 1.17 cannot export, registered with tf2onnx's own `tf_op`.

Each rewrites the op into ONNX ops with the same values; the ONNX float export is then
checked against Keras like every other (parity per output), so a handler that were wrong
would fail the report, not pass silently.

    Erfc(x) = 1 - Erf(x)     (Keras' exact GELU, `gelu(approximate=False)`, lowers to Erfc)
"""
from __future__ import annotations

import numpy as np
from tf2onnx import utils
from tf2onnx.handler import tf_op


@tf_op("Erfc")
class Erfc:
    @classmethod
    def version_9(cls, ctx, node, **kwargs):
        shapes, dtypes, outputs, name = node.output_shapes, node.output_dtypes, list(node.output), node.name
        erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=name, name="erf")
        one = ctx.make_const(utils.make_name(f"{name}_one"), np.array(1.0, dtype=np.float32))
        ctx.remove_node(name)
        ctx.make_node("Sub", [one.output[0], erf.output[0]], outputs=outputs, name=name, shapes=shapes,
                      dtypes=dtypes)
