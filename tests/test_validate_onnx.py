"""edgeact.formats.validate_onnx: onnx's checker plus edgeact's limits, before ONNX Runtime parses the file;
and the runtimes' log output kept off the terminal unless -v."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeact.cli import cli
from edgeact.errors import LimitError, ModelLoadError
from edgeact.formats.onnx_model import read_onnx

from .onnx_models import save, small_onnx_model

pytest.importorskip("onnx")
ROOT = Path(__file__).resolve().parents[1]


def _edit(tmp_path, change, name="bad.onnx"):
    model = small_onnx_model()
    change(model)
    return save(model, tmp_path / name)


def _input_dims(model):
    return model.graph.input[0].type.tensor_type.shape.dim


def test_sound_model_reads(tmp_path):
    info = read_onnx(save(small_onnx_model(), tmp_path / "ok.onnx"))
    assert info["inputs"][0] == {"name": "image", "dtype": "float32", "shape": [-1, 3, 16, 16]}
    assert info["op_counts"]["Conv"] == 1


def test_undefined_element_type_is_refused(tmp_path):
    path = _edit(tmp_path, lambda m: setattr(m.graph.input[0].type.tensor_type, "elem_type", 0))
    with pytest.raises(ModelLoadError, match="(element type 0|not a valid ONNX model)"):
        read_onnx(path)


def test_huge_dimension_is_refused_before_allocation(tmp_path, monkeypatch):
    def grow(m):
        _input_dims(m)[2].dim_value = 2**31
    path = _edit(tmp_path, grow)
    with pytest.raises(LimitError, match="dimension 2147483648"):
        read_onnx(path)
    # ...and a dimension that fits int32 but not this machine's memory, in profile too.
    from edgeact.formats import limits

    monkeypatch.setattr(limits, "machine_memory_bytes", lambda: 2**30)

    def big(m):
        _input_dims(m)[2].dim_value = 2**14
        _input_dims(m)[3].dim_value = 2**14
    path = _edit(tmp_path, big, "big.onnx")
    result = CliRunner().invoke(cli, ["profile", str(path), "--runs", "1", "--warmup", "0"])
    assert result.exit_code == 2 and "needs 3.0 GiB but this machine has 1.0 GiB" in result.output, result.output


def test_initializer_shorter_than_its_shape_is_refused(tmp_path):
    def cut(m):
        m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-8]
    with pytest.raises(ModelLoadError, match="(tensor name: w|initializer 'w')"):
        read_onnx(_edit(tmp_path, cut))


def test_not_protobuf_is_one_line(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x07" + os.urandom(64))
    for args in (["inspect", str(path)], ["profile", str(path), "--runs", "1", "--json"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output


def _with_bad_utf8_input_name(tmp_path, name="badname.onnx"):
    """The small model with its input renamed 'image' -> b'im\\xf6ge' in the serialized bytes (protobuf
    refuses to write a str that is not UTF-8, a corrupt file holds it anyway)."""
    data = small_onnx_model().SerializeToString()
    assert data.count(b"image") >= 2  # the graph input and the Conv's input
    path = tmp_path / name
    path.write_bytes(data.replace(b"image", b"im\xf6ge"))
    return path


def test_a_name_that_is_not_utf8_is_refused(tmp_path, monkeypatch):
    path = _with_bad_utf8_input_name(tmp_path)
    for args in (["inspect", str(path)], ["profile", str(path), "--runs", "1", "--warmup", "0"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
        assert "name b'im\\xf6ge' is not valid UTF-8" in result.output
    # Without onnx (a device), the session's names are checked instead of raising UnicodeDecodeError.
    from edgeact.runtime import open_runner

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ModelLoadError, match="input name is not valid UTF-8"):
        open_runner(path)


def _run(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "edgeact", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_runtime_logs_only_with_verbose(converted_small, tmp_path):
    """LiteRT announces its XNNPACK delegate from C++: never on stdout, on stderr only with -v."""
    out, _ = converted_small
    model = str(out / "small_cnn_int8.tflite")
    quiet = _run("profile", model, "--runs", "2", "--warmup", "0", "--json", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    json.loads(quiet.stdout)
    assert "XNNPACK" not in quiet.stdout + quiet.stderr
    loud = _run("-v", "profile", model, "--runs", "2", "--warmup", "0", "--json", cwd=tmp_path)
    assert loud.returncode == 0 and "XNNPACK" in loud.stderr and "XNNPACK" not in loud.stdout
    json.loads(loud.stdout)


def test_ort_log_line_never_reaches_the_terminal(tmp_path):
    """A model ORT refuses makes its logger print a coloured line on stderr; edgeact prints one line."""
    def bad_attr(m):
        m.graph.node[0].attribute[0].ints[:] = [1, 1, 1]  # pads of the wrong length: ORT refuses at load
    path = _edit(tmp_path, bad_attr)
    done = _run("profile", str(path), "--runs", "1", "--json", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr


def test_without_the_onnx_package_the_session_io_is_checked(tmp_path, monkeypatch):
    """A device with onnxruntime only: what the session reports is bounded before edgeact allocates."""
    from edgeact.formats import limits
    from edgeact.runtime import open_runner

    def big(m):
        _input_dims(m)[2].dim_value = 2**14
        _input_dims(m)[3].dim_value = 2**14
    path = _edit(tmp_path, big, "big.onnx")
    ok = save(small_onnx_model(), tmp_path / "ok.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError, as on the device
    monkeypatch.setattr(limits, "machine_memory_bytes", lambda: 2**30)
    with pytest.raises(LimitError, match="input 'image' needs 3.0 GiB but this machine has 1.0 GiB"):
        open_runner(path)
    monkeypatch.setattr(limits, "machine_memory_bytes", lambda: 2**40)
    assert open_runner(ok).inputs[0].shape == (1, 3, 16, 16)
