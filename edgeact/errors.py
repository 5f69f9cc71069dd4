"""The one exception hierarchy of edgeact.

Library code raises these with a message that names what was wrong and what to do;
the CLI turns them into a one-line error and the exit code below, in one place
(`edgeact.cli.app.EdgeactGroup.invoke`). Anything else reaching the CLI is a bug in edgeact.
"""


class EdgeactError(Exception):
    """Base class: a problem the user can act on. Exit code 2."""

    exit_code = 2


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


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's first non-empty message line, for a one-line error; its type if it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:limit] if lines else type(exc).__name__


class EdgeactWarning(UserWarning):
    """Something the user should know that does not stop the work (e.g. random calibration)."""


def shown(name: str, limit: int = 60) -> str:
    """A name read from a file, fit for a one-line message: cut, with control characters as '?'."""
    return "".join(c if c.isprintable() else "?" for c in str(name)[:limit])
