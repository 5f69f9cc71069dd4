"""The TFLite Model Metadata edgeact writes (converters/metadata.py) and reads (edgeact/formats/tflite_metadata.py).

- the schema table: the committed file is what tools/gen_tflite_metadata_schema.py generates from
  the metadata_schema.fbs in the mediapipe wheel (when installed), and the tool reads a .fbs right;
- own writer, own reader: every field round-trips; min_parser_version follows the rule of the
  schema (and of MediaPipe's metadata_version.cc);
- MediaPipe's generated module (where installed) packs the same fields to the same bytes and
  reads back every field edgeact wrote into a converted model;
- hostile buffers: a one-line FlatbufferError (never IndexError, struct.error or a huge
  allocation), and `read_metadata` / `edgeact inspect` on broken files show the graph and one
  line on what is wrong with the metadata.
"""
from __future__ import annotations

import importlib.util
import json
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from converters.metadata import metadata_tree, pack_metadata
from edgeact.formats import tflite_metadata_schema as schema
from edgeact.formats.flatbuf import FlatbufferError
from edgeact.formats.tflite_metadata import describe, min_parser_version, read_tree
from tests.metadata_models import (
    LABELS,
    convert_with_metadata,
    f32,
    mediapipe_metadata_module,
    metadata_span,
    zip_start,
)

ROOT = Path(__file__).resolve().parents[1]


def _contract(dtype: str, labels) -> dict:
    return {"name": "net", "description": "net: converted by edgeact", "version": "0123456789ab",
            "edgeact_version": "9.9", "outputs": ["scores", "embedding"], "labels": labels,
            "input": {"name": "image", "expects": "float tensor", "color_space": "RGB", "dtype": dtype,
                      "normalization": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}}}


CONTRACTS = [_contract("float", LABELS), _contract("float", None), _contract("uint8", LABELS)]

# Every kind of field the schema table holds: [string], u32, i32, enums, model-level files, license.
FULL_TREE = {
    "name": "full", "description": "every kind of field", "version": "1", "author": "a", "license": "Apache-2.0",
    "associated_files": [{"name": "vocab.txt", "type": "VOCABULARY", "locale": "en", "description": "words"}],
    "subgraph_metadata": [{
        "name": "main", "description": "the graph",
        "input_tensor_metadata": [{
            "name": "image", "dimension_names": ["batch", "height", "width", "channels"],
            "content": {"content_properties": ("ImageProperties", {"color_space": "GRAYSCALE",
                                                                   "default_size": {"width": 640, "height": 480}}),
                        "range": {"min": -3, "max": 7}},
            "process_units": [{"options": ("NormalizationOptions", {"mean": [0.5], "std": [2.0]})}],
            "stats": {"max": [1.0], "min": [-1.0]}}],
        "output_tensor_metadata": [{"name": "scores", "associated_files": [
            {"name": "labels.txt", "type": "TENSOR_AXIS_LABELS", "description": "labels"},
            {"name": "labels_fr.txt", "type": "TENSOR_AXIS_LABELS", "locale": "fr"}]}]}],
}


# -- the schema table and its tool ---------------------------------------------------------------
def _tool():
    spec = importlib.util.spec_from_file_location("gen_tflite_metadata_schema",
                                                  ROOT / "tools" / "gen_tflite_metadata_schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tool_reads_fields_unions_enums_and_added_in_notes():
    fbs = """
    // Schema Semantic version: 2.1.0
    file_identifier "M001";
    enum Kind : byte {
      A = 0,
      // Added in: 1.7.0
      B = 3,
      C,
    }
    table Inner { x:uint; }
    union Choice {
      Inner,
      // Added in: 2.0.0
      Other,
    }
    // Added in: 1.9.0
    table Outer {
      name:string;
      pick:Choice;
      // Added in: 2.1.0
      kinds:[Kind];
      inners:[Inner] (deprecated);
    }
    """
    tool = _tool()
    parsed = tool.parse_fbs(fbs)
    assert parsed["version"] == "2.1.0" and parsed["identifier"] == "M001"
    assert parsed["enums"]["Kind"]["members"] == [("A", 0), ("B", 3), ("C", 4)]
    assert parsed["unions"]["Choice"]["members"] == [("Inner", 1), ("Other", 2)]
    assert parsed["added"] == {"Kind.B": "1.7.0", "Choice.Other": "2.0.0", "Outer.kinds": "2.1.0"}
    # a union takes two field ids (its type byte first); a deprecated field keeps its id
    assert tool.field_table(parsed, "Outer") == [
        ("name", 4, "string"), ("pick_type", 6, "union_type:Choice"), ("pick", 8, "union:Choice"),
        ("kinds", 10, "[i8:Kind]"), ("inners", 12, "[table:Inner]")]
    with pytest.raises(SystemExit, match="has a default"):
        tool.field_table(tool.parse_fbs("table T { x:int = 3; }"), "T")


def test_the_committed_schema_table_is_what_the_tool_generates():
    """It cannot drift from metadata_schema.fbs: regenerated from the wheel's .fbs (slots also checked against
    flatc's generated module there) and compared, all but the docstring naming the source."""
    tool = _tool()
    try:
        fbs, generated, source = tool.find_mediapipe_schema()
    except SystemExit:
        pytest.skip("mediapipe (the source of metadata_schema.fbs) is not installed: pip install 'edgeact[mediapipe]'")
    fresh = tool.generate(fbs, generated, source)
    committed = (ROOT / "edgeact" / "formats" / "tflite_metadata_schema.py").read_text()
    body = lambda text: text.split('"""', 2)[2]
    assert body(fresh) == body(committed), "run tools/gen_tflite_metadata_schema.py > edgeact/formats/..."
    assert "metadata_schema.fbs (schema 1.5.0)" in committed


# -- own writer, own reader ----------------------------------------------------------------------
@pytest.mark.parametrize("contract", CONTRACTS, ids=["float-labels", "float", "uint8-labels"])
def test_every_field_written_reads_back(contract):
    tree = metadata_tree(contract)
    data = pack_metadata(tree)
    assert data[4:8] == b"M001"
    assert read_tree(data) == f32(tree)
    shown = describe(read_tree(data))
    (image,) = shown["inputs"]
    assert shown["name"] == "net" and shown["author"] == "edgeact 9.9" and shown["min_parser_version"] == "1.0.0"
    assert image["color_space"] == "RGB" and image["description"] == "float tensor"
    if contract["input"]["dtype"] == "float":
        mean, std = contract["input"]["normalization"]["mean"], contract["input"]["normalization"]["std"]
        assert image["normalization"] == f32({"mean": mean, "std": std})
        assert np.allclose(image["stats"]["min"], [-m / s for m, s in zip(mean, std)], rtol=1e-6)
        assert np.allclose(image["stats"]["max"], [(255 - m) / s for m, s in zip(mean, std)], rtol=1e-6)
    else:
        assert "normalization" not in image and "stats" not in image
    files = [[f["name"], f["type"]] for t in shown["outputs"] for f in t["associated_files"]]
    assert files == ([["labels.txt", "TENSOR_AXIS_LABELS"]] * 2 if contract["labels"] else [])


def test_every_kind_of_field_round_trips():
    tree = {**FULL_TREE, "min_parser_version": min_parser_version(FULL_TREE)}
    back = read_tree(pack_metadata(tree))
    assert back == f32(tree)
    assert back["min_parser_version"] == "1.0.1"  # the VOCABULARY file
    shown = describe(back)
    assert shown["license"] == "Apache-2.0" and shown["associated_files"][0]["type"] == "VOCABULARY"
    assert shown["inputs"][0]["color_space"] == "GRAYSCALE"


def test_the_writer_refuses_a_field_the_schema_lacks():
    with pytest.raises(ValueError, match="no field"):
        pack_metadata({"name": "x", "colour": "red"})


# The members MediaPipe's mediapipe/tasks/cc/metadata/metadata_version.cc (GetMemberVersion) lists as
# added after 1.0.0, each in a tree that uses it; the rule: the highest such version, else 1.0.0.
_SUB = lambda **fields: {"subgraph_metadata": [fields]}
_FILE = lambda **f: _SUB(output_tensor_metadata=[{"associated_files": [f]}])
_UNIT = lambda member: _SUB(input_tensor_metadata=[{"process_units": [{"options": (member, None)}]}])
MEMBERS = [
    (_FILE(type="VOCABULARY"), "1.0.1"),
    (_SUB(input_process_units=[]), "1.1.0"),
    (_SUB(output_process_units=[]), "1.1.0"),
    (_UNIT("BertTokenizerOptions"), "1.1.0"),
    (_UNIT("SentencePieceTokenizerOptions"), "1.1.0"),
    (_SUB(input_tensor_groups=[]), "1.2.0"),
    (_SUB(output_tensor_groups=[]), "1.2.0"),
    (_UNIT("RegexTokenizerOptions"), "1.2.1"),
    (_SUB(input_tensor_metadata=[{"content": {"content_properties": ("AudioProperties", None)}}]), "1.3.0"),
    (_FILE(type="SCANN_INDEX_FILE"), "1.4.0"),
    (_FILE(name="x", version="2"), "1.4.1"),
    (_SUB(custom_metadata=[]), "1.5.0"),
    ({"associated_files": [{"type": "VOCABULARY"}]}, "1.0.1"),  # model-level files count too
    (FULL_TREE, "1.0.1"),
    ({**FULL_TREE, "subgraph_metadata": [{"custom_metadata": [], "input_process_units": []}]}, "1.5.0"),
    ({"name": "nothing new", "subgraph_metadata": [{"associated_files": [{"type": "TENSOR_AXIS_LABELS"}]}]},
     "1.0.0"),
]


@pytest.mark.parametrize("tree, version", MEMBERS)
def test_min_parser_version_is_the_newest_member_used(tree, version):
    assert min_parser_version(tree) == version


def test_min_parser_version_of_what_edgeact_writes_is_computed_not_fixed():
    tree = metadata_tree(_contract("float", LABELS))
    assert tree["min_parser_version"] == "1.0.0"
    tree["subgraph_metadata"][0]["output_tensor_metadata"][0]["associated_files"][0]["version"] = "3"
    assert min_parser_version(tree) == "1.4.1"
    assert min_parser_version(read_tree(pack_metadata(tree))) == "1.4.1"  # the same from the bytes


def test_min_parser_version_matches_mediapipes_native_rule():
    """Where MediaPipe's native metadata-version module is installed (its current wheels lack it)."""
    spec = importlib.util.find_spec("mediapipe")  # looked for on disk: importing mediapipe takes seconds
    folder = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    if folder is None or not list((folder / "tasks" / "cc" / "metadata" / "python").glob("_pywrap_metadata_version*")):
        pytest.skip("this mediapipe wheel has no native _pywrap_metadata_version (1.2.3 ships none)")
    from mediapipe.tasks.cc.metadata.python import _pywrap_metadata_version as native

    for tree, version in MEMBERS[:1] + MEMBERS[9:12] + MEMBERS[-1:]:
        data = pack_metadata(tree)
        assert native.GetMinimumMetadataParserVersion(bytearray(data)) == version


# -- MediaPipe's generated module as the independent reader and writer -------------------------
def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _to_mediapipe(fb, table: str, tree: dict):
    """A tree as MediaPipe's object API objects (ModelMetadataT and the rest), enums by its own classes."""
    obj = getattr(fb, f"{table}T")()
    for field, (_, kind) in schema.TABLES[table].items():
        if field not in tree:
            continue
        value, attr, base = tree[field], _camel(field), kind.strip("[]")
        convert = lambda v: v
        if base.startswith("table:"):
            convert = lambda v, sub=base[6:]: _to_mediapipe(fb, sub, v)
        elif base.startswith("union:"):
            member, sub = value
            setattr(obj, f"{attr}Type", getattr(getattr(fb, base[6:]), member))
            value, convert = sub, lambda v, sub=member: _to_mediapipe(fb, sub, v)
        elif ":" in base:
            convert = lambda v, enum=base.split(":")[1]: getattr(getattr(fb, enum), v)
        setattr(obj, attr, [convert(v) for v in value] if kind.startswith("[") else convert(value))
    return obj


def _names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _from_mediapipe(fb, table: str, obj) -> dict:
    """What MediaPipe's generated reader decoded, in the tree shape (its enum names, its union ids)."""
    tree = {}
    for field, (_, kind) in schema.TABLES[table].items():
        if kind.startswith("union_type:"):
            continue
        attr, base = _camel(field), kind.strip("[]")
        value = getattr(obj, attr)
        if base.startswith("union:"):
            type_id = getattr(obj, f"{attr}Type")
            if type_id:
                member = _names(getattr(fb, base[6:]))[type_id]
                tree[field] = (member, None if value is None else _from_mediapipe(fb, member, value))
            continue
        if ":" in base and not base.startswith("table:"):
            tree[field] = _names(getattr(fb, base.split(":")[1]))[value]
        elif value is None:
            continue
        elif base.startswith("table:"):
            one = lambda v, sub=base[6:]: _from_mediapipe(fb, sub, v)
            tree[field] = [one(v) for v in value] if kind.startswith("[") else one(value)
        elif base == "string":
            tree[field] = [v.decode() for v in value] if kind.startswith("[") else value.decode()
        elif kind.startswith("["):
            tree[field] = [float(v) if base == "f32" else int(v) for v in np.asarray(value).tolist()]
        else:
            tree[field] = value
    return tree


@pytest.fixture(scope="module")
def fb():
    module = mediapipe_metadata_module()
    if module is None:
        pytest.skip("the cross-check reads with MediaPipe's generated module: pip install 'edgeact[mediapipe]'")
    return module


@pytest.mark.parametrize("tree", [metadata_tree(c) for c in CONTRACTS] + [FULL_TREE],
                         ids=["float-labels", "float", "uint8-labels", "full"])
def test_mediapipes_object_api_packs_the_same_bytes_and_reads_the_same_tree(fb, tree):
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(_to_mediapipe(fb, "ModelMetadata", tree).Pack(builder), b"M001")
    ours = pack_metadata(tree)
    assert bytes(builder.Output()) == ours  # byte for byte what MediaPipe's populator would write
    theirs = _from_mediapipe(fb, "ModelMetadata", fb.ModelMetadataT.InitFromPackedBuf(bytearray(ours), 0))
    assert theirs == read_tree(ours)
    assert fb.ModelMetadata.ModelMetadataBufferHasIdentifier(ours, 0)


@pytest.fixture(scope="module")
def meta_model(small_cnn_file, pixels_npy, tmp_path_factory) -> Path:
    return convert_with_metadata(small_cnn_file, pixels_npy, tmp_path_factory.mktemp("meta"))


@pytest.mark.slow
def test_mediapipe_reads_back_every_field_edgeact_wrote(fb, meta_model):
    """The converted file's TFLITE_METADATA, found with LiteRT's schema module and decoded by MediaPipe's
    generated module, holds exactly the tree edgeact's writer built from the contract in the same file."""
    data = meta_model.read_bytes()
    start, end = metadata_span(data)
    contract_start, contract_end = metadata_span(data, "EDGEACT_CONTRACT")
    contract = json.loads(data[contract_start:contract_end])
    theirs = _from_mediapipe(fb, "ModelMetadata", fb.ModelMetadataT.InitFromPackedBuf(bytearray(data[start:end]), 0))
    assert theirs == f32(metadata_tree(contract))
    graph = theirs["subgraph_metadata"][0]
    assert graph["input_tensor_metadata"][0]["process_units"][0]["options"][0] == "NormalizationOptions"
    assert graph["output_tensor_metadata"][0]["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    assert theirs["min_parser_version"] == "1.0.0"
    with zipfile.ZipFile(meta_model) as archive:
        assert archive.read("labels.txt").decode().splitlines() == LABELS


# -- hostile buffers: the own reader -------------------------------------------------------------
def _patch(data: bytes, at: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


def _mean_vector(data: bytes) -> int:
    """Byte position of the NormalizationOptions mean vector's length field in FULL_TREE's buffer."""
    at = data.find(struct.pack("<If", 1, 0.5))
    assert at > 0
    return at


@pytest.mark.parametrize("length", [2**32 - 1, 2**31, 2**30, 10**6])
def test_a_huge_vector_length_is_refused_before_anything_is_allocated(length):
    data = _patch(pack_metadata(FULL_TREE), _mean_vector(pack_metadata(FULL_TREE)), "<I", length)
    with pytest.raises(FlatbufferError, match=r"NormalizationOptions.*mean|process_units.*mean") as caught:
        read_tree(data)
    assert f"({length} items)" in str(caught.value) and "outside" in str(caught.value)


def test_offsets_and_vtables_outside_the_buffer_are_refused():
    good = pack_metadata(FULL_TREE)
    root = struct.unpack_from("<I", good, 0)[0]
    cases = {
        "root": _patch(good, 0, "<I", len(good) + 8),
        "vtable": _patch(good, root, "<i", -(2**31) + 1),
        "vtable size": _patch(good, root - struct.unpack_from("<i", good, root)[0], "<H", 3),
        "field": _patch(good, root - struct.unpack_from("<i", good, root)[0] + 4, "<H", 0xFFFF),
        "truncated": good[:len(good) // 2],
        "identifier": good[:4] + b"TFL3" + good[8:],
        "short": good[:6],
    }
    for what, data in cases.items():
        with pytest.raises(FlatbufferError) as caught:
            read_tree(data)
        message = str(caught.value)
        assert "\n" not in message and message, what


def test_offsets_that_point_at_the_same_data_over_and_over_are_cut_off():
    """Two vectors of 3000 entries each pointing at one table: 9 million tensor metadata with a 2 KB
    name if followed; the reader stops within a few times the buffer's size."""
    import flatbuffers

    builder = flatbuffers.Builder(0)
    name = builder.CreateString("x" * 2000)
    builder.StartObject(7)
    builder.PrependUOffsetTRelativeSlot(0, name, 0)
    tensor = builder.EndObject()
    builder.StartVector(4, 3000, 4)
    for _ in range(3000):
        builder.PrependUOffsetTRelative(tensor)
    tensors = builder.EndVector()
    builder.StartObject(10)
    builder.PrependUOffsetTRelativeSlot(2, tensors, 0)
    graph = builder.EndObject()
    builder.StartVector(4, 3000, 4)
    for _ in range(3000):
        builder.PrependUOffsetTRelative(graph)
    graphs = builder.EndVector()
    builder.StartObject(8)
    builder.PrependUOffsetTRelativeSlot(3, graphs, 0)
    builder.Finish(builder.EndObject(), b"M001")
    with pytest.raises(FlatbufferError, match="over and over"):
        read_tree(bytes(builder.Output()))


def _image_tensor(content_type: int, color_space: int) -> bytes:
    """ModelMetadata > SubGraphMetadata > TensorMetadata > Content (union type `content_type`) >
    ImageProperties, built field by field (the writer refuses union members it does not know)."""
    import flatbuffers

    builder = flatbuffers.Builder(0)
    slot = lambda table, field: (schema.TABLES[table][field][0] - 4) // 2
    builder.StartObject(len(schema.TABLES["ImageProperties"]))
    builder.PrependInt8Slot(slot("ImageProperties", "color_space"), color_space, 0)
    props = builder.EndObject()
    builder.StartObject(len(schema.TABLES["Content"]))
    builder.PrependUint8Slot(slot("Content", "content_properties_type"), content_type, 0)
    builder.PrependUOffsetTRelativeSlot(slot("Content", "content_properties"), props, 0)
    content = builder.EndObject()
    builder.StartObject(len(schema.TABLES["TensorMetadata"]))
    builder.PrependUOffsetTRelativeSlot(slot("TensorMetadata", "content"), content, 0)
    offset = builder.EndObject()
    for table, field in (("SubGraphMetadata", "input_tensor_metadata"), ("ModelMetadata", "subgraph_metadata")):
        builder.StartVector(4, 1, 4)
        builder.PrependUOffsetTRelative(offset)
        vector = builder.EndVector()
        builder.StartObject(len(schema.TABLES[table]))
        builder.PrependUOffsetTRelativeSlot(slot(table, field), vector, 0)
        offset = builder.EndObject()
    builder.Finish(offset, schema.FILE_IDENTIFIER)
    return bytes(builder.Output())


def test_values_this_schema_does_not_know_are_shown_not_refused():
    image = describe(read_tree(_image_tensor(2, 77)))["inputs"][0]
    assert image["content"] == "ImageProperties" and image["color_space"] == "77"
    assert describe(read_tree(_image_tensor(2, 1)))["inputs"][0]["color_space"] == "RGB"
    other = describe(read_tree(_image_tensor(9, 1)))["inputs"][0]
    assert other["content"] == "ContentProperties member 9" and "color_space" not in other


# -- read_metadata and inspect on broken files ---------------------------------------------------
def _inspect(path: Path) -> tuple[int, str]:
    from click.testing import CliRunner

    from edgeact.cli import cli

    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def _with_bytes(source: Path, out: Path, start: int, end: int, replacement: bytes) -> Path:
    data = source.read_bytes()
    assert len(replacement) == end - start or end == len(data)
    out.write_bytes(data[:start] + replacement + data[end:])
    return out


@pytest.mark.slow
def test_inspect_shows_the_graph_and_one_line_on_broken_standard_metadata(meta_model, tmp_path):
    from edgeact.formats.metadata import read_metadata

    good_code, good = _inspect(meta_model)
    assert good_code == 0 and "metadata problem" not in good and read_metadata(meta_model).problems == []
    assert "normalization mean [123.7, 116.3, 103.5] std [58.4, 57.12, 57.38]" in good
    data = meta_model.read_bytes()
    start, end = metadata_span(data)
    buffer = data[start:end]
    mean_at = buffer.find(struct.pack("<I", 3) + struct.pack("<f", 123.675))
    assert mean_at > 0
    broken = _with_bytes(meta_model, tmp_path / "broken_int8.tflite", start + mean_at, start + mean_at + 4,
                         struct.pack("<I", 2**31))
    meta = read_metadata(broken)
    (problem,) = meta.problems
    assert problem.startswith("the TFLite Model Metadata (TFLITE_METADATA) is corrupt: ")
    assert "(2147483648 items)" in problem and "re-export" in problem
    assert meta.standard is None and meta.contract is not None and meta.labels == LABELS
    code, output = _inspect(broken)
    assert code == 0
    lines = output.splitlines()
    assert [line for line in lines if line.startswith("metadata problem: ")] == [f"metadata problem: {problem}"]
    assert "metadata: TFLite Model Metadata present but unreadable" in lines
    # the graph is all there: the same op counts and op table as the sound file's
    graph = lambda text: text[text.index("op counts:"):].splitlines()
    assert len(graph(output)) > 5 and graph(output) == graph(good)


@pytest.mark.slow
def test_a_corrupt_contract_is_one_line_for_inspect_and_an_error_for_the_frame_api(meta_model, tmp_path):
    import edgeact
    from edgeact.errors import ModelLoadError
    from edgeact.formats.metadata import read_contract, read_metadata

    data = meta_model.read_bytes()
    start, end = metadata_span(data, "EDGEACT_CONTRACT")
    for i, replacement in enumerate([b"{" + b" " * (end - start - 1), b"[" + b" " * (end - start - 2) + b"]",
                                     b'{"input": 3' + b" " * (end - start - 12) + b"}"]):
        broken = _with_bytes(meta_model, tmp_path / f"c{i}_int8.tflite", start, end, replacement)
        (problem,) = read_metadata(broken).problems
        assert problem.startswith("the EDGEACT_CONTRACT entry is not") and "re-export" in problem
        with pytest.raises(ModelLoadError, match="EDGEACT_CONTRACT"):
            read_contract(broken)
        with pytest.raises(ModelLoadError, match="EDGEACT_CONTRACT"):
            edgeact.load(broken)
        code, output = _inspect(broken)
        assert code == 0 and f"metadata problem: {problem}" in output.splitlines()


def _bomb(size: int) -> bytes:
    """A zip whose labels.txt deflates from a few KB to `size` bytes of zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk, body = bytes(2**20), b""
    for _ in range(size // len(chunk)):
        body += compressor.compress(chunk)
    body += compressor.flush()
    crc = 0
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    name = b"labels.txt"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(body), size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(body), size, len(name),
                          0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    return local + body + central + end


@pytest.mark.slow
def test_broken_or_hostile_associated_file_zips(meta_model, tmp_path):
    from edgeact.formats.metadata import MAX_ASSOCIATED_FILE_BYTES, read_metadata

    data = meta_model.read_bytes()
    flat_end = zip_start(data)
    zipped = data[flat_end:]
    crc_at = zipped.find(b"PK\x01\x02") + 16  # the central directory's CRC-32 of labels.txt
    cases = {
        "missing": (data[:flat_end], "names the associated file 'labels.txt'"),
        "truncated": (data[:len(data) - 10], "names the associated file 'labels.txt'"),
        "bad crc": (data[:flat_end] + _patch(zipped, crc_at, "<I", 0), "'labels.txt' in the zip is corrupt"),
        "bomb": (data[:flat_end] + _bomb(MAX_ASSOCIATED_FILE_BYTES + 2**20), "declares 17,825,792 bytes"),
        "stored size lies": (data[:flat_end] + _patch(zipped, zipped.find(b"PK\x01\x02") + 24, "<I", 2**32 - 1),
                             "declares 4,294,967,295 bytes"),
        "encrypted": (data[:flat_end] + _patch(zipped, zipped.find(b"PK\x01\x02") + 8, "<H", 1),
                      "'labels.txt' in the zip is corrupt"),
        "unknown method": (data[:flat_end] + _patch(zipped, zipped.find(b"PK\x01\x02") + 10, "<H", 99),
                           "'labels.txt' in the zip is corrupt"),
    }
    for what, (content, expected) in cases.items():
        path = tmp_path / f"{what.replace(' ', '_')}_int8.tflite"
        path.write_bytes(content)
        meta = read_metadata(path)
        assert meta.standard is not None and meta.contract is not None, what
        assert len(meta.problems) >= 1 and any(expected in p for p in meta.problems), (what, meta.problems)
        assert "labels.txt" not in meta.associated_files, what
        code, output = _inspect(path)
        assert code == 0 and len([line for line in output.splitlines() if "metadata problem" in line]) == 1, what


@pytest.mark.slow
def test_metadata_is_read_without_tensorflow_mediapipe_or_flatbuffers(meta_model):
    """The reader is edgeact's alone: a child that cannot import any of them reads every field."""
    import subprocess

    child = """
import json, sys
for name in ("tensorflow", "keras", "mediapipe", "flatbuffers", "converters", "tflite_runtime", "ai_edge_litert"):
    sys.modules[name] = None
from edgeact.formats.metadata import read_metadata
meta = read_metadata(sys.argv[1])
print(json.dumps({"standard": meta.standard, "problems": meta.problems, "labels": meta.labels}))
"""
    done = subprocess.run([sys.executable, "-c", child, str(meta_model)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["problems"] == [] and result["labels"] == LABELS
    assert result["standard"]["inputs"][0]["normalization"]["std"] == pytest.approx([58.395, 57.12, 57.375])
