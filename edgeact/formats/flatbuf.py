"""A bounds-checked flatbuffer reader: every offset and vector length is checked against the file.

The flatbuffers package trusts the file it reads (a bad offset wraps around or reads past
the end; a vector length of 2^31 becomes a huge allocation), and tflite-runtime ships no
schema at all. This reader follows the wire format (a table starts with a signed offset
to its vtable; the vtable lists each field's offset within the table, 0 for absent; offsets
to tables, vectors and strings are unsigned and relative to where they are stored) and
raises `FlatbufferError` for anything that points outside the buffer, before allocating.
Numeric vectors are numpy views of the file's bytes: no copy, nothing larger than the file.
"""
from __future__ import annotations

import struct

import numpy as np


class FlatbufferError(ValueError):
    """The buffer is not a well-formed flatbuffer (an offset or length points outside it)."""


_FORMATS = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i",
            "u64": "<Q", "i64": "<q", "f32": "<f", "bool": "<?"}
_SIZES = {k: struct.calcsize(v) for k, v in _FORMATS.items()}
_NUMPY = {"u8": "<u1", "i8": "<i1", "i32": "<i4", "u32": "<u4", "i64": "<i8", "f32": "<f4"}


class Buffer:
    """The file's bytes and the primitive, bounds-checked reads."""

    def __init__(self, data: bytes, name: str = "file") -> None:
        self.data = data
        self.size = len(data)
        self.name = name  # what the messages call the buffer: the file, or a buffer inside it
        # Strings that are not valid UTF-8 (read with U+FFFD in their place): interpreters decode
        # names strictly and raise on them, so a validator refuses the file when this is not empty.
        self.invalid_text: list[str] = []

    def check(self, pos: int, length: int, what: str) -> None:
        if pos < 0 or length < 0 or pos + length > self.size:
            raise FlatbufferError(f"{what} at byte {pos} (+{length}) lies outside the {self.size}-byte {self.name}")

    def scalar(self, kind: str, pos: int):
        self.check(pos, _SIZES[kind], "a field")
        return struct.unpack_from(_FORMATS[kind], self.data, pos)[0]

    def text(self, pos: int, length: int, what: str) -> str:
        """The UTF-8 string at pos (already bounds-checked); invalid bytes are noted and replaced."""
        raw = bytes(self.data[pos:pos + length])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid_text.append(what)
            return raw.decode("utf-8", errors="replace")

    def root(self) -> "Table":
        return Table(self, self.scalar("u32", 0), "the root table")


class Table:
    """One flatbuffer table; fields are addressed by vtable slot (4, 6, 8, ... as flatc numbers them)."""

    def __init__(self, buf: Buffer, pos: int, what: str) -> None:
        buf.check(pos, 4, what)
        vtable = pos - buf.scalar("i32", pos)
        buf.check(vtable, 4, f"the vtable of {what}")
        self.vt_size = buf.scalar("u16", vtable)
        if self.vt_size < 4 or self.vt_size % 2:
            raise FlatbufferError(f"the vtable of {what} has an impossible size {self.vt_size}")
        buf.check(vtable, self.vt_size, f"the vtable of {what}")
        self.buf, self.pos, self.vtable, self.what = buf, pos, vtable, what

    def _field(self, slot: int) -> int | None:
        if slot >= self.vt_size:
            return None
        offset = self.buf.scalar("u16", self.vtable + slot)
        return self.pos + offset if offset else None

    def field_at(self, slot: int) -> int | None:
        """The byte position of a field's value in the buffer, None when the field is absent."""
        return self._field(slot)

    def scalar(self, slot: int, kind: str, default=0):
        at = self._field(slot)
        return default if at is None else self.buf.scalar(kind, at)

    def _target(self, slot: int) -> int | None:
        at = self._field(slot)
        return None if at is None else at + self.buf.scalar("u32", at)

    def table(self, slot: int, what: str) -> "Table | None":
        at = self._target(slot)
        return None if at is None else Table(self.buf, at, what)

    def _vector(self, slot: int, item_size: int, what: str) -> tuple[int, int] | None:
        at = self._target(slot)
        if at is None:
            return None
        length = self.buf.scalar("u32", at)
        self.buf.check(at + 4, length * item_size, f"{what} ({length} items)")
        return at + 4, length

    def numbers(self, slot: int, kind: str, what: str) -> np.ndarray | None:
        """A vector of scalars as a read-only numpy view, or None when the field is absent."""
        found = self._vector(slot, _SIZES[kind], what)
        if found is None:
            return None
        start, length = found
        return np.frombuffer(self.buf.data, _NUMPY[kind], count=length, offset=start)

    def tables(self, slot: int, what: str) -> list["Table"]:
        found = self._vector(slot, 4, what)
        if found is None:
            return []
        start, length = found
        return [Table(self.buf, start + 4 * i + self.buf.scalar("u32", start + 4 * i), f"{what}[{i}]")
                for i in range(length)]

    def strings(self, slot: int, what: str) -> list[str]:
        """A vector of strings ([] when the field is absent)."""
        found = self._vector(slot, 4, what)
        if found is None:
            return []
        start, length = found
        out = []
        for i in range(length):
            at = start + 4 * i + self.buf.scalar("u32", start + 4 * i)
            size = self.buf.scalar("u32", at)
            self.buf.check(at + 4, size, f"{what}[{i}] ({size} bytes)")
            out.append(self.buf.text(at + 4, size, f"{what}[{i}]"))
        return out

    def string(self, slot: int, what: str) -> str | None:
        found = self._vector(slot, 1, what)
        if found is None:
            return None
        start, length = found
        return self.buf.text(start, length, what)
