"""Output files that appear whole or not at all.

Every file edgeact writes goes to a temporary file beside its destination and is
renamed into place only when everything it belongs with succeeded, so an error or
Ctrl-C never leaves a half-written model or report behind.
"""
from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import OutputError, OutputExistsError


def check_writable(paths: list[Path], force: bool) -> None:
    """Refuse to overwrite outputs unless `force`, before any work is done."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise OutputExistsError(
            f"output {existing[0]} already exists; pass --force to overwrite it or choose another -o"
        )


def check_output_folder(folder: Path) -> None:
    """Fail before any work if `folder` cannot hold outputs (it is a file, or cannot be made)."""
    folder = Path(folder)
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"output folder {folder} cannot be made: {existing} is a file; choose another -o")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable ({existing}); choose another -o")


def check_output_file(path: Path) -> None:
    """Fail before any work if a file cannot be written at `path` (--csv, --plot, ...)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give a file name")
    check_output_folder(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class StagedOutputs:
    """Collects outputs as temporary files; `commit()` renames them all into place.

    Files get the usual mode (0666 less the umask), not mkstemp's private 0600; folders this
    made are removed again when nothing was committed into them.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self._made: list[Path] = []

    def _temp(self, path: Path, suffix: str) -> tuple[int, Path]:
        try:
            missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.extend(missing)
            remove_stale_temporaries(path)
            fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=suffix, dir=path.parent)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}; choose another output folder") from None
        os.fchmod(fd, 0o666 & ~_umask())
        self._staged.append((Path(tmp), path))
        return fd, Path(tmp)

    def write_bytes(self, path: Path, data: bytes) -> Path:
        fd, tmp = self._temp(Path(path), ".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except OSError as exc:  # the staged temp file is removed by discard() as this propagates
            raise write_error(Path(path), len(data), exc) from None
        return tmp

    def write_json(self, path: Path, data: dict) -> Path:
        return self.write_bytes(path, (dumps_json(data) + "\n").encode())

    def staged_path(self, path: Path) -> Path:
        """A temporary path for a tool that insists on writing a file itself."""
        fd, tmp = self._temp(Path(path), Path(path).suffix)
        os.close(fd)
        return tmp

    def commit(self) -> list[Path]:
        done = []
        for tmp, final in self._staged:
            os.replace(tmp, final)
            done.append(final)
        self._staged.clear()
        self._made.clear()
        return done

    def staged_file(self, final: Path) -> Path | None:
        """Where the file that will become `final` is staged (before `commit()`), or None."""
        return next((tmp for tmp, target in self._staged if target == Path(final)), None)

    def discard_matching(self, folder: Path, names: list[str]) -> None:
        """Drop the staged files that would become `folder/name` (a format whose export failed)."""
        targets = {Path(folder) / n for n in names}
        for tmp, final in [item for item in self._staged if item[1] in targets]:
            tmp.unlink(missing_ok=True)
            self._staged.remove((tmp, final))

    def discard(self) -> None:
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()
        for folder in self._made:  # deepest first: they were listed child before parent
            try:
                folder.rmdir()
            except OSError:
                break
        self._made.clear()


def _temp_prefix(name: str, pid: int | None = None) -> str:
    """Temporary files name the host and process that own them, so that a later run can tell
    the leftovers of a killed run (SIGKILL, OOM killer, power loss) from a live run's files."""
    return f".{name}.edgeact-{socket.gethostname()}-{os.getpid() if pid is None else pid}."


_OWNER = re.compile(r"\.edgeact-(?P<host>.+)-(?P<pid>\d+)\.[^.]*(\.[^.]*)?$")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporary files of `path` left by a process of this host that no longer runs.

    Files of a live process (another run into the same folder) and of other hosts (a shared
    network folder) are left alone. Returns what was removed.
    """
    path = Path(path)
    removed = []
    host = socket.gethostname()
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.edgeact-*"):
        owner = _OWNER.search(candidate.name[len(path.name) + 1:])
        if owner is None or owner["host"] != host or _alive(int(owner["pid"])):
            continue
        try:
            candidate.unlink()
            removed.append(candidate)
        except OSError:  # gone already, or not ours to delete: not worth failing a conversion over
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


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


_NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def write_error(path: Path, needed: int, exc: OSError) -> OutputError:
    """A one-line error for a failed write: the folder and the space needed when the disk is full."""
    folder = Path(path).parent
    if exc.errno in _NO_SPACE:
        try:
            free = f"{shutil.disk_usage(folder).free:,} bytes are free"
        except OSError:
            free = "the free space is unknown"
        return OutputError(f"no space to write {Path(path).name} in {folder}: it needs {needed:,} bytes and {free} "
                           f"({exc.strerror}); free some space or choose another output folder")
    return OutputError(f"cannot write {path}: {exc.strerror}; choose another output folder")


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


def dumps_json(data) -> str:
    """Strict JSON (any parser reads it): infinite or NaN numbers, such as the SQNR of identical
    outputs, are written as the strings "inf", "-inf" and "nan"."""
    return json.dumps(json_safe(data), indent=2, default=jsonable, allow_nan=False)


def json_safe(value):
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def jsonable(value):
    """numpy scalars and arrays, Paths and enums in reports."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "value"):
        return value.value
    return str(value)
