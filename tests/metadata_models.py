"""Shared by the metadata tests: a converted model carrying every metadata field edgeact writes, and
byte-level helpers that find and replace its TFLITE_METADATA buffer and its associated-files zip."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

LABELS = ["cat", "dog", "bird", "fish"]


def convert_with_metadata(model_file: Path, pixels_npy: Path, out: Path) -> Path:
    """The small CNN as an INT8 .tflite with a float interface (so NormalizationOptions and Stats are
    written), torch preprocessing (three different means and stds) and labels (an associated file)."""
    from converters import ConvertOptions, convert
    from edgeact.config import IOType
    from edgeact.data.preprocess import make_preprocessing

    convert(model_file, str(pixels_npy), out, ConvertOptions(
        io_type=IOType.FLOAT, preprocessing=make_preprocessing("torch"), labels=LABELS, samples=40, holdout=20,
        progress=False, layer_error="never"))
    return out / f"{Path(model_file).stem}_int8.tflite"


def metadata_span(data: bytes, name: str = "TFLITE_METADATA") -> tuple[int, int]:
    """(start, end) of a metadata entry's bytes in the file, found through the LiteRT schema module
    (not edgeact's reader)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        if model.Metadata(i).Name().decode() == name:
            buffer = model.Buffers(model.Metadata(i).Buffer())
            start = buffer._tab.Vector(buffer._tab.Offset(4))  # the data vector's first byte
            return start, start + buffer.DataLength()
    raise AssertionError(f"no {name} entry")


def zip_start(data: bytes) -> int:
    """Where the associated-files zip starts in the file (zipfile's offsets count from the file's start)."""
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return min(info.header_offset for info in archive.infolist())


def mediapipe_metadata_module():
    """MediaPipe's flatc-generated metadata module, loaded from its file (it imports flatbuffers only),
    or None when mediapipe is not installed."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "tasks" / "metadata" / "metadata_schema_py_generated.py"
    if not path.exists():
        return None
    module_spec = importlib.util.spec_from_file_location("_mediapipe_metadata_schema_py_generated", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def f32(tree):
    """A tree with its floats rounded to float32, as the flatbuffer stores them."""
    if isinstance(tree, dict):
        return {k: f32(v) for k, v in tree.items()}
    if isinstance(tree, tuple):
        return tuple(f32(v) for v in tree)
    if isinstance(tree, list):
        return [f32(v) for v in tree]
    if isinstance(tree, float):
        return float(np.float32(tree))
    return tree
