"""The metadata contract every converted model carries, and its two encodings.

One contract (name, description, versions, what the input expects, output names, labels)
is built once per conversion and written twice:

- into every .tflite as the standard TFLite Model Metadata (the flatbuffer MediaPipe Tasks,
  the TFLite Task Library and Android Studio's model binding read), built with the
  `flatbuffers` package and the generated metadata schema module that ships in the
  `mediapipe` wheel, with the labels as an associated file of type TENSOR_AXIS_LABELS; plus the same contract as JSON
  under the model's `EDGEACT_CONTRACT` metadata entry, which a device reads with the TFLite
  schema alone (no MediaPipe) — see `edgeact.formats.metadata`;
- into every .onnx as `metadata_props` (`edgeact.contract` JSON, `labels`, `preprocessing`,
  `input_layout`).

Host-side: TensorFlow's flatbuffer utilities are imported lazily; MediaPipe's package never runs.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from edgeact import __version__
from edgeact.data.preprocess import Preprocessing
from edgeact.errors import RuntimeUnavailableError
from edgeact.formats.metadata import CONTRACT_ENTRY, STANDARD_ENTRY, load_metadata_schema

LABELS_FILE = "labels.txt"
METADATA_IDENTIFIER = b"M001"  # the metadata flatbuffer's file identifier
# The oldest metadata parser that reads every field written here (the schema's 1.0 fields:
# image properties, normalisation options, associated label files).
MIN_PARSER_VERSION = "1.0.0"


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

    MediaPipe's own metadata writer needs a native module its current wheels lack
    (`mediapipe.tasks.cc...._pywrap_metadata_version`), so the metadata is built the way that
    writer's populator builds it: the generated schema's object API packed by `flatbuffers`,
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


def standard_metadata(contract: dict) -> bytes:
    """The contract as a TFLite Model Metadata flatbuffer (schema: MediaPipe's metadata_schema.fbs)."""
    import flatbuffers

    fb = load_metadata_schema()
    if fb is None:
        raise RuntimeUnavailableError(
            "writing TFLite Model Metadata needs the metadata schema that ships with MediaPipe; "
            "pip install 'edgeact[convert]' (or pip install mediapipe)")
    inp = contract["input"]
    image = fb.ImagePropertiesT()
    image.colorSpace = getattr(fb.ColorSpaceType, inp["color_space"])
    content = fb.ContentT()
    content.contentPropertiesType = fb.ContentProperties.ImageProperties
    content.contentProperties = image
    input_md = fb.TensorMetadataT()
    input_md.name, input_md.description, input_md.content = inp["name"], inp["expects"], content
    if inp["dtype"] == "float":  # a uint8 pixel-in input takes raw pixels: its normalisation is inside
        norm = fb.NormalizationOptionsT()
        norm.mean, norm.std = inp["normalization"]["mean"], inp["normalization"]["std"]
        unit = fb.ProcessUnitT()
        unit.optionsType, unit.options = fb.ProcessUnitOptions.NormalizationOptions, norm
        input_md.processUnits = [unit]
        stats = fb.StatsT()
        stats.min = [(0 - m) / s for m, s in zip(norm.mean, norm.std)]
        stats.max = [(255 - m) / s for m, s in zip(norm.mean, norm.std)]
        input_md.stats = stats
    outputs = []
    for name in contract["outputs"]:
        output_md = fb.TensorMetadataT()
        output_md.name, output_md.description = name, "model output"
        if contract["labels"]:
            output_md.description = "class scores, one per label"
            labels = fb.AssociatedFileT()
            labels.name, labels.type = LABELS_FILE, fb.AssociatedFileType.TENSOR_AXIS_LABELS
            labels.description = "class labels, one per line, in output order"
            output_md.associatedFiles = [labels]
        outputs.append(output_md)
    graph = fb.SubGraphMetadataT()
    graph.inputTensorMetadata, graph.outputTensorMetadata = [input_md], outputs
    md = fb.ModelMetadataT()
    md.name, md.description, md.version = contract["name"], contract["description"], contract["version"]
    md.author = f"edgeact {contract['edgeact_version']}"
    md.subgraphMetadata = [graph]
    md.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(md.Pack(builder), METADATA_IDENTIFIER)
    return bytes(builder.Output())


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
