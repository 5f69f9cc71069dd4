"""Seeded fuzz aimed at the metadata of a converted .tflite: its TFLITE_METADATA flatbuffer, its
EDGEACT_CONTRACT and the associated-files zip after the flatbuffer.

The graph is left intact, so every mutant must still inspect: `read_metadata` in-process returns
(never raises) with at most a list of one-line problems, and `edgeact inspect` (tests/fuzz_batch.py, the CLI
in a child process under a 4 GiB address-space limit) exits 0 with the op table and at most one
`metadata problem:` line, which it prints exactly when read_metadata found a problem. No
traceback, no signal. Every eighth mutant also goes through `edgeact profile`, which reads the
contract (exit 0, or a one-line exit 2 for a broken contract).

A longer campaign (docs/inspect.md has its result):
    EDGEACT_METADATA_FUZZ_FILES=2000 EDGEACT_METADATA_FUZZ_SEED=5 pytest tests/test_metadata_fuzz.py
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.metadata_models import convert_with_metadata, metadata_span, zip_start
from tests.test_fuzz import check_records, run_batch

FILES = int(os.environ.get("EDGEACT_METADATA_FUZZ_FILES", "120"))
SEED = int(os.environ.get("EDGEACT_METADATA_FUZZ_SEED", "23"))
HUGE = [0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x7FFFFFFC, 2**24, 2**16 + 1, 0]

pytestmark = pytest.mark.slow


# -- the metadata flatbuffer, in place (same length, so the model around it stays sound) -------
def _u32(region: bytearray, rng, values) -> None:
    at = int(rng.integers(0, len(region) // 4)) * 4
    struct.pack_into("<I", region, at, int(rng.choice(values)) % 2**32)


def huge_u32(region: bytearray, rng) -> None:
    """A vector length, offset or count set huge (or 0)."""
    _u32(region, rng, HUGE + [len(region), len(region) - 4])


def nudge_offset(region: bytearray, rng) -> None:
    """An offset moved a little: into the middle of another table, a string, a vtable."""
    at = int(rng.integers(0, len(region) // 4)) * 4
    value = struct.unpack_from("<I", region, at)[0] + int(rng.integers(-64, 65))
    struct.pack_into("<I", region, at, value % 2**32)


def vtable_entry(region: bytearray, rng) -> None:
    """A 16-bit vtable entry (a field's offset, or the vtable's or table's size) set anywhere."""
    at = int(rng.integers(0, len(region) // 2)) * 2
    struct.pack_into("<H", region, at, int(rng.choice([0xFFFF, 0x8000, 3, 1, int(rng.integers(0, 2**16))])))


def table_soffset(region: bytearray, rng) -> None:
    """The root table's signed offset to its vtable set outside, or onto itself."""
    root = struct.unpack_from("<I", region, 0)[0]
    if root + 4 <= len(region):
        struct.pack_into("<i", region, root, int(rng.choice([-(2**31), 2**31 - 1, 0, -len(region), len(region)])))


def random_bytes(region: bytearray, rng) -> None:
    for _ in range(int(rng.integers(1, 17))):
        region[int(rng.integers(0, len(region)))] = int(rng.integers(0, 256))


def identifier(region: bytearray, rng) -> None:
    region[4:8] = rng.bytes(4)


IN_PLACE = (huge_u32, nudge_offset, vtable_entry, table_soffset, random_bytes, identifier)


# -- the associated-files zip --------------------------------------------------------------------
def _bomb(size: int) -> bytes:
    """A one-entry zip whose labels.txt deflates to `size` zero bytes from a few KB."""
    compressor, chunk = zlib.compressobj(9, zlib.DEFLATED, -15), bytes(2**20)
    body = b"".join(compressor.compress(chunk) for _ in range(size // len(chunk))) + compressor.flush()
    crc = 0
    for _ in range(size // len(chunk)):
        crc = zlib.crc32(chunk, crc)
    name = b"labels.txt"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(body), size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(body), size,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    return local + body + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central),
                                                 len(local) + len(body), 0)


def _many_entries(n: int) -> bytes:
    out = __import__("io").BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i in range(n):
            archive.writestr(f"f{i}.txt", "x")
    return out.getvalue()


def zip_mutant(flat: bytes, archive: bytes, rng, bomb: bytes) -> bytes:
    pick = int(rng.integers(0, 8))
    directory = archive.rfind(b"PK\x01\x02")
    end = archive.rfind(b"PK\x05\x06")
    region = bytearray(archive)
    if pick == 0:  # truncated anywhere in the archive
        return flat + archive[:int(rng.integers(0, len(archive)))]
    if pick == 1:  # sizes in the central directory or the local header set huge
        where = int(rng.choice([directory + 20, directory + 24, 18, 22]))
        struct.pack_into("<I", region, where, int(rng.choice(HUGE)))
    elif pick == 2:  # the end record's directory offset, size or entry counts
        where = int(rng.choice([end + 8, end + 10, end + 12, end + 16]))
        size = 2 if where < end + 12 else 4
        struct.pack_into("<H" if size == 2 else "<I", region, where, int(rng.integers(0, 2**(8 * size))))
    elif pick == 3:  # bytes of the central directory or the local header
        for _ in range(int(rng.integers(1, 9))):
            span = (directory, end) if rng.random() < 0.5 else (0, 30)
            region[int(rng.integers(*span))] = int(rng.integers(0, 256))
    elif pick == 4:  # flags (encrypted, data descriptor) or compression method
        struct.pack_into("<H", region, directory + int(rng.choice([8, 10])), int(rng.choice([1, 8, 9, 12, 14, 99])))
    elif pick == 5:
        return flat + bomb
    elif pick == 6:
        return flat + _many_entries(int(rng.choice([300, 1000])))
    else:  # garbage, or a second archive, after the first
        return flat + archive + (rng.bytes(int(rng.integers(1, 200))) if rng.random() < 0.5 else _bomb(2**20))
    return flat + bytes(region)


def _repacked(data: bytes, flat_end: int, entry: str, content: bytes) -> bytes:
    """The model with one metadata entry's bytes replaced by `content` (another length), the zip kept."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data[:flat_end]), 0)
    for m in model.metadata:
        if m.name.decode() == entry:
            model.buffers[m.buffer].data = np.frombuffer(content, np.uint8)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()) + data[flat_end:]


def mutants(source: Path, out: Path, rng) -> list[Path]:
    data = source.read_bytes()
    start, end = metadata_span(data)
    c_start, c_end = metadata_span(data, "EDGEACT_CONTRACT")
    flat_end = zip_start(data)
    bomb = _bomb(64 * 2**20)
    paths = []
    for i in range(FILES):
        kind = i % 6
        if kind in (0, 1, 2):  # the metadata flatbuffer, in place; one to three mutations
            region = bytearray(data[start:end])
            for _ in range(int(rng.integers(1, 4))):
                IN_PLACE[int(rng.integers(0, len(IN_PLACE)))](region, rng)
            mutant = data[:start] + bytes(region) + data[end:]
        elif kind == 3:  # the zip
            mutant = zip_mutant(data[:flat_end], data[flat_end:], rng, bomb)
        elif kind == 4:  # the metadata flatbuffer cut short, or random bytes behind its identifier
            buffer = data[start:end]
            content = buffer[:int(rng.integers(0, len(buffer)))] if rng.random() < 0.6 else \
                buffer[:8] + rng.bytes(int(rng.integers(0, 2 * len(buffer))))
            mutant = _repacked(data, flat_end, "TFLITE_METADATA", content)
        else:  # the contract: bytes flipped in place, or cut short
            region = bytearray(data[c_start:c_end])
            if rng.random() < 0.5:
                random_bytes(region, rng)
                mutant = data[:c_start] + bytes(region) + data[c_end:]
            else:
                cut = bytes(region[:int(rng.integers(0, len(region)))])
                mutant = _repacked(data, flat_end, "EDGEACT_CONTRACT", cut)
        paths.append(out / f"m{i:04d}_int8.tflite")
        paths[-1].write_bytes(mutant)
    return paths


@pytest.fixture(scope="module")
def model(small_cnn_file, pixels_npy, tmp_path_factory) -> Path:
    return convert_with_metadata(small_cnn_file, pixels_npy, tmp_path_factory.mktemp("fuzz_meta"))


def test_fuzzed_metadata(model, tmp_path):
    from edgeact.errors import ModelLoadError
    from edgeact.formats.metadata import read_contract, read_metadata

    paths = mutants(model, tmp_path, np.random.default_rng(SEED))
    problems: dict[str, list[str]] = {}
    for path in paths:  # in-process: read_metadata never raises on a sound graph; read_contract one line
        meta = read_metadata(path)
        assert all(p and "\n" not in p for p in meta.problems), (path.name, meta.problems)
        json.dumps(meta.to_dict(), default=str)
        problems[str(path)] = meta.problems
        try:
            read_contract(path)
        except ModelLoadError as exc:
            assert "EDGEACT_CONTRACT" in str(exc) and "\n" not in str(exc), path.name
    broken = sum(bool(p) for p in problems.values())
    assert broken > len(paths) // 3  # the mutations reach the readers
    records = run_batch(paths, tmp_path, ("--inspect-only",))
    check_records(records)
    assert len(records) == len(paths)
    for r in records:
        where = f"{Path(r['file']).name}: {r['stdout'][-400:]!r}"
        assert r["exit_code"] == 0, where  # the graph is sound: inspect shows it
        if r["json"]:
            shown = json.loads(r["stdout"])
            assert shown["ops"] and shown["metadata"]["problems"] == problems[r["file"]], where
        else:
            flagged = [line for line in r["stdout"].splitlines() if line.startswith("metadata problem: ")]
            assert "op counts:" in r["stdout"] and len(flagged) == bool(problems[r["file"]]), where
            if flagged:
                assert flagged[0].startswith(f"metadata problem: {problems[r['file']][0]}"), where
    profiled = check_records(run_batch(paths[::8], tmp_path))
    assert sum(profiled.values()) == 2 * len(paths[::8])
