"""The device-side code, packed as a deterministic zip that Python imports directly.

The zip holds the `edgeact` package's sources. Python runs them from the zip
(`sys.path.insert(0, 'edgeact-<hash>.zip')`), so the device needs no install of edgeact,
and the same loop code measures on the desktop and on the device. Identical sources give
an identical zip and hash, so it is sent once per version.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from functools import lru_cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # .../edgeact
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


@lru_cache(maxsize=1)
def device_bundle() -> bytes:
    """The edgeact package as zip bytes (sources only, sorted, fixed timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(PACKAGE_ROOT.rglob("*.py")):
            info = zipfile.ZipInfo(f"edgeact/{path.relative_to(PACKAGE_ROOT).as_posix()}", _FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
