"""Read the metadata of any .tflite model, on a device as on a desktop (no TensorFlow, no MediaPipe).

A .tflite file keeps named metadata buffers in its flatbuffer (`Model.metadata`) and, after
the flatbuffer, an optional zip archive of associated files (label files and the like).
Two buffers matter here:

- `EDGEACT_CONTRACT`: the JSON contract edgeact writes (what the input expects, names,
  labels); read with the TFLite schema that ships with the runtime;
- `TFLITE_METADATA`: the standard TFLite Model Metadata flatbuffer that MediaPipe Tasks and
  the TFLite Task Library read. It is decoded with the generated schema module that ships
  inside the `mediapipe` wheel, loaded from its file so that MediaPipe's own package (which
  imports TensorFlow) never runs; without MediaPipe installed only its presence is reported.
"""
from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edgeact.errors import ModelLoadError

CONTRACT_ENTRY = "EDGEACT_CONTRACT"
STANDARD_ENTRY = "TFLITE_METADATA"
_SCHEMA_FILE = ("tasks", "metadata", "metadata_schema_py_generated.py")


@dataclass
class ModelMetadata:
    """What a .tflite carries besides its graph."""

    entries: list[str] = field(default_factory=list)  # names of all Model.metadata buffers
    contract: dict | None = None  # edgeact's JSON contract, when edgeact wrote the model
    standard: dict | None = None  # the decoded TFLite Model Metadata, when present and decodable
    standard_note: str = ""  # why `standard` is None
    associated_files: dict[str, bytes] = field(default_factory=dict)

    @property
    def labels(self) -> list[str] | None:
        """Class labels: the contract's, else the first TENSOR_AXIS_LABELS file of the standard metadata."""
        if self.contract and self.contract.get("labels"):
            return list(self.contract["labels"])
        for output in (self.standard or {}).get("outputs", []):
            for f in output.get("associated_files", []):
                if f["type"] == "TENSOR_AXIS_LABELS" and f["name"] in self.associated_files:
                    return self.associated_files[f["name"]].decode("utf-8").splitlines()
        return None

    def to_dict(self) -> dict:
        return {"entries": self.entries, "contract": self.contract, "standard": self.standard,
                "standard_note": self.standard_note, "associated_files": sorted(self.associated_files),
                "labels": self.labels}


def load_metadata_schema():
    """MediaPipe's generated metadata schema module, loaded from its file (it imports only flatbuffers)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_SCHEMA_FILE)
    if not path.exists():
        return None
    module_spec = importlib.util.spec_from_file_location("_edgeact_tflite_metadata_schema", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _text(value) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _tensor(fb, md) -> dict:
    item = {"name": _text(md.name), "description": _text(md.description), "associated_files": []}
    props = md.content.contentProperties if md.content is not None else None
    if props is not None and hasattr(props, "colorSpace"):
        item["color_space"] = _names(fb.ColorSpaceType).get(props.colorSpace, str(props.colorSpace))
    for unit in md.processUnits or []:
        if unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions:
            item["normalization"] = {"mean": [float(v) for v in unit.options.mean],
                                     "std": [float(v) for v in unit.options.std]}
    for f in md.associatedFiles or []:
        item["associated_files"].append(
            {"name": _text(f.name), "type": _names(fb.AssociatedFileType).get(f.type, str(f.type))})
    return item


def decode_standard_metadata(buffer: bytes, fb=None) -> dict:
    """The TFLite Model Metadata flatbuffer as a plain dict (name, version, inputs, outputs)."""
    fb = fb or load_metadata_schema()
    md = fb.ModelMetadataT.InitFromPackedBuf(bytearray(buffer), 0)
    graph = (md.subgraphMetadata or [None])[0]
    return {
        "name": _text(md.name), "version": _text(md.version), "description": _text(md.description),
        "author": _text(md.author), "min_parser_version": _text(md.minParserVersion),
        "inputs": [_tensor(fb, t) for t in (graph.inputTensorMetadata or [])] if graph else [],
        "outputs": [_tensor(fb, t) for t in (graph.outputTensorMetadata or [])] if graph else [],
    }


def _associated_files(data: bytes) -> dict[str, bytes]:
    # The zip sits after the flatbuffer; zipfile finds its directory from the end.
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError):
        return {}


def read_metadata(path: str | Path) -> ModelMetadata:
    """The metadata of a .tflite file (empty when it has none).

    Raises:
        ModelLoadError: not a readable TFLite model.
    """
    from .tflite_model import read_checked
    from .validate_tflite import read_metadata_entries

    path = Path(path)
    raw, data = read_checked(path, lambda data: (read_metadata_entries(data), data))
    meta = ModelMetadata(entries=sorted(raw), associated_files=_associated_files(data))
    if CONTRACT_ENTRY in raw:
        try:
            meta.contract = json.loads(bytes(raw[CONTRACT_ENTRY]).decode("utf-8"))
        except ValueError:
            raise ModelLoadError(f"{path} has an unreadable {CONTRACT_ENTRY} entry; re-export it") from None
    if STANDARD_ENTRY not in raw:
        meta.standard_note = "no TFLite Model Metadata"
    else:
        fb = load_metadata_schema()
        if fb is None:
            meta.standard_note = "TFLite Model Metadata present; pip install mediapipe to decode it"
        else:
            meta.standard = decode_standard_metadata(bytes(raw[STANDARD_ENTRY]), fb)
    return meta
