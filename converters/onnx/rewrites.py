"""Rewrites of the ONNX graph that keep INT8 on integer kernels, or take work off them.

After tf2onnx (the float model written): `conv1d_epilogue_into_conv` (see its docstring).
Before quantization (float graph): `reduce_mean_to_global_pool`, below, and
`average_pool_to_depthwise` (an AveragePool as the 3x3 depthwise convolution ORT runs fast; see
its docstring).
After quantization (QDQ graph): `fold_constant_mul_into_scale` (a Mul by a constant becomes
a change of quantization scale; see its docstring).

    ReduceMean(x, axes=[2, 3], keepdims=1)    x: (N, C, H, W)
becomes
    GlobalAveragePool(x)

Why: Keras' GlobalAveragePooling2D(keepdims=True) (every squeeze-excite block) is exported by
tf2onnx as a ReduceMean over H and W. ONNX Runtime's quantizer has no rule for ReduceMean, so
it stays a float node between DequantizeLinear and QuantizeLinear (10 of them in an INT8
MobileNetV3Small); GlobalAveragePool is quantized and ORT runs it as QLinearGlobalAveragePool.
Same function: the mean over the spatial axes, kept as (N, C, 1, 1).

Guards (the node stays): a 4-D input with known rank; axes exactly {2, 3} (or {-2, -1});
keepdims 1; noop_with_empty_axes unset. Axes are read from the attribute (opset < 18) or a
constant input (opset 18+).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.pool_windows import window_counts


def _axes(node, initializers: dict) -> list[int] | None:
    for attr in node.attribute:
        if attr.name == "axes":
            return list(attr.ints)
    if len(node.input) > 1 and node.input[1] in initializers:
        from onnx import numpy_helper

        return [int(a) for a in numpy_helper.to_array(initializers[node.input[1]]).ravel()]
    return None


def _attr(node, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _rank(graph, name: str) -> int | None:
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        if value.name == name and value.type.tensor_type.HasField("shape"):
            return len(value.type.tensor_type.shape.dim)
    return None


def reduce_mean_to_global_pool(path: str | Path) -> list[str]:
    """Rewrite, in place, every spatial keepdims ReduceMean of the ONNX file; return the rewritten node names."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    changed = []
    for index, node in enumerate(graph.node):
        if node.op_type != "ReduceMean" or _attr(node, "keepdims", 1) != 1 or _attr(node, "noop_with_empty_axes", 0):
            continue
        if _rank(inferred.graph, node.input[0]) != 4:
            continue
        axes = _axes(node, initializers)
        if axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            continue
        graph.node[index].CopyFrom(helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output),
                                                    name=node.name))
        changed.append(node.name)
    if changed:
        onnx.save(model, str(path))
    return changed


def fold_constant_mul_into_scale(path: str | Path) -> list[str]:
    """Drop, in place, every quantized multiply by a positive scalar constant of a QDQ model.

        DQ(q_x, s, z) -> Mul(., c) -> Q(., s_y, z_y) -> q_y -> DQ(q_y, s_y, z_y) -> consumers
    becomes
        consumers read DQ(q_x, s * c, z)

    Why: multiplying by a constant is a change of scale, which a quantized tensor carries for
    free; ORT runs the Mul as a QLinearMul over the whole tensor (on MobileNetV3Small: hard-swish's
    x/6 where it does not feed a convolution, the squeeze-excite hard-sigmoid's /6, and the input's
    Rescaling: 18 QLinearMul, about 8 % of the INT8 node time in ORT's profile). Exact, and one
    rounding fewer than the requantization it replaces.

    Guards (the Mul stays): x dequantized per-tensor; c a scalar constant (a float initializer or
    a dequantized one), finite and > 0; the Mul's only consumer is one QuantizeLinear of the same
    type as q_x, whose output is read only by DequantizeLinear nodes and is no graph output.
    Returns the names of the Mul nodes dropped.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def array(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def constant(name):
        if name in inits:
            return array(name)
        node = producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            return None
        q, scale = array(node.input[0]), array(node.input[1])
        zero = array(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros_like(q)
        if scale is None or zero is None:
            return None
        return (q.astype(np.float64) - zero.astype(np.float64)) * scale.astype(np.float64)

    dropped, remove = [], set()
    for node in graph.node:
        if node.op_type != "Mul" or any(name in outputs for name in node.output):
            continue
        for x_index in (0, 1):
            dq = producer.get(node.input[x_index])
            c = constant(node.input[1 - x_index])
            if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in inits or c is None:
                continue
            scale, zero = array(dq.input[1]), array(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
            if scale is None or scale.size != 1 or zero is None or c.size != 1 or not np.isfinite(c).all() \
                    or float(c.ravel()[0]) <= 0:
                continue
            users = consumers.get(node.output[0], [])
            if len(users) != 1 or users[0].op_type != "QuantizeLinear":
                continue
            quant = users[0]
            readers = consumers.get(quant.output[0], [])
            if quant.output[0] in outputs or not readers or any(r.op_type != "DequantizeLinear" for r in readers):
                continue
            y_zero = array(quant.input[2]) if len(quant.input) > 2 and quant.input[2] else None
            if y_zero is None or y_zero.dtype != zero.dtype:
                continue
            new_scale = f"{node.name or node.output[0]}_folded_scale"
            graph.initializer.append(numpy_helper.from_array(
                (scale.astype(np.float64) * float(c.ravel()[0])).astype(scale.dtype).reshape(scale.shape), new_scale))
            for reader in readers:
                reader.input[0], reader.input[1] = dq.input[0], new_scale
                if len(reader.input) > 2:
                    reader.input[2] = dq.input[2]
                else:
                    reader.input.append(dq.input[2])
            remove.update({id(node), id(quant)})
            dropped.append(node.name or node.output[0])
            break
    if dropped:
        kept = [n for n in graph.node if id(n) not in remove]
        del graph.node[:]
        graph.node.extend(kept)
        _drop_unused(graph)
        onnx.save(model, str(path))
    return dropped


def _drop_unused(graph) -> None:
    """Remove nodes whose outputs nobody reads (the constant's DequantizeLinear), then unread initializers."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if n.op_type == "DequantizeLinear" and not any(o in read for o in n.output)]
        if not dead:
            break
        kept = [n for n in graph.node if n not in dead]
        del graph.node[:]
        graph.node.extend(kept)
    read = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def conv1d_epilogue_into_conv(path: str | Path) -> list[str]:
    """Move a Conv1D's bias and ReLU in front of the Squeeze tf2onnx puts after it, in place.

        Unsqueeze -> Conv(x, W) -> Squeeze(axis 2|3) -> Add(., b) -> Relu|Clip -> y
    becomes
        Unsqueeze -> Conv(x, W, b) -> Relu|Clip -> Squeeze(axis 2|3) -> y

    Why: TensorFlow computes Conv1D as ExpandDims, Conv2D, Squeeze, BiasAdd; tf2onnx keeps that
    order, so the bias stays an Add and the ReLU follows the Add, not the Conv: ONNX Runtime
    fuses neither (no FusedConv in the float model), and the INT8 model quantizes the raw
    convolution output (its negative half too) and runs a QLinearAdd per layer. Exact: the
    squeezed axis has size 1, a per-channel bias on (N, C, L) is the Conv's bias on (N, C, 1, L),
    and Relu/Clip are elementwise.

    Guards (the nodes stay): the Squeeze removes one spatial axis (2 or 3) of the Conv's output,
    which nothing else reads; the Add's other input is a constant of one value per output
    channel (shape (1, C, 1) or (C, 1)); each moved tensor has one reader and is no graph
    output; Clip only with constant bounds. Returns the names of the Conv nodes changed.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}

    def readers(name: str) -> list:
        return [n for n in graph.node if name in n.input]

    def only_reader(name: str, op_types: tuple[str, ...]):
        found = readers(name)
        if name in outputs or len(found) != 1 or found[0].op_type not in op_types:
            return None
        return found[0]

    changed, touched, orphans = [], set(), set()
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        if len(conv.input) < 2 or conv.input[1] not in inits:
            continue
        squeeze = only_reader(conv.output[0], ("Squeeze",))
        if squeeze is None:
            continue
        axes = _axes(squeeze, inits)
        if axes is None or len(axes) != 1 or axes[0] % 4 not in (2, 3):
            continue
        channels = int(inits[conv.input[1]].dims[0])
        moved = False
        add = only_reader(squeeze.output[0], ("Add",))
        if add is not None:
            other = add.input[1] if add.input[0] == squeeze.output[0] else add.input[0]
            bias = numpy_helper.to_array(inits[other]) if other in inits else None
            if bias is not None and bias.size == channels and bias.ndim <= 3 \
                    and (1,) * (3 - bias.ndim) + tuple(bias.shape) == (1, channels, 1):
                old = numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2 and conv.input[2] in inits \
                    else np.zeros(channels, bias.dtype)
                name = f"{conv.name or conv.output[0]}_bias_folded"
                graph.initializer.append(numpy_helper.from_array((old + bias.reshape(-1)).astype(bias.dtype), name))
                orphans.update({other, conv.input[2] if len(conv.input) > 2 else ""})
                if len(conv.input) > 2:
                    conv.input[2] = name
                else:
                    conv.input.append(name)
                touched.update({squeeze.output[0], add.output[0]})
                squeeze.output[0] = add.output[0]
                graph.node.remove(add)
                moved = True
        act = only_reader(squeeze.output[0], ("Relu", "Clip"))
        if act is not None and all(i in inits or not i for i in act.input[1:]):
            before = f"{act.output[0]}_before_squeeze"
            touched.update({act.output[0], squeeze.output[0]})
            act.input[0], squeeze.input[0] = conv.output[0], before
            squeeze.output[0], act.output[0] = act.output[0], before
            graph.node.remove(act)
            graph.node.insert(list(graph.node).index(squeeze), act)
            moved = True
        if moved:
            changed.append(conv.name or conv.output[0])
    if changed:
        kept = [v for v in graph.value_info if v.name not in touched]  # shapes of renamed tensors are stale
        del graph.value_info[:]
        graph.value_info.extend(kept)
        read = {name for node in graph.node for name in node.input}
        unread = [i for i in graph.initializer if i.name in orphans and i.name not in read]
        for init in unread:
            graph.initializer.remove(init)
        onnx.save(model, str(path))
    return changed


def average_pool_to_depthwise(path: str | Path) -> list[str]:
    """Rewrite, in place, every 2-D AveragePool of the float ONNX file as a depthwise convolution.

        AveragePool(x, k, strides, pads, count_include_pad=0)            x: (N, C, H, W)
    becomes
        y = Conv(x, W = 1/(kh*kw), group=C, the same strides and pads)
        AveragePool's output = Add(y, Mul(y, m)),   m[i, j] = kh*kw / n[i, j] - 1

    where n is how many inputs window (i, j) covers (the padding is not counted); without padding,
    or with count_include_pad=1, the Conv alone is the pool. Why: ORT runs the INT8 pool as
    QLinearAveragePool, 0.17-0.35x its float graph in five runs of bench/repro_ort_int8.py, where
    the graph with a 3x3 depthwise QLinearConv in its place took 3-20x less INT8 time in each
    (17 % of NASNetMobile's INT8 time was its pools). m is 0 inside the map,
    so the inside values are the convolution's; border values also carry the Mul's and Add's
    rounding. Made on the graph about to be quantized only: the float ONNX keeps its pools.

    Guards (the node stays): kernel_shape of 2 dims; input (N, C, H, W) with C, H, W known;
    ceil_mode 0; dilations 1; auto_pad NOTSET or VALID; the output's spatial size as recomputed.
    Returns the names of the rewritten nodes.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    graph, nodes, changed = model.graph, [], []

    def ints(node, name, default):
        return next((list(a.ints) for a in node.attribute if a.name == name), default)

    def strs(node, name, default):
        return next((a.s.decode() for a in node.attribute if a.name == name), default)

    for node in graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "AveragePool" else None
        kernel = ints(node, "kernel_shape", []) if shape else []
        if len(kernel) != 2 or len(shape) != 4 or any(d is None or d <= 0 for d in shape[1:]) \
                or _attr(node, "ceil_mode", 0) or set(ints(node, "dilations", [1, 1])) != {1} \
                or strs(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            nodes.append(node)
            continue
        strides = ints(node, "strides", [1, 1])
        pads = ints(node, "pads", [0, 0, 0, 0]) if strs(node, "auto_pad", "NOTSET") == "NOTSET" else [0, 0, 0, 0]
        rows = window_counts(shape[2], kernel[0], strides[0], pads[0], pads[2])
        cols = window_counts(shape[3], kernel[1], strides[1], pads[1], pads[3])
        out_shape = shapes.get(node.output[0])
        if out_shape is None or len(out_shape) != 4 or out_shape[2:] != [len(rows), len(cols)]:
            nodes.append(node)
            continue
        name, channels, window = node.name or node.output[0], shape[1], kernel[0] * kernel[1]
        weights = numpy_helper.from_array(np.full((channels, 1, *kernel), 1.0 / window, np.float32),
                                          f"{name}/edgeact_depthwise_weights")
        graph.initializer.append(weights)
        counts = np.outer(rows, cols)
        exact = _attr(node, "count_include_pad", 0) or np.all(counts == window)
        mean = node.output[0] if exact else f"{name}/edgeact_window_mean"
        nodes.append(helper.make_node("Conv", [node.input[0], weights.name], [mean], name=f"{name}/edgeact_depthwise",
                                      group=channels, kernel_shape=kernel, strides=strides, pads=pads))
        if not exact:
            border = numpy_helper.from_array((window / counts - 1.0).astype(np.float32)[None, None],
                                             f"{name}/edgeact_border_map")
            graph.initializer.append(border)
            share = f"{name}/edgeact_border_share"
            nodes.append(helper.make_node("Mul", [mean, border.name], [share], name=f"{name}/edgeact_border_mul"))
            nodes.append(helper.make_node("Add", [mean, share], list(node.output), name=f"{name}/edgeact_border_add"))
        changed.append(node.name)
    if changed:
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.save(model, str(path))
    return changed
