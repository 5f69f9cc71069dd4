"""Handlers for TensorFlow ops tf2onnx 1.17 cannot export, registered with tf2onnx's own `tf_op`.

Each rewrites the op into ONNX ops with the same values; the ONNX float export is then
checked against Keras like every other (parity per output), so a handler that were wrong
would fail the report, not pass silently.

    Erfc(x) = 1 - Erf(x)     (Keras' exact GELU, `gelu(approximate=False)`, lowers to Erfc)

and `collecting_optimizers()`, which has tf2onnx collect garbage before each optimizer (why: see its docstring).
"""
from __future__ import annotations

import gc
from collections import OrderedDict
from contextlib import contextmanager

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



@contextmanager
def collecting_optimizers():
    """While active, tf2onnx runs its default optimizers, each created after a `gc.collect()`.

    tf2onnx deep-copies the whole ONNX graph before every optimizer (so that a failing one can
    be undone), and its nodes point at their graph and back: each discarded copy, weights
    included, is cyclic garbage that waits for Python's collector. Nothing in the optimizer loop
    allocates enough Python objects to trigger it, so the copies pile up: VGG16 (553 MB of
    weights) climbed by about 1 GB per optimizer, past 19 GB, and was killed. Collected before
    each optimizer it stays at about 8 GB through all 24 optimizer runs (measured with RSS
    sampled around each optimizer; bench/bench_convert.py has the whole-process figures).
    The optimizers and their order are tf2onnx's own; tf2onnx 1.17's `from_function` takes no
    optimizer list, so its module-level list is swapped for the duration and restored.
    """
    from tf2onnx import optimizer

    def collected(factory):
        def make():
            gc.collect()
            return factory()
        return make

    default = optimizer._optimizers
    optimizer._optimizers = OrderedDict((name, collected(factory)) for name, factory in default.items())
    try:
        yield
    finally:
        optimizer._optimizers = default
