"""Read the metadata of any .tflite model, on a device as on a desktop (no TensorFlow, no MediaPipe).

A .tflite file keeps named metadata buffers in its flatbuffer (`Model.metadata`) and, after
the flatbuffer, an optional zip archive of associated files (label files and the like).
Two buffers matter here:

- `EDGEACT_CONTRACT`: the JSON contract edgeact writes (what the input expects, names,
  labels);
- `TFLITE_METADATA`: the standard TFLite Model Metadata flatbuffer that MediaPipe Tasks and
  the TFLite Task Library read, decoded by `tflite_metadata` with edgeact's bounds-checked
  reader and the schema table generated into `tflite_metadata_schema`.

Everything here comes from the file, so nothing in it is trusted: a corrupt metadata buffer,
contract or zip archive (huge declared lengths, bad offsets, a zip bomb, a broken central
directory) becomes one line in `ModelMetadata.problems`, and the rest of the model still reads.
Only a file that is not a readable TFLite model raises.
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from edgeact.errors import ModelLoadError, first_line, shown

from .flatbuf import FlatbufferError

try:
    from lzma import LZMAError
except ImportError:  # a Python built without lzma: zipfile then refuses LZMA entries with NotImplementedError
    LZMAError = RuntimeError

CONTRACT_ENTRY = "EDGEACT_CONTRACT"
STANDARD_ENTRY = "TFLITE_METADATA"
LABEL_FILE_TYPES = ("TENSOR_AXIS_LABELS", "TENSOR_VALUE_LABELS")
# The associated files edgeact reads out of the zip: label files are kilobytes; a vocabulary a
# few megabytes. Larger entries (a zip bomb declares gigabytes) are listed as a problem, not read.
MAX_ASSOCIATED_FILES = 256
MAX_ASSOCIATED_FILE_BYTES = 16 * 2**20
MAX_ASSOCIATED_TOTAL_BYTES = 64 * 2**20
# What zipfile raises on a hostile archive: a bad signature or CRC, an impossible size or offset,
# an unknown or encrypted compression (NotImplementedError and RuntimeError), a corrupt stream.
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, RuntimeError,
               zlib.error, LZMAError, struct.error, OverflowError, KeyError, IndexError)


@dataclass
class ModelMetadata:
    """What a .tflite carries besides its graph."""

    entries: list[str] = field(default_factory=list)  # names of all Model.metadata buffers
    contract: dict | None = None  # edgeact's JSON contract, when edgeact wrote the model
    standard: dict | None = None  # the TFLite Model Metadata (`tflite_metadata.describe`), when readable
    standard_note: str = ""  # why `standard` is None
    associated_files: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # one line each: what is wrong with the metadata

    @property
    def labels(self) -> list[str] | None:
        """Class labels: the contract's, else the first label file the standard metadata names."""
        if self.contract and self.contract.get("labels"):
            return list(self.contract["labels"])
        for output in (self.standard or {}).get("outputs", []):
            for f in output.get("associated_files", []):
                if f["type"] in LABEL_FILE_TYPES and f["name"] in self.associated_files:
                    return self.associated_files[f["name"]].decode("utf-8", errors="replace").splitlines()
        return None

    def to_dict(self) -> dict:
        return {"entries": self.entries, "contract": self.contract, "standard": self.standard,
                "standard_note": self.standard_note, "associated_files": sorted(self.associated_files),
                "labels": self.labels, "problems": self.problems}


def read_metadata(path: str | Path) -> ModelMetadata:
    """The metadata of a .tflite file (empty when it has none); what is wrong with it in `problems`.

    Raises:
        ModelLoadError: not a readable TFLite model (missing, not a flatbuffer with the TFL3 identifier).
    """
    from .tflite_model import read_checked
    from .validate_tflite import read_metadata_entries

    data = read_checked(Path(path), lambda data: data)
    meta = ModelMetadata()
    try:
        raw = read_metadata_entries(data)
    except FlatbufferError as exc:
        meta.standard_note = "the model's list of metadata entries is unreadable"
        meta.problems.append(f"the model's list of metadata entries is corrupt ({exc}); re-export the model")
        return meta
    meta.entries = sorted(raw)
    meta.contract, problem = _contract(raw)
    if problem:
        meta.problems.append(problem)
    if STANDARD_ENTRY not in raw:
        meta.standard_note = "no TFLite Model Metadata"
    else:
        meta.standard, problem = _standard(raw[STANDARD_ENTRY])
        if problem:
            meta.standard_note = "TFLite Model Metadata present but unreadable"
            meta.problems.append(problem)
    meta.associated_files = _associated_files(data, meta.problems)
    for name in _declared_files(meta.standard):
        if name not in meta.associated_files and not any(f"'{shown(name)}'" in p for p in meta.problems):
            meta.problems.append(f"the metadata names the associated file '{shown(name)}' but the model carries "
                                 "no readable file of that name (its zip archive is missing or corrupt)")
    return meta


def read_contract(path: str | Path) -> dict | None:
    """edgeact's contract of a .tflite file, None when the file has none.

    Raises:
        ModelLoadError: not a readable TFLite model, or its contract entry is corrupt.
    """
    from .tflite_model import read_checked
    from .validate_tflite import read_metadata_entries

    path = Path(path)
    contract, problem = _contract(read_checked(path, read_metadata_entries))
    if problem:
        raise ModelLoadError(f"{path}: {problem}")
    return contract


def _contract(raw: dict[str, bytes]) -> tuple[dict | None, str | None]:
    if CONTRACT_ENTRY not in raw:
        return None, None
    fix = "re-export the model with edgeact convert"
    try:
        contract = json.loads(bytes(raw[CONTRACT_ENTRY]).decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError is one too
        return None, f"the {CONTRACT_ENTRY} entry is not JSON ({first_line(exc, 80)}); {fix}"
    wrong = _contract_shape(contract)
    return (None, f"the {CONTRACT_ENTRY} entry is not an edgeact contract ({wrong}); {fix}") if wrong \
        else (contract, None)


def _contract_shape(contract) -> str | None:
    """What is wrong with the shape of a decoded contract, for the keys edgeact's readers index."""
    if not isinstance(contract, dict):
        return f"a JSON {type(contract).__name__}, not an object"
    for key, kind in (("input", dict), ("outputs", list), ("labels", list), ("name", str), ("description", str)):
        if contract.get(key) is not None and not isinstance(contract[key], kind):
            return f"'{key}' is a {type(contract[key]).__name__}"
    for key in ("outputs", "labels"):
        if any(not isinstance(v, str) for v in contract.get(key) or []):
            return f"'{key}' holds a value that is not a string"
    for key, kind in (("expects", str), ("color_space", str), ("preprocessing", dict), ("pixel_in", dict)):
        value = (contract.get("input") or {}).get(key)
        if value is not None and not isinstance(value, kind):
            return f"'input.{key}' is a {type(value).__name__}"
    return None


def _standard(buffer: bytes) -> tuple[dict | None, str | None]:
    from .tflite_metadata import describe, read_tree

    try:
        return describe(read_tree(buffer)), None
    except FlatbufferError as exc:
        return None, (f"the TFLite Model Metadata ({STANDARD_ENTRY}) is corrupt: {exc}; MediaPipe Tasks and "
                      "the TFLite Task Library will refuse it; re-export the model with edgeact convert")


def _declared_files(standard: dict | None) -> list[str]:
    """The associated files the standard metadata says the model carries."""
    if not standard:
        return []
    tensors = standard["inputs"] + standard["outputs"]
    return [f["name"] for f in standard["associated_files"] + [f for t in tensors for f in t["associated_files"]]]


def _associated_files(data: bytes, problems: list[str]) -> dict[str, bytes]:
    """The zip archive after the flatbuffer (zipfile finds its directory from the end), entries bounded."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS:  # no archive, or none zipfile can find: a named file that is missing says so
        return {}
    files: dict[str, bytes] = {}
    total = 0
    with archive:
        try:
            infos = archive.infolist()
        except _ZIP_ERRORS as exc:
            problems.append(f"the associated-files zip is corrupt ({first_line(exc, 120)})")
            return {}
        if len(infos) > MAX_ASSOCIATED_FILES:
            problems.append(f"the associated-files zip holds {len(infos)} entries; edgeact reads the first "
                            f"{MAX_ASSOCIATED_FILES}")
            infos = infos[:MAX_ASSOCIATED_FILES]
        for info in infos:
            name = shown(info.filename)
            if info.file_size > MAX_ASSOCIATED_FILE_BYTES or total + info.file_size > MAX_ASSOCIATED_TOTAL_BYTES:
                problems.append(f"associated file '{name}' declares {info.file_size:,} bytes, over the "
                                f"{MAX_ASSOCIATED_FILE_BYTES // 2**20} MiB per file and "
                                f"{MAX_ASSOCIATED_TOTAL_BYTES // 2**20} MiB in all edgeact reads; not read")
                continue
            try:
                with archive.open(info) as handle:
                    content = handle.read(MAX_ASSOCIATED_FILE_BYTES + 1)  # zipfile stops at the declared size
            except _ZIP_ERRORS as exc:
                problems.append(f"associated file '{name}' in the zip is corrupt ({first_line(exc, 120)})")
                continue
            files[info.filename] = content
            total += len(content)
    return files
