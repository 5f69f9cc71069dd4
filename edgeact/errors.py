"""The one exception hierarchy of edgeact.

Library code raises these with a message that names what was wrong and what to do;
the CLI turns them into a one-line error and the exit code below, in one place
(`edgeact.cli.app.EdgeactGroup.invoke`). Anything else reaching the CLI is a bug in edgeact.
"""
from __future__ import annotations

import re


class EdgeactError(Exception):
    """Base class: a problem the user can act on. Exit code 2.

    `detail` is the full text of a library message the one line quotes and cuts (Keras',
    TensorFlow's): `edgeact -v` prints it under the error line (see `quoting`).
    """

    exit_code = 2
    detail: str | None = None


class InputError(EdgeactError):
    """A model, data file, folder or option the user gave cannot be used."""


class ModelLoadError(InputError):
    """The model file is missing, corrupt or of a kind edgeact cannot read."""


class LimitError(ModelLoadError):
    """A model file or report asks for more than edgeact's limits or this machine's memory allow."""


class RuntimeCrashError(EdgeactError):
    """A runtime died by a signal (a native crash) while loading or running a model."""


class CalibrationError(InputError):
    """The calibration data cannot be read or does not fit the model."""


class OutputError(InputError):
    """An output cannot be written where the user asked for it."""


class OutputExistsError(InputError):
    """An output file exists and --force was not given."""


class ConversionError(EdgeactError):
    """An exporter (TFLiteConverter, tf2onnx, ONNX Runtime) refused the model."""


class RuntimeUnavailableError(EdgeactError):
    """No runtime (or delegate) that can run this model is installed."""


class VerificationError(EdgeactError):
    """Outputs were written, but the converted model is further from float than allowed."""

    exit_code = 1


# Wrappers libraries put around the message that matters: Keras' "Exception encountered when
# calling Cropping1D.call()." and "Error when deserializing class 'X' using config={...}." say
# where it happened; the cause is on a later line ("Exception encountered: ...", or the next one).
_WRAPPER = re.compile(r"^(?:Exception encountered when calling (?P<call>[\w.]+\(\))|"
                      r"Error when deserializing class '(?P<cls>[^']+)')")
_CAUSE_PREFIX = re.compile(r"^(?:Exception encountered|Exception):\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Clause boundaries, best first: the end of a sentence, then a ';', ':' or ','.
_BOUNDARIES = (re.compile(r"[.!?](?=\s)"), re.compile(r"[;:](?=\s)"), re.compile(r",(?=\s)"))


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """An exception's (or a text's) message as one line of at most `limit` characters.

    The first non-empty line, with a library's wrapper line replaced by the cause it wraps
    (Keras: "Cropping1D.call(): `cropping` parameter ... must be smaller than the input
    length"), terminal colour codes removed, and cut at a sentence or clause boundary (else
    between words), never inside a word; a cut ends in "…". The type name if there is no text.
    """
    text = _ANSI.sub("", str(exc))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    line = lines[0]
    wrapper = _WRAPPER.match(line)
    if wrapper and len(lines) > 1:
        cause = next((_CAUSE_PREFIX.sub("", x) for x in lines[1:] if _CAUSE_PREFIX.match(x)), None)
        if cause is None:
            cause = lines[1]
        where = wrapper.group("call") or wrapper.group("cls")
        line = cause if where in cause else f"{where}: {cause}"
    return shorten(line, limit)


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at the best clause boundary, marked with "…"."""
    if len(text) <= limit:
        return text
    room = max(limit - 2, 1)  # two characters for the mark
    head = text[:room + 1]  # one more: a boundary right at the limit counts
    for boundary in _BOUNDARIES:
        ends = [m.end() for m in boundary.finditer(head) if m.end() <= room]
        # A boundary that keeps at least half of the room; else try the next, weaker kind.
        if ends and ends[-1] >= room // 2:
            return text[:ends[-1]].rstrip(" ,;:") + " …"
    space = head.rfind(" ", 0, room)
    cut = text[:space] if space >= room // 2 else text[:room]
    return cut.rstrip(" ,;:") + "…"


def quoting(error: EdgeactError, source: BaseException | str) -> EdgeactError:
    """`error` carrying the full text of the library message it quotes (for `edgeact -v`)."""
    text = _ANSI.sub("", str(source)).strip()
    error.detail = text or None
    return error


class EdgeactWarning(UserWarning):
    """Something the user should know that does not stop the work (e.g. random calibration)."""


def shown(name: str, limit: int = 60) -> str:
    """A name read from a file, fit for a one-line message: cut, with control characters as '?'."""
    return "".join(c if c.isprintable() else "?" for c in str(name)[:limit])
