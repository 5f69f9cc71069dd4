"""Keep TensorFlow's and the converters' log noise out of the user's terminal.

TensorFlow, the MLIR converter and tf2onnx print from C++ straight to file
descriptors 1 and 2, which Python-level redirection cannot catch. `native_output_captured`
points both descriptors at a temporary file for the duration of a call and hands the
text back, so it can be shown when the call fails. `console()` is a stream on a
duplicate of the original stderr, for progress bars that must stay visible meanwhile.
"""
from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from typing import Iterator

_console = None


def silence_tensorflow() -> None:
    """Set before TensorFlow is imported: no INFO/WARNING logs, no oneDNN banner."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    for name in ("tensorflow", "absl", "tf2onnx", "h5py", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"tensorflow.*")
    warnings.filterwarnings("ignore", module=r"keras.*")
    warnings.filterwarnings("ignore", module=r"tf2onnx.*")


def console():
    """A text stream on the terminal's stderr that survives fd-level capture."""
    global _console
    if _console is None:
        try:
            _console = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
        except (OSError, ValueError, io.UnsupportedOperation):
            _console = sys.stderr  # e.g. under a test runner that replaced stderr
    return _console


class CapturedOutput:
    text: str = ""


# File descriptors and sys.stdout belong to the whole process: one capture at a time.
_CAPTURE_LOCK = threading.RLock()


@contextmanager
def native_output_captured() -> Iterator[CapturedOutput]:
    """Send fds 1 and 2 (and sys.stdout/err) to a temp file for the duration of the block.

    Captures are serialised across threads (devices are profiled concurrently): two at once
    would restore each other's descriptors in the wrong order and lose the real stdout.
    """
    with _CAPTURE_LOCK:
        captured = None
        try:
            with _captured() as captured:
                yield captured
        finally:
            if _verbose and captured is not None and captured.text.strip():
                console().write(captured.text if captured.text.endswith("\n") else captured.text + "\n")


@contextmanager
def _captured() -> Iterator[CapturedOutput]:
    captured = CapturedOutput()
    fds = (1, 2)  # the process's own descriptors, whatever sys.stdout/err were replaced with
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(fd) for fd in fds]
        old_streams = sys.stdout, sys.stderr
        try:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            for fd in fds:
                os.dup2(sink.fileno(), fd)
            sys.stdout = sys.stderr = io.TextIOWrapper(open(os.dup(sink.fileno()), "wb"), write_through=True)
            yield captured
        finally:
            _flush_c_stdio()
            try:
                sys.stdout.flush()
            finally:
                sys.stdout.close()
                sys.stdout, sys.stderr = old_streams
                for fd, copy in zip(fds, saved):
                    os.dup2(copy, fd)
                    os.close(copy)
                sink.seek(0)
                captured.text = sink.read().decode(errors="replace")


def _flush_c_stdio() -> None:
    """Native libraries buffer stdout in C; flush it while it still points at the sink."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def last_error_line(text: str) -> str:
    """The most telling line of captured converter output, for a one-line error."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else ""


# `edgeact -v`: the runtimes' own log lines are shown (on stderr) instead of swallowed. Child
# processes (profile's isolated runner) learn it from the environment.
_VERBOSE_ENV = "EDGEACT_VERBOSE"
_verbose = os.environ.get(_VERBOSE_ENV) == "1"


def set_verbose(verbose: bool) -> None:
    """Show (True) or hide (False, the default) the runtimes' own log output; see runtime_output_captured."""
    global _verbose
    _verbose = bool(verbose)
    if _verbose:
        os.environ[_VERBOSE_ENV] = "1"
    else:
        os.environ.pop(_VERBOSE_ENV, None)
    if _verbose:
        for name in ("tensorflow", "absl", "tf2onnx", "onnxruntime"):
            logging.getLogger(name).setLevel(logging.INFO)


def verbose() -> bool:
    return _verbose


def ort_log_severity() -> int:
    """ONNX Runtime's minimum severity to log: warnings with -v, else fatal only (edgeact reports errors itself)."""
    return 2 if _verbose else 4


def runtime_output_captured():
    """A runtime's native output (LiteRT's INFO lines, ORT's log and 'EP Error' banners) kept off the
    terminal and off stdout; with `-v/--verbose` it is copied to stderr after the block (as every
    capture is)."""
    return native_output_captured()
