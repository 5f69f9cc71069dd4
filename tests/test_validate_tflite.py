"""Each structural rule of edgeact.formats.validate_tflite: a sound model passes, a file breaking one rule
is refused with a message naming the rule, before any interpreter sees it."""
from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli
from edgeact.errors import LimitError, ModelLoadError
from edgeact.formats.tflite_model import read_tflite

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")  # to write broken files


def _rewrite(src, dst, change):
    """Unpack src with the official schema, apply `change(model)`, pack to dst."""
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(bytearray(src.read_bytes()), 0)
    change(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))
    return dst


@pytest.fixture(scope="module")
def int8_model(converted_small):
    out, _ = converted_small
    return out / "small_cnn_int8.tflite"


def _op(model, name):
    codes = {i: c.builtinCode for i, c in enumerate(model.operatorCodes)}
    wanted = getattr(schema.BuiltinOperator, name)
    return next(op for op in model.subgraphs[0].operators if codes[op.opcodeIndex] == wanted)


def _quantized_tensor(model, per_channel=False):
    return next(t for t in model.subgraphs[0].tensors if t.quantization is not None
                and t.quantization.scale is not None and (len(t.quantization.scale) > 1) == per_channel)


def _set(obj, **values):
    for key, value in values.items():
        setattr(obj, key, value)


BROKEN = {
    "depthwise weights -1": (lambda m: _set(_op(m, "DEPTHWISE_CONV_2D"),
                                            inputs=[_op(m, "DEPTHWISE_CONV_2D").inputs[0], -1, -1]),
                             "DEPTHWISE_CONV_2D\\) input 1 is missing"),
    "op output past tensors": (lambda m: _set(_op(m, "ADD"), outputs=[len(m.subgraphs[0].tensors) + 5]),
                               "ADD\\) output 0 is tensor"),
    "op input past tensors": (lambda m: _set(_op(m, "ADD"), inputs=[0, 10**6]), "ADD\\) input 1 is tensor 1000000"),
    "subgraph output past tensors": (lambda m: _set(m.subgraphs[0], outputs=[-3]), "output -3 is not one of"),
    "opcode index": (lambda m: _set(_op(m, "ADD"), opcodeIndex=99), "opcode index 99"),
    "buffer index": (lambda m: _set(m.subgraphs[0].tensors[0], buffer=10**5), "uses buffer 100000"),
    "scale without zero point": (lambda m: _set(_quantized_tensor(m).quantization, zeroPoint=None),
                                 "1 quantization scales but 0 zero points"),
    "NaN scale": (lambda m: _set(_quantized_tensor(m).quantization, scale=[math.nan]), "NaN or infinite"),
    "zero scale": (lambda m: _set(_quantized_tensor(m).quantization, scale=[0.0]), "zero quantization scale"),
    "zero point out of range": (lambda m: _set(_quantized_tensor(m).quantization, zeroPoint=[300]),
                                "outside INT8's range"),
    "per-channel dimension": (lambda m: _set(_quantized_tensor(m, True).quantization, quantizedDimension=7),
                              "per-channel scales along dimension 7"),
    "constant data short": (lambda m: _set(m.buffers[_op(m, "CONV_2D") and m.subgraphs[0].tensors[
        _op(m, "CONV_2D").inputs[1]].buffer], data=[1, 2, 3]), "but its buffer holds 3"),
    "external buffer outside file": (lambda m: _set(m.buffers[1], data=None, offset=10**9, size=64),
                                     "buffer 1 points at bytes"),
    "no inputs": (lambda m: _set(m.subgraphs[0], inputs=[]), "no inputs or no outputs"),
    # The byte CI's fuzzer flipped: LiteRT's get_tensor_details() raised UnicodeDecodeError on it.
    "name not UTF-8": (lambda m: _set(m.subgraphs[0].tensors[3], name=b"conv/depthwise_con\xf62d/Relu6"),
                       "string 0:3.name is not valid UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_rule_refuses_its_broken_file(int8_model, tmp_path, case):
    change, message = BROKEN[case]
    bad = _rewrite(int8_model, tmp_path / "bad.tflite", change)
    with pytest.raises(ModelLoadError, match=message):
        read_tflite(bad)


def test_a_sound_model_passes_and_reads_as_the_official_schema_does(int8_model, tmp_path):
    model = read_tflite(int8_model)
    official = schema.ModelT.InitFromPackedBuf(bytearray(int8_model.read_bytes()), 0).subgraphs[0]
    assert [t.name for t in model.tensors] == [t.name.decode() for t in official.tensors]
    assert [op.inputs for op in model.ops] == [list(map(int, op.inputs)) for op in official.operators]
    per_channel = next(t for t in model.tensors if len(t.scale) > 1)
    twin = official.tensors[per_channel.index].quantization
    np.testing.assert_allclose(per_channel.scale, twin.scale)
    # A bias left out (-1) is legal: the validator must not refuse it.
    def drop_bias(m):
        op = _op(m, "DEPTHWISE_CONV_2D")
        op.inputs = [op.inputs[0], op.inputs[1], -1]
    assert read_tflite(_rewrite(int8_model, tmp_path / "nobias.tflite", drop_bias)).ops


@pytest.mark.parametrize("dims, message", [([1, 2**31 - 1, 2**31 - 1, 1], "elements"),
                                           ([1, 8192, 8192, 24], "needs 1.5 GiB but this machine has 1.0 GiB"),
                                           ([1] * 9, "rank 9"), ([1, -5, 4], "dimension -5")])
def test_shapes_are_bounded_before_allocation(int8_model, tmp_path, monkeypatch, dims, message):
    from edgeact.formats import limits

    monkeypatch.setattr(limits, "machine_memory_bytes", lambda: 2**30)
    def grow(m):
        m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].shape = dims
        m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].shapeSignature = None
    with pytest.raises(LimitError, match=message):
        read_tflite(_rewrite(int8_model, tmp_path / "big.tflite", grow))


def test_truncated_and_garbage_files_are_one_line_errors(int8_model, tmp_path):
    data = int8_model.read_bytes()
    for cut in (20, len(data) // 3, len(data) - 7):
        (tmp_path / "cut.tflite").write_bytes(data[:cut])
        with pytest.raises(ModelLoadError):
            read_tflite(tmp_path / "cut.tflite")
    (tmp_path / "garbage.tflite").write_bytes(data[:8] + bytes(range(256)) * 8)
    with pytest.raises(ModelLoadError):
        read_tflite(tmp_path / "garbage.tflite")


def test_profile_refuses_the_file_that_segfaulted_litert(int8_model, tmp_path):
    """A DEPTHWISE_CONV_2D without weights crashed LiteRT; now profile and inspect stop with one line."""
    change, _ = BROKEN["depthwise weights -1"]
    bad = _rewrite(int8_model, tmp_path / "bad.tflite", change)
    for args in (["profile", str(bad), "--runs", "2", "--warmup", "0"], ["inspect", str(bad)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and result.output.startswith("error: ")
        assert "input 1 is missing" in result.output


def test_dynamic_image_size_without_a_report_is_one_line(int8_model, tmp_path):
    """A valid model whose height is unknown (-1 in its shape signature) cannot be fed random inputs."""
    def dynamic(m):
        tensor = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]]
        tensor.shapeSignature = [-1, -1, 16, 3]
    path = _rewrite(int8_model, tmp_path / "dynamic.tflite", dynamic)
    assert read_tflite(path).tensors[read_tflite(path).inputs[0]].shape == [-1, -1, 16, 3]
    result = CliRunner().invoke(cli, ["profile", str(path), "--runs", "1", "--warmup", "0"])
    assert result.exit_code == 2 and "profiles models with a fixed input size" in result.output, result.output


def test_flatbuffer_reader_bounds_every_offset_and_length():
    """Hand-made buffers: each bad offset or length is a FlatbufferError, never a read past the end
    or an allocation the size of a claimed length."""
    import struct

    from edgeact.formats.flatbuf import Buffer, FlatbufferError

    with pytest.raises(FlatbufferError, match="root table"):
        Buffer(struct.pack("<I", 4096) + b"TFL3").root()
    # table at 8 whose vtable (at 4) says: 6 bytes, field 0 at +4 -> an offset to a vector at 16
    data = bytearray(36)
    struct.pack_into("<I", data, 0, 12)         # root -> table at 12
    struct.pack_into("<HHH", data, 4, 6, 8, 4)  # vtable at 4: size 6, table size 8, field 0 at +4
    struct.pack_into("<i", data, 12, 8)         # table at 12: its vtable is at 12 - 8 = 4
    struct.pack_into("<I", data, 16, 4)         # field 0 (at 16): vector at 16 + 4 = 20
    struct.pack_into("<I", data, 20, 2**31)     # the vector claims 2^31 int32 items
    root = Buffer(bytes(data)).root()
    with pytest.raises(FlatbufferError, match="2147483648 items"):
        root.numbers(4, "i32", "shape")
    struct.pack_into("<I", data, 20, 3)         # 3 items fit in the 12 bytes left
    assert Buffer(bytes(data)).root().numbers(4, "i32", "shape").tolist() == [0, 0, 0]
    assert Buffer(bytes(data)).root().numbers(6, "i32", "absent field") is None
    struct.pack_into("<i", data, 12, -100)      # vtable beyond the end
    with pytest.raises(FlatbufferError, match="vtable"):
        Buffer(bytes(data)).root()


def test_a_name_that_is_not_utf8_is_one_line_from_inspect_and_profile(int8_model, tmp_path):
    """inspect and profile of the file the CI fuzzer wrote: exit 2 and one line, not a UnicodeDecodeError."""
    change, _ = BROKEN["name not UTF-8"]
    bad = _rewrite(int8_model, tmp_path / "bad.tflite", change)
    for args in (["inspect", str(bad)], ["profile", str(bad), "--runs", "2", "--warmup", "0"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and "is not valid UTF-8" in result.output
    # A valid non-ASCII name is not refused.
    fine = _rewrite(int8_model, tmp_path / "fine.tflite",
                    lambda m: _set(m.subgraphs[0].tensors[3], name="conv/tiefe_faltung_\u00e4".encode()))
    assert read_tflite(fine).tensors[3].name.endswith("\u00e4")


def test_names_from_the_file_cannot_break_the_one_line_error(int8_model, tmp_path):
    def hostile_name(m):
        tensor = _quantized_tensor(m)
        tensor.name = b"evil\nname\x1b[31m"
        tensor.quantization.scale = [math.nan]
    with pytest.raises(ModelLoadError) as info:
        read_tflite(_rewrite(int8_model, tmp_path / "names.tflite", hostile_name))
    assert "'evil?name?[31m'" in str(info.value) and "\n" not in str(info.value)
