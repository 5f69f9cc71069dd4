"""The metadata contract every converted model carries, and its two encodings.

One contract (name, description, versions, what the input expects, output names, labels)
is built once per conversion and written twice:

- into every .tflite as the standard TFLite Model Metadata (the flatbuffer MediaPipe Tasks,
  the TFLite Task Library and Android Studio's model binding read), packed here on
  `flatbuffers.Builder` from the schema table generated from metadata_schema.fbs
  (`edgeact.formats.tflite_metadata_schema`), with the labels as an associated file of type
  TENSOR_AXIS_LABELS; plus the same contract as JSON under the model's `EDGEACT_CONTRACT`
  metadata entry. Both are read back by `edgeact.formats.metadata`, on a device too;
- into every .onnx as `metadata_props` (`edgeact.contract` JSON, `labels`, `preprocessing`,
  `input_layout`).

Host-side: TensorFlow's flatbuffer utilities are imported lazily; MediaPipe is not needed.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from edgeact import __version__
from edgeact.data.preprocess import Preprocessing
from edgeact.formats import tflite_metadata_schema as metadata_schema
from edgeact.formats.metadata import CONTRACT_ENTRY, STANDARD_ENTRY
from edgeact.formats.tflite_metadata import min_parser_version

LABELS_FILE = "labels.txt"


def pixel_normalization(pre: Preprocessing, channels: int) -> tuple[list[float], list[float]]:
    """Mean and std in pixel units, `(x - mean) / std` on 0..255, as NormalizationOptions holds them."""
    mean = np.broadcast_to(np.asarray(pre.mean, np.float64), (channels,)) / pre.scale
    std = np.broadcast_to(np.asarray(pre.std, np.float64), (channels,)) / pre.scale
    return [float(m) for m in mean], [float(s) for s in std]


def color_space(pre: Preprocessing, channels: int, pixel_in: bool) -> str:
    """RGB or GRAYSCALE; UNKNOWN for a float caffe input, which wants BGR (not in the schema)."""
    if channels == 1:
        return "GRAYSCALE"
    if channels == 3 and (not pre.bgr or pixel_in):
        return "RGB"
    return "UNKNOWN"


def build_contract(job, io_type: str, pixel_in: dict | None, source_sha256: str | None) -> dict:
    """The contract of one converted model; `pixel_in` is a `PixelIn.to_dict()` or None."""
    pre = job.options.preprocessing
    channels = job.input_shape[-1]
    mean, std = pixel_normalization(pre, channels)
    expects = (pixel_in["description"] if pixel_in else
               f"{io_type} tensor of {pre.preset} preprocessed pixels ({pre.description})")
    labels = list(job.options.labels) if job.options.labels else None
    return {
        "schema_version": 1,
        "name": job.name,
        "description": f"{job.name}: converted by edgeact {__version__}; input: {expects}",
        "version": (source_sha256 or "unknown")[:12],  # the source model's content, not a counter
        "edgeact_version": __version__,
        "input": {
            "name": job.input_name, "layout": "NHWC", "shape": list(job.input_shape), "dtype": io_type,
            "color_space": color_space(pre, channels, pixel_in is not None),
            "expects": expects, "preprocessing": pre.to_dict(), "pixel_in": pixel_in,
            "normalization": {"mean": mean, "std": std},
        },
        "outputs": list(job.output_names),
        "labels": labels,
    }


def add_tflite_metadata(model_bytes: bytes, contract: dict) -> bytes:
    """The model with the contract as JSON and as standard TFLite Model Metadata, plus its label file.

    The metadata is built the way MediaPipe's metadata populator builds it (`standard_metadata`),
    stored as the `TFLITE_METADATA` buffer, the label file appended as an uncompressed zip.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    entries = {CONTRACT_ENTRY: json.dumps(contract, sort_keys=True).encode(),
               STANDARD_ENTRY: standard_metadata(contract)}
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() not in entries]
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name.encode(), len(model.buffers) - 1
        model.metadata.append(entry)
    packed = io.BytesIO(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    if contract["labels"]:
        with zipfile.ZipFile(packed, "a") as archive:  # "a" on non-zip data appends an archive
            archive.writestr(LABELS_FILE, "\n".join(contract["labels"]))
    return packed.getvalue()


def metadata_tree(contract: dict) -> dict:
    """The contract as a TFLite Model Metadata tree (`edgeact.formats.tflite_metadata`'s shape: .fbs field
    names; enums by name; a union as (member, table)), min_parser_version computed from what it uses."""
    inp = contract["input"]
    input_md = {"name": inp["name"], "description": inp["expects"],
                "content": {"content_properties": ("ImageProperties", {"color_space": inp["color_space"]})}}
    if inp["dtype"] == "float":  # a uint8 pixel-in input takes raw pixels: its normalisation is inside
        mean, std = inp["normalization"]["mean"], inp["normalization"]["std"]
        input_md["process_units"] = [{"options": ("NormalizationOptions", {"mean": mean, "std": std})}]
        input_md["stats"] = {"max": [(255 - m) / s for m, s in zip(mean, std)],
                             "min": [(0 - m) / s for m, s in zip(mean, std)]}
    outputs = []
    for name in contract["outputs"]:
        output_md = {"name": name, "description": "model output"}
        if contract["labels"]:
            output_md["description"] = "class scores, one per label"
            output_md["associated_files"] = [{"name": LABELS_FILE, "type": "TENSOR_AXIS_LABELS",
                                              "description": "class labels, one per line, in output order"}]
        outputs.append(output_md)
    tree = {"name": contract["name"], "description": contract["description"], "version": contract["version"],
            "author": f"edgeact {contract['edgeact_version']}",
            "subgraph_metadata": [{"input_tensor_metadata": [input_md], "output_tensor_metadata": outputs}]}
    tree["min_parser_version"] = min_parser_version(tree)
    return tree


def standard_metadata(contract: dict) -> bytes:
    """The contract as a TFLite Model Metadata flatbuffer (schema: metadata_schema.fbs, identifier M001)."""
    return pack_metadata(metadata_tree(contract))


def pack_metadata(tree: dict) -> bytes:
    """A metadata tree as the flatbuffer, built on `flatbuffers.Builder` from the generated schema table.

    Children are packed before their table, in field order, as flatc's object API (`ModelMetadataT.Pack`)
    packs them, so the bytes equal what MediaPipe's own generated module writes for the same fields.
    """
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(_pack(builder, "ModelMetadata", tree), metadata_schema.FILE_IDENTIFIER)
    return bytes(builder.Output())


_PREPEND = {"bool": "Bool", "u8": "Uint8", "i8": "Int8", "u16": "Uint16", "i16": "Int16", "u32": "Uint32",
            "i32": "Int32", "u64": "Uint64", "i64": "Int64", "f32": "Float32", "f64": "Float64"}
_SIZE = {"bool": 1, "u8": 1, "i8": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4, "u64": 8, "i64": 8, "f32": 4, "f64": 8}


def _number(kind: str, value):
    """A scalar as stored: an enum name as its value."""
    if ":" in kind:
        names = {v: k for k, v in metadata_schema.ENUMS[kind.split(":", 1)[1]].items()}
        return names[value] if isinstance(value, str) else int(value)
    return value


def _pack(builder, table: str, obj: dict) -> int:
    if table not in metadata_schema.TABLES:
        raise ValueError(f"{table} is not among the metadata tables edgeact writes")
    fields = metadata_schema.TABLES[table]
    unknown = set(obj) - set(fields)
    if unknown:
        raise ValueError(f"{table} has no field {sorted(unknown)} in metadata_schema.fbs")
    refs = {}
    for name, (_, kind) in fields.items():
        if name in obj and obj[name] is not None:
            refs[name] = _pack_child(builder, kind, obj[name])
    builder.StartObject(len(fields))
    for name, (slot, kind) in fields.items():
        index = (slot - 4) // 2  # the field id: slot 4 is field 0
        if kind.startswith("union_type:"):
            union = kind.split(":", 1)[1]
            member = (obj.get(name[:-len("_type")]) or (None,))[0]
            if member is not None:
                ids = {v: k for k, v in metadata_schema.UNIONS[union].items()}
                builder.PrependUint8Slot(index, ids[member], 0)
        elif refs.get(name) is not None:
            builder.PrependUOffsetTRelativeSlot(index, refs[name], 0)
        elif name in obj and not kind.startswith(("[", "string", "table:", "union:")):
            getattr(builder, f"Prepend{_PREPEND[kind.split(':')[0]]}Slot")(index, _number(kind, obj[name]), 0)
    return builder.EndObject()


def _pack_child(builder, kind: str, value) -> int | None:
    """An offset child (string, table, union table, vector) packed ahead of its table; None for a scalar."""
    if kind == "string":
        return builder.CreateString(value)
    if kind.startswith("table:"):
        return _pack(builder, kind.split(":", 1)[1], value)
    if kind.startswith("union:"):
        member, table = value
        return None if table is None else _pack(builder, member, table)
    if not kind.startswith("["):
        return None
    inner = kind[1:-1]
    if inner == "string" or inner.startswith("table:"):
        offsets = [_pack_child(builder, inner, v) for v in value]
        builder.StartVector(4, len(offsets), 4)
        for offset in reversed(offsets):
            builder.PrependUOffsetTRelative(offset)
        return builder.EndVector()
    scalar = inner.split(":")[0]
    builder.StartVector(_SIZE[scalar], len(value), _SIZE[scalar])
    for v in reversed(value):
        getattr(builder, f"Prepend{_PREPEND[scalar]}")(_number(inner, v))
    return builder.EndVector()


def onnx_metadata_props(contract: dict) -> dict[str, str]:
    """The contract as ONNX `metadata_props` (string to string)."""
    props = {
        "edgeact.contract": json.dumps(contract, sort_keys=True),
        "edgeact.version": contract["edgeact_version"],
        "input_layout": contract["input"]["layout"],
        "preprocessing": json.dumps(contract["input"]["preprocessing"], sort_keys=True),
    }
    if contract["labels"]:
        props["labels"] = "\n".join(contract["labels"])
    return props


def add_onnx_metadata(path: Path, contract: dict, layout: str) -> None:
    """Write the contract into an .onnx file's metadata_props, in place."""
    import onnx

    model = onnx.load(str(path))
    contract = {**contract, "input": {**contract["input"], "layout": layout.upper()}}
    existing = {p.key: p for p in model.metadata_props}
    for key, value in onnx_metadata_props(contract).items():
        prop = existing.get(key) or model.metadata_props.add()
        prop.key, prop.value = key, value
    model.doc_string = contract["description"]
    onnx.save(model, str(path))
