"""A per-user, content-addressed cache folder on the device: `~/.cache/edgeact/blobs/<sha256><suffix>`.

Files are named by their content hash, so a model or the runner zip is sent only when the
device does not have it yet. Writes go to a temporary name and are renamed, so a dropped
connection never leaves a half file under a real name. `clean_cache` keeps the folder under
a size limit by removing the least recently used files (never those of the current job).
Every variable part (folder, file name) reaches the remote shell as a positional argument
of a constant script, quoted by the transport.
"""
from __future__ import annotations

from .ssh import SshTransport

# Relative to the remote home directory (ssh commands start there): no '~' to expand or quote.
CACHE_DIR = ".cache/edgeact"
DEFAULT_LIMIT_MB = 512

_UPLOAD = 'mkdir -p "$1" && tmp="$2.part.$$" && cat > "$tmp" && mv -f "$tmp" "$2"'
_LIST = 'ls -1 "$1" 2>/dev/null; exit 0'
_CLEAN = r"""
import os, sys
folder, limit, keep = sys.argv[1], int(sys.argv[2]) * 1024 * 1024, set(sys.argv[3:])
try:
    names = os.listdir(folder)
except OSError:
    names = []
entries = []
for name in names:
    path = os.path.join(folder, name)
    if os.path.isfile(path):
        stat = os.stat(path)
        entries.append((max(stat.st_atime, stat.st_mtime), stat.st_size, name, path))
total = sum(e[1] for e in entries)
removed = 0
for _, size, name, path in sorted(entries):
    if total <= limit:
        break
    if name in keep:
        continue
    os.remove(path)
    total -= size
    removed += 1
print(removed, total)
"""


def list_files(transport: SshTransport, folder: str) -> set[str]:
    listing = transport.run(["sh", "-c", _LIST, "sh", folder]).decode(errors="replace")
    return {line.strip() for line in listing.splitlines() if line.strip()}


def upload(transport: SshTransport, folder: str, name: str, data: bytes) -> str:
    path = f"{folder}/{name}"
    transport.run(["sh", "-c", _UPLOAD, "sh", folder, path], stdin=data)
    return path


def mark_used(transport: SshTransport, path: str) -> None:
    transport.run(["touch", "-c", path])


def clean_cache(transport: SshTransport, python: str, folder: str, keep: list[str],
                limit_mb: int = DEFAULT_LIMIT_MB) -> dict:
    """Remove least recently used files of `folder` until it is under `limit_mb`, sparing `keep`."""
    out = transport.run([python, "-c", _CLEAN, folder, str(limit_mb), *keep]).decode().split()
    return {"removed": int(out[0]), "bytes_left": int(out[1])} if len(out) == 2 else {}
