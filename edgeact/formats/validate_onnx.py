"""Check an .onnx file before ONNX Runtime builds a session from it.

With the `onnx` package (the host): onnx's own checker, then edgeact's limits on every
declared tensor (graph inputs, outputs, value infos, initializers): a known element type,
bounded rank and dimensions, no tensor larger than this machine's memory, initializer data
as long as its shape says. Without it (a device with onnxruntime only): `check_session_io`
checks what the session reports about its inputs and outputs before anything is allocated.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeact.errors import ModelLoadError, first_line, shown

from .limits import check_bytes, check_shape, elements_of

# ONNX TensorProto.DataType -> bytes per element (strings and sub-byte types: None, not sized here)
ITEM_SIZES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16,
              16: 2, 17: 1, 18: 1, 19: 1, 20: 1}
_STRING, _NO_SIZE = 8, (8, 21, 22, 23, 24, 25)  # string, the 4-bit and 2-bit types


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def load_checked(path: str | Path):
    """The parsed and checked ModelProto; ModelLoadError/LimitError naming the first problem."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:  # DecodeError, ValidationError, OSError, ...: all mean a bad file
        raise ModelLoadError(f"{path} is not a valid ONNX model ({first_line(exc, 120)}); re-export it") from None
    check_limits(model, path)
    return model


def check_limits(model, path: Path | str) -> None:
    """Every declared tensor of the main graph within edgeact's limits (see the module docstring)."""
    graph = model.graph
    _check_names(graph, path)
    for kind, values in (("input", graph.input), ("output", graph.output), ("value", graph.value_info)):
        for value in values:
            if not value.type.HasField("tensor_type"):
                if kind == "value":
                    continue
                raise ModelLoadError(f"{path}: graph {kind} '{shown(value.name)}' is not a tensor; "
                                     "edgeact runs models with tensor inputs and outputs")
            tensor = value.type.tensor_type
            _check_type(tensor.elem_type, f"{kind} '{shown(value.name)}'", path)
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            _check_tensor(dims, tensor.elem_type, f"{kind} '{shown(value.name)}'", path, allow_unknown=True)
    for init in graph.initializer:
        what = f"initializer '{shown(init.name)}'"
        _check_type(init.data_type, what, path)
        _check_tensor(list(init.dims), init.data_type, what, path)
        size = ITEM_SIZES.get(init.data_type)
        if init.HasField("raw_data") and size and len(init.raw_data) != elements_of(init.dims) * size:
            raise ModelLoadError(f"{path}: {what} {list(init.dims)} needs {elements_of(init.dims) * size} bytes "
                                 f"but holds {len(init.raw_data)}; re-export it")


def _check_names(graph, path) -> None:
    """protobuf hands back bytes for a string field that is not UTF-8; ONNX Runtime's Python names
    would raise UnicodeDecodeError on it later, so the file is refused here."""
    named = [("input", v.name) for v in graph.input] + [("output", v.name) for v in graph.output]
    named += [("initializer", i.name) for i in graph.initializer]
    for node in graph.node:
        named += [("node", node.name)] + [("node input", n) for n in node.input] + \
                 [("node output", n) for n in node.output]
    for kind, name in named:
        if isinstance(name, bytes):
            raise ModelLoadError(f"{path}: {kind} name {name[:40]!r} is not valid UTF-8; the file is corrupt; "
                                 "re-export it")


def _check_type(elem_type: int, what: str, path) -> None:
    if elem_type not in ITEM_SIZES and elem_type not in _NO_SIZE:
        raise ModelLoadError(f"{path}: {what} has element type {elem_type}, which ONNX does not define; "
                             "the file is corrupt; re-export it")


def _check_tensor(dims, elem_type: int, what: str, path, allow_unknown: bool = False) -> None:
    check_shape(dims, what, str(path), allow_unknown=allow_unknown)
    check_bytes(elements_of(dims), ITEM_SIZES.get(elem_type, 1), what, str(path))


def check_session_io(session, path: Path | str, known_types: dict) -> None:
    """What ONNX Runtime says of the inputs and outputs: numeric types edgeact feeds, bounded shapes.

    Args:
        session: an onnxruntime.InferenceSession.
        known_types: ORT type strings ('tensor(float)') edgeact can allocate -> numpy dtypes.
    """
    for kind, values in (("input", session.get_inputs()), ("output", session.get_outputs())):
        for value in values:
            try:
                what = f"{kind} '{shown(value.name)}'"
            except UnicodeDecodeError:
                raise ModelLoadError(f"{path}: an {kind} name is not valid UTF-8; the file is corrupt; "
                                     "re-export it") from None
            if value.type not in known_types:
                raise ModelLoadError(f"{path}: {what} has type {value.type}; edgeact profiles models with "
                                     f"numeric tensor inputs and outputs ({', '.join(sorted(known_types))})")
            dims = [d if isinstance(d, int) else -1 for d in (value.shape or [])]
            check_shape(dims, what, str(path), allow_unknown=True)
            check_bytes(elements_of(dims), np.dtype(known_types[value.type]).itemsize, what, str(path))


def declared_io(path: str | Path) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Every graph input's and output's declared dims (-1: unknown) by name, from the checked model,
    so that profile can plan without ONNX Runtime parsing the file in edgeact's own process."""
    model = load_checked(path)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if not inputs or not graph.output:
        raise ModelLoadError(f"{path} has no inputs or outputs; re-export it")

    def dims(value) -> list[int]:
        return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]

    return {v.name: dims(v) for v in inputs}, {v.name: dims(v) for v in graph.output}
