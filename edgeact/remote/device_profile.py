"""Profile models on a device over SSH with edgeact's own loop, and bring the results back.

For each device: read its facts (stdlib probe), check it can run a profile, send the
device-side code (a zip of this package), the model and the prepared inputs to the
content-addressed cache unless already there, run `edgeact.measure.profiler` from the zip with the
device's own Python, stream its progress, fetch the JSON summary and the outputs, read the
facts again (temperature, throttling), and tidy the cache.
"""
from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeact.measure.profiler import LoopSettings, ModelProfile
from edgeact.measure.wire import parse_error, profiler_arguments, read_result, write_inputs

from . import cache
from .bundle import device_bundle, sha256_bytes, sha256_file
from .doctor import can_profile, diagnose
from .probe import __file__ as _PROBE_FILE
from .ssh import DeviceError, RemoteCommandError, SshTransport
from .target import DeviceSpec

# Runs the profiler from the zip. A watchdog thread ends it when its stdin closes, which is
# what the device sees when the desktop goes away (Ctrl-C, timeout, dropped connection):
# no profile keeps a Pi busy for nobody.
# (os.read, not sys.stdin: a daemon thread holding stdin's buffer lock aborts interpreter exit.)
_RUN_FROM_ZIP = ("import os, sys, threading\n"
                 "def watch():\n"
                 "    while os.read(0, 4096):\n"
                 "        pass\n"
                 "    os._exit(130)\n"
                 "threading.Thread(target=watch, daemon=True).start()\n"
                 "sys.path.insert(0, sys.argv[1])\n"
                 "from edgeact.measure.profiler import main\n"
                 "sys.exit(main(sys.argv[2:]))\n")
_FETCH_AND_REMOVE = 'cat "$1" && rm -f "$1"'
# The chunk server from the zip: it ends by itself when its stdin closes (the host went away).
_SERVE_FROM_ZIP = ("import sys\n"
                   "sys.path.insert(0, sys.argv[1])\n"
                   "from edgeact.measure.serve import main\n"
                   "sys.exit(main(sys.argv[2:]))\n")


@dataclass
class DeviceOptions:
    """How to reach and use devices; none of it is stored anywhere."""

    python: str = "python3"
    ssh_options: tuple[str, ...] = ()
    timeout: float = 1800.0  # per remote command; a profile of 10,000 images on a Pi takes a while
    cache_dir: str = cache.CACHE_DIR
    cache_limit_mb: int = cache.DEFAULT_LIMIT_MB


@dataclass
class DeviceSession:
    """One open connection to one device, with its facts."""

    device: DeviceSpec
    options: DeviceOptions = field(default_factory=DeviceOptions)

    def __post_init__(self) -> None:
        self.transport = SshTransport(self.device, self.options.ssh_options, self.options.timeout)
        self.blobs = f"{self.options.cache_dir}/blobs"
        self.used: list[str] = []
        self.sent: list[str] = []
        self._present: set[str] | None = None

    # -- facts ---------------------------------------------------------------------------
    def facts(self) -> dict:
        """The device's facts, from the stdlib probe run with the device's own Python."""
        try:
            out = self.transport.run([self.options.python, "-"], stdin=Path(_PROBE_FILE).read_bytes(), timeout=60)
        except RemoteCommandError as exc:
            if exc.returncode == 127:  # the shell's "command not found"
                raise DeviceError(self.device, f"no Python at '{self.options.python}' on the device; install it "
                                               "(sudo apt install python3) or pass --device-python") from None
            raise
        try:
            return json.loads(out)
        except ValueError:
            raise DeviceError(self.device, f"the device's Python printed no facts: {out[:120]!r}") from None

    def check(self, edgetpu: bool = False, formats: tuple[str, ...] = ("tflite",)) -> dict:
        """Facts and findings; raise DeviceError naming what is missing, with the install command."""
        facts = self.facts()
        findings = diagnose(facts, edgetpu, formats)
        if not can_profile(findings):
            missing = [f for f in findings if f.status == "missing"]
            raise DeviceError(self.device, "; ".join(f"{f.detail}: {f.fix}" for f in missing))
        return facts

    # -- files ---------------------------------------------------------------------------
    def _send(self, name: str, data: bytes | None = None, read=None) -> str:
        """Send a blob unless the device has it already; return its remote path."""
        if self._present is None:
            self._present = cache.list_files(self.transport, self.blobs)
        path = f"{self.blobs}/{name}"
        if name in self._present:
            cache.mark_used(self.transport, path)
        else:
            cache.upload(self.transport, self.blobs, name, data if data is not None else read())
            self._present.add(name)
            self.sent.append(name)
        self.used.append(name)
        return path

    def send_bundle(self) -> str:
        bundle = device_bundle()
        return self._send(f"edgeact-{sha256_bytes(bundle)[:16]}.zip", bundle)

    def send_model(self, path: Path) -> str:
        return self._send(f"{sha256_file(path)}{path.suffix.lower()}", read=path.read_bytes)

    def send_inputs(self, inputs) -> str:
        buffer = io.BytesIO()
        if isinstance(inputs, dict):
            write_inputs(buffer, inputs)
        else:
            np.save(buffer, inputs, allow_pickle=False)
        data = buffer.getvalue()
        return self._send(f"{sha256_bytes(data)}{'.npz' if isinstance(inputs, dict) else '.npy'}", data)

    # -- running -------------------------------------------------------------------------
    def profile(self, model: Path, inputs: np.ndarray, settings: LoopSettings, on_progress=None) -> ModelProfile:
        """Run edgeact's profiler on the device; the same code as on the desktop, from the zip."""
        bundle = self.send_bundle()
        remote_model = self.send_model(model)
        remote_inputs = self.send_inputs(inputs)
        result = f"{self.options.cache_dir}/results/{uuid.uuid4().hex}"
        self.transport.run(["mkdir", "-p", f"{self.options.cache_dir}/results"])
        argv = [self.options.python, "-c", _RUN_FROM_ZIP, bundle,
                *profiler_arguments(settings, remote_model, remote_inputs, result, progress=True)]
        try:
            self.transport.run(argv, on_stderr_line=on_progress, hold_stdin=True)
        except DeviceError as exc:
            raise _profiler_error(exc, model) from None
        text = self.transport.run(["sh", "-c", _FETCH_AND_REMOVE, "sh", f"{result}.json"])
        raw = self.transport.run(["sh", "-c", _FETCH_AND_REMOVE, "sh", f"{result}.npz"])
        summary, outputs = read_result(text, raw)
        summary["model"], summary["name"] = str(model), model.name  # not the cache's hash name
        return ModelProfile(summary, outputs)

    def serve(self, model: Path, settings: LoopSettings):
        """A chunk server for `model` on the device (`edgeact.measure.serve` from the zip): a ChunkClient."""
        from edgeact.measure.serve import ChunkClient
        from edgeact.measure.wire import serve_arguments

        bundle = self.send_bundle()
        remote_model = self.send_model(model)
        process = self.transport.open_stream([self.options.python, "-c", _SERVE_FROM_ZIP, bundle,
                                              *serve_arguments(settings, remote_model)])

        def failure():
            return _profiler_error(self.transport.stream_failure(process, "edgeact.measure.serve"), model)

        client = ChunkClient(process, failure)
        client.finish = lambda: self.transport.finish_stream(process)  # type: ignore[attr-defined]
        return client

    def tidy(self) -> dict:
        """Keep the device's cache under its size limit, sparing this run's files."""
        return cache.clean_cache(self.transport, self.options.python, self.blobs, self.used,
                                 self.options.cache_limit_mb)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "DeviceSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _profiler_error(exc: DeviceError, model: Path) -> DeviceError:
    """The profiler prints a JSON error line on failure; use its message."""
    cause = exc.cause
    if "failed on the device: " in cause:
        detail = cause.split("failed on the device: ", 1)[1]
        found = parse_error(detail)
        cause = found[0] if found else detail
    return DeviceError(exc.device, f"{model.name}: {cause}")
