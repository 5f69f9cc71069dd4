"""Seeded fuzzing: a few hundred corrupted .tflite and .onnx files made from models built here,
each through `edgeact inspect` and `edgeact profile --json` (tests/fuzz_batch.py, the CLI's own
code path, in child processes). Asserts: no signal, no traceback, exit 0 or a one-line exit 2,
valid JSON on stdout under --json, nothing from the runtimes on the real stdout. Every fifth
.tflite also gets a corrupted report beside it."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .onnx_models import small_onnx_model

ROOT = Path(__file__).resolve().parents[1]
# A longer campaign: EDGEACT_FUZZ_FILES=1000 EDGEACT_FUZZ_SEED=7 pytest tests/test_fuzz.py
FILES_PER_FORMAT = int(os.environ.get("EDGEACT_FUZZ_FILES", "150"))
SEED = int(os.environ.get("EDGEACT_FUZZ_SEED", "12"))
BIG = [-(2**31), -2, -1, 0, 2**31 - 1, 2**24, 7]


# -- byte-level mutations, both formats -----------------------------------------------------------
def truncate(data: bytes, rng) -> bytes:
    return data[:int(rng.integers(0, len(data)))]


def flip_bits(data: bytes, rng) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        pos = int(rng.integers(0, len(out)))
        out[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def overwrite_header(data: bytes, rng) -> bytes:
    n = int(rng.integers(1, 33))
    return rng.bytes(n) + data[n:]


def random_body(data: bytes, rng) -> bytes:
    """Random bytes behind a valid-looking start (the TFLite identifier, or ONNX's first field tag)."""
    return data[:8] + rng.bytes(int(rng.integers(8, 2 * len(data))))


BYTE_MUTATIONS = (truncate, flip_bits, overwrite_header, random_body)


# -- field-level mutations ------------------------------------------------------------------------
def _tflite_field(model, rng) -> None:
    graph = model.subgraphs[0]
    pick = int(rng.integers(0, 10))
    op = graph.operators[int(rng.integers(0, len(graph.operators)))]
    tensor = graph.tensors[int(rng.integers(0, len(graph.tensors)))]
    value = int(rng.choice(BIG + [len(graph.tensors), int(rng.integers(-5, len(graph.tensors) + 5))]))
    if pick == 0 and op.inputs is not None and len(op.inputs):
        op.inputs[int(rng.integers(0, len(op.inputs)))] = value
    elif pick == 1:
        op.outputs[0] = value
    elif pick == 2:
        op.opcodeIndex = abs(value) % 2**32
    elif pick == 3 and tensor.shape is not None and len(tensor.shape):
        tensor.shape[int(rng.integers(0, len(tensor.shape)))] = value
        tensor.shapeSignature = None
    elif pick == 4:
        tensor.buffer = abs(value) % 2**32
    elif pick == 5:
        tensor.type = int(rng.integers(0, 30))
    elif pick == 6 and tensor.quantization is not None and tensor.quantization.scale is not None:
        q = tensor.quantization
        choice = int(rng.integers(0, 4))
        if choice == 0:
            q.zeroPoint = None
        elif choice == 1:
            q.scale = [float(rng.choice([math.nan, math.inf, 0.0, -1.0]))] * len(q.scale)
        elif choice == 2:
            q.quantizedDimension = value
        else:
            q.zeroPoint = [value] * len(q.scale)
    elif pick == 7:
        (graph.inputs if rng.random() < 0.5 else graph.outputs)[0] = value
    elif pick == 8 and model.buffers and len(model.buffers) > 1:
        buffer = model.buffers[int(rng.integers(1, len(model.buffers)))]
        buffer.data, buffer.offset, buffer.size = None, abs(value), int(rng.integers(0, 2**20))
    else:
        op.inputs = [value, -1, -1]


def report_mutant(report: dict, rng) -> bytes:
    """A corrupted `.edgeact.json` beside a model: wrong types, huge or NaN values, another version, garbage."""
    data = json.loads(json.dumps(report))
    pick = int(rng.integers(0, 7))
    if pick == 0:
        data["inputs"][0]["shape"] = [int(rng.choice([2**20, 2**31, -1, 0])), 224, 3]
    elif pick == 1:
        data["preprocessing"][str(rng.choice(["scale", "mean", "std"]))] = float(rng.choice([math.nan, 0.0, -1.0]))
    elif pick == 2:
        data["preprocessing"]["std"] = [0.0]
    elif pick == 3:
        data["schema_version"] = int(rng.choice([0, 3, 99]))
    elif pick == 4:
        data[str(rng.choice(["labels", "input", "calibration", "preprocessing"]))] = "x"
    elif pick == 5:
        return rng.bytes(200)
    else:
        return json.dumps(data).encode()[:int(rng.integers(1, 400))]
    return json.dumps(data, allow_nan=True).encode()


def tflite_mutants(source: Path, out: Path, rng) -> list[Path]:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    data = source.read_bytes()
    report_file = source.with_name(source.name.replace("_int8.tflite", ".edgeact.json"))
    report = json.loads(report_file.read_text()) if report_file.is_file() else None
    paths = []
    for i in range(FILES_PER_FORMAT):
        if i % 2:
            mutant = BYTE_MUTATIONS[(i // 2) % len(BYTE_MUTATIONS)](data, rng)
        else:
            model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
            _tflite_field(model, rng)
            builder = flatbuffers.Builder(1024)
            builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
            mutant = bytes(builder.Output())
        paths.append(out / f"t{i:03d}_int8.tflite")
        paths[-1].write_bytes(mutant)
        if report is not None and i % 5 == 4:  # a hostile report beside some of them
            (out / f"t{i:03d}.edgeact.json").write_bytes(report_mutant(report, rng))
    return paths


def _onnx_field(model, rng) -> None:
    graph = model.graph
    pick = int(rng.integers(0, 9))
    value = int(rng.choice([0, -1, -7, 2**31, 2**40, 3, 1]))
    node = graph.node[int(rng.integers(0, len(graph.node)))]
    if pick == 0:
        graph.input[0].type.tensor_type.elem_type = int(rng.integers(0, 30))
    elif pick == 1:
        graph.input[0].type.tensor_type.shape.dim[int(rng.integers(0, 4))].dim_value = value
    elif pick == 2:
        graph.output[0].type.tensor_type.shape.dim[1].dim_value = value
    elif pick == 3:
        init = graph.initializer[int(rng.integers(0, len(graph.initializer)))]
        init.dims[0] = abs(value) if value else 5
    elif pick == 4:
        node.input[0] = "missing_tensor"
    elif pick == 5 and node.attribute:
        attr = node.attribute[0]
        if attr.ints:
            attr.ints[0] = value
        else:
            attr.i = value
    elif pick == 6:
        model.opset_import[0].version = int(rng.choice([1, 5, 99, 10**6]))
    elif pick == 7:
        init = graph.initializer[int(rng.integers(0, len(graph.initializer)))]
        init.data_type = int(rng.integers(0, 30))
    else:
        graph.node.remove(node)


def onnx_mutants(out: Path, rng) -> list[Path]:
    source = small_onnx_model()
    data = source.SerializeToString()
    paths = []
    for i in range(FILES_PER_FORMAT):
        if i % 2:
            mutant = BYTE_MUTATIONS[(i // 2) % len(BYTE_MUTATIONS)](data, rng)
        else:
            model = type(source)()
            model.CopyFrom(source)
            _onnx_field(model, rng)
            mutant = model.SerializeToString()
        paths.append(out / f"o{i:03d}.onnx")
        paths[-1].write_bytes(mutant)
    return paths


MEMORY_LIMIT = 4 * 2**30  # address space of the batch and its children: a runaway allocation fails loudly


def _bounded_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_batch(paths: list[Path], cwd: Path, options: tuple[str, ...] = ()) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-m", "tests.fuzz_batch", *options, *map(str, paths)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=1800, preexec_fn=_bounded_memory)
    lines = done.stdout.splitlines()
    last = next((json.loads(line) for line in reversed(lines) if line.startswith('{"start"')), None)
    assert done.returncode >= 0, (f"signal {signal.Signals(-done.returncode).name} on {last}; "
                                  f"stderr: {done.stderr[-1000:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    stray = [line for line in lines if not line.startswith("{")]
    assert not stray, f"output outside the CLI's streams: {stray[:5]}"
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return [json.loads(line) for line in lines if not line.startswith('{"start"')]


def check_records(records: list[dict]) -> dict[int, int]:
    codes: dict[int, int] = {}
    for r in records:
        where = f"{r['command']} {Path(r['file']).name}: {r['stdout'][-300:]!r} {r['stderr'][-300:]!r}"
        assert r["exception"] is None, f"traceback from {where}: {r['exception']}"
        assert r["exit_code"] in (0, 2), where
        assert "Traceback" not in r["stdout"] + r["stderr"], where
        codes[r["exit_code"]] = codes.get(r["exit_code"], 0) + 1
        if r["exit_code"] == 2:
            assert r["stderr"].count("\n") == 1 and r["stderr"].startswith("error: "), where
        else:
            assert r["stderr"] == "", where
        if r["json"] and r["stdout"]:
            json.loads(r["stdout"])
        if r["command"] == "profile" and r["exit_code"] == 0:
            assert json.loads(r["stdout"])["models"], where
    return codes


def test_fuzzed_tflite_files(converted_small, tmp_path):
    out, _ = converted_small
    paths = tflite_mutants(out / "small_cnn_int8.tflite", tmp_path, np.random.default_rng(SEED))
    codes = check_records(run_batch(paths, tmp_path))
    assert codes.get(2, 0) > FILES_PER_FORMAT // 2  # most mutants are refused, some still run
    assert sum(codes.values()) == 2 * FILES_PER_FORMAT


def test_fuzzed_onnx_files(tmp_path):
    pytest.importorskip("onnx")
    paths = onnx_mutants(tmp_path, np.random.default_rng(SEED))
    codes = check_records(run_batch(paths, tmp_path))
    assert codes.get(2, 0) > FILES_PER_FORMAT // 2
    assert sum(codes.values()) == 2 * FILES_PER_FORMAT
