"""Output files that appear whole or not at all.

Every file edgeact writes goes to a temporary file beside its destination and is
renamed into place only when everything it belongs with succeeded, so an error or
Ctrl-C never leaves a half-written model or report behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import OutputExistsError


def check_writable(paths: list[Path], force: bool) -> None:
    """Refuse to overwrite outputs unless `force`, before any work is done."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise OutputExistsError(
            f"output {existing[0]} already exists; pass --force to overwrite it or choose another -o"
        )


class StagedOutputs:
    """Collects outputs as temporary files; `commit()` renames them all into place."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def write_bytes(self, path: Path, data: bytes) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        self._staged.append((Path(tmp), path))
        return Path(tmp)

    def write_json(self, path: Path, data: dict) -> Path:
        return self.write_bytes(path, (json.dumps(data, indent=2, default=jsonable) + "\n").encode())

    def staged_path(self, path: Path) -> Path:
        """A temporary path for a tool that insists on writing a file itself."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
        os.close(fd)
        self._staged.append((Path(tmp), path))
        return Path(tmp)

    def commit(self) -> list[Path]:
        done = []
        for tmp, final in self._staged:
            os.replace(tmp, final)
            done.append(final)
        self._staged.clear()
        return done

    def discard(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()


@contextmanager
def staged_outputs() -> Iterator[StagedOutputs]:
    """Stage outputs; they are discarded if the block raises, committed by the caller otherwise."""
    staged = StagedOutputs()
    try:
        yield staged
    except BaseException:
        staged.discard()
        raise
    staged.discard()  # anything not committed explicitly is not wanted


def write_json_atomic(path: Path, data: dict) -> None:
    with staged_outputs() as staged:
        staged.write_json(path, data)
        staged.commit()


def write_text_atomic(path: Path, text: str) -> None:
    with staged_outputs() as staged:
        staged.write_bytes(path, text.encode())
        staged.commit()


def sha256_of(path: Path) -> str:
    """Hash of a file, or of every file in a folder (SavedModel) in a stable order."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def jsonable(value):
    """numpy scalars and arrays, Paths and enums in reports."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "value"):
        return value.value
    return str(value)
