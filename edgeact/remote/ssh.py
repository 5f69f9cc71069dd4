"""Commands on a device through OpenSSH's `ssh` client, with failures turned into plain causes.

Every remote command is an argv list quoted with `shlex.quote` here, in one place, so no
file name or option ever reaches the remote shell unquoted. Host keys are checked as the
user's ssh configuration says, and a changed key is never accepted: `StrictHostKeyChecking`
is left to the user's config, but a mismatch always fails (OpenSSH refuses it), and
password prompts are impossible (`BatchMode=yes`).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Callable, Sequence

from edgeact.errors import EdgeactError

from .target import DeviceSpec

CONNECT_TIMEOUT_S = 10


class DeviceError(EdgeactError):
    """A device could not be reached or could not run the job; the message names the device."""

    exit_code = 3

    def __init__(self, device: DeviceSpec | str, cause: str) -> None:
        super().__init__(f"device {device}: {cause}")
        self.device = str(device)
        self.cause = cause


class DevicesFailedError(EdgeactError):
    """Some devices of a run failed; the others' results were printed. Names each device and cause."""

    exit_code = 3


class RemoteCommandError(DeviceError):
    """The connection worked, but the remote command exited non-zero (`returncode`)."""

    def __init__(self, device: DeviceSpec | str, cause: str, returncode: int) -> None:
        super().__init__(device, cause)
        self.returncode = returncode


# (fragment of ssh's stderr, the cause a user should read)
_SSH_FAILURES = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "host key mismatch: the device's SSH host key is not the one in "
     "known_hosts; if the device was reinstalled, remove the old key with ssh-keygen -R HOST"),
    ("Host key verification failed", "host key verification failed: connect once with ssh to review and accept "
     "the device's host key"),
    ("No ED25519 host key is known", "unknown host key: connect once with ssh to review and accept it"),
    ("Permission denied", "authentication failed: set up key-based login (ssh-copy-id) or load your key into "
     "ssh-agent; edgeact never asks for passwords"),
    ("Connection refused", "connection refused: is sshd running on the device, and is the port right?"),
    ("Could not resolve hostname", "unknown host name: check the name or your ~/.ssh/config"),
    ("Connection timed out", "connection timed out: is the device on and on this network?"),
    ("No route to host", "no route to host: is the device on and on this network?"),
    ("Connection closed", "the connection was closed by the device"),
    ("Connection reset", "the connection was reset"),
    ("Broken pipe", "the connection dropped"),
    ("Timeout, server", "the connection dropped (no answer to keep-alives)"),
)


def explain_ssh_failure(stderr: str) -> str:
    for fragment, cause in _SSH_FAILURES:
        if fragment in stderr:
            return cause
    # The profiler's own JSON progress lines share stderr: they are not ssh's message.
    last = [line for line in stderr.strip().splitlines() if line.strip() and not line.startswith('{"progress"')]
    # A connection cut mid-command ends ssh with 255 and, at quiet log levels, no message.
    return f"ssh failed: {last[-1][:200]}" if last else "the connection dropped (ssh ended without a message)"


@dataclass(eq=False)  # identity, not field equality: transports are tracked in a set
class SshTransport:
    """Runs argv lists on one device.

    Args:
        device: where.
        options: extra `-o Key=Value` settings or other ssh flags (tests pass -F CONFIG).
        command_timeout: seconds any one remote command may take before it is killed.
    """

    device: DeviceSpec
    options: Sequence[str] = ()
    command_timeout: float = 600.0
    _control_dir: str = field(default="", repr=False)  # made by connect(), removed by close()
    _connected: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if shutil.which("ssh") is None:
            raise DeviceError(self.device,
                              "no ssh client on this machine; install OpenSSH (apt install openssh-client)")

    def ssh_argv(self, master: bool = False) -> list[str]:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", f"ControlPath={self._control_dir}/%C",
                "-o", "ControlMaster=yes" if master else "ControlMaster=no", *self.options]
        if master:
            argv += ["-o", "ControlPersist=60", "-N", "-f"]
        if self.device.port:
            argv += ["-p", str(self.device.port)]
        return argv + ["--", self.device.destination]

    def connect(self) -> None:
        """Open one shared connection for all the commands of a run (upload, run, fetch).

        `ssh -M -N -f` authenticates, then forks into the background; its stderr goes to a
        file, not a pipe, so that no later read waits on the background process.
        """
        if self._connected:
            return
        # Unix socket paths are limited to ~104 bytes and ssh appends ~17 to ControlPath:
        # a long $TMPDIR (macOS's) would break every connection, so the socket lives in /tmp.
        self._control_dir = tempfile.mkdtemp(prefix="ea-ssh-", dir="/tmp" if os.path.isdir("/tmp") else None)
        with tempfile.TemporaryFile() as log:
            try:
                done = subprocess.run(self.ssh_argv(master=True), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=log, timeout=CONNECT_TIMEOUT_S + 20)
            except subprocess.TimeoutExpired:
                self.close()
                raise DeviceError(self.device, "connection timed out: is the device on and on this network?") from None
            log.seek(0)
            stderr = log.read().decode(errors="replace")
        if done.returncode != 0:
            self.close()
            raise DeviceError(self.device, explain_ssh_failure(stderr))
        self._connected = True
        with _RUNNING_LOCK:
            _MASTERS.add(self)

    def run(self, remote_argv: Sequence[str], stdin: bytes | None = None, timeout: float | None = None,
            on_stderr_line: Callable[[str], None] | None = None, hold_stdin: bool = False) -> bytes:
        """Run a command remotely; return its stdout; raise DeviceError with the cause on failure.

        Remote stderr lines go to `on_stderr_line` as they arrive (progress); a non-zero
        exit raises RemoteCommandError with the last remote stderr line. With `hold_stdin`, the
        remote stdin stays open until the command ends, so the command can watch it to learn
        that this side went away.
        """
        self.connect()
        command = " ".join(shlex.quote(str(a)) for a in remote_argv)
        timeout = timeout or self.command_timeout
        process = subprocess.Popen(self.ssh_argv() + [command],
                                   stdin=subprocess.PIPE if stdin is not None or hold_stdin else subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with _RUNNING_LOCK:
            _RUNNING.add(process)
        stderr_lines: list[str] = []
        stdout_chunks: list[bytes] = []
        readers = [threading.Thread(target=_pump, args=(process.stderr, stderr_lines, on_stderr_line), daemon=True),
                   threading.Thread(target=lambda: stdout_chunks.append(process.stdout.read()), daemon=True)]
        for reader in readers:
            reader.start()
        try:
            if stdin is not None:
                try:
                    process.stdin.write(stdin)
                    if not hold_stdin:
                        process.stdin.close()
                except BrokenPipeError:
                    pass  # the command ended early; its exit status says why
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise DeviceError(self.device, f"remote command timed out after {timeout:g} s: {remote_argv[0]} "
                                           "(raise --device-timeout if the device is just slow)") from None
        finally:
            with _RUNNING_LOCK:
                _RUNNING.discard(process)
            if process.stdin is not None and not process.stdin.closed:
                process.stdin.close()
        for reader in readers:
            reader.join(timeout=10)
        if process.returncode == 255:
            raise DeviceError(self.device, explain_ssh_failure("\n".join(stderr_lines)))
        if process.returncode != 0:
            last = [line for line in stderr_lines if line.strip()]
            detail = last[-1][:300] if last else f"exit code {process.returncode}"
            raise RemoteCommandError(self.device, f"'{remote_argv[0]}' failed on the device: {detail}",
                                     process.returncode)
        return b"".join(stdout_chunks)

    def open_stream(self, remote_argv: Sequence[str]) -> subprocess.Popen:
        """Start a remote command with its stdin and stdout as pipes (a chunk server), stderr collected.

        The caller talks to it through `process.stdin`/`process.stdout` and ends it with
        `finish_stream`; Ctrl-C (`kill_running_commands`) kills it like any other command.
        """
        self.connect()
        command = " ".join(shlex.quote(str(a)) for a in remote_argv)
        process = subprocess.Popen(self.ssh_argv() + [command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        process.stderr_lines = []  # type: ignore[attr-defined]
        threading.Thread(target=_pump, args=(process.stderr, process.stderr_lines, None), daemon=True).start()
        with _RUNNING_LOCK:
            _RUNNING.add(process)
        return process

    def stream_failure(self, process: subprocess.Popen, what: str) -> DeviceError:
        """The DeviceError for a stream that ended early: the dropped connection, or the command's own error."""
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with _RUNNING_LOCK:
            _RUNNING.discard(process)
        lines = getattr(process, "stderr_lines", [])
        if process.returncode in (255, None) or process.returncode < 0:
            return DeviceError(self.device, explain_ssh_failure("\n".join(lines)))
        last = [line for line in lines if line.strip()]
        return RemoteCommandError(self.device, f"'{what}' failed on the device: "
                                               f"{last[-1][:300] if last else f'exit code {process.returncode}'}",
                                  process.returncode)

    def finish_stream(self, process: subprocess.Popen) -> None:
        """Close the stream's stdin and wait for the command to end."""
        try:
            if process.stdin is not None and not process.stdin.closed:
                process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        with _RUNNING_LOCK:
            _RUNNING.discard(process)

    def close(self) -> None:
        """End the shared connection and remove its socket folder."""
        with _RUNNING_LOCK:
            _MASTERS.discard(self)
        if self._connected:
            argv = self.ssh_argv()
            subprocess.run(argv[:-2] + ["-O", "exit"] + argv[-2:], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=10)
            self._connected = False
        if self._control_dir:
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self._control_dir = ""

    def __enter__(self) -> "SshTransport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_RUNNING: set[subprocess.Popen] = set()
_MASTERS: set[SshTransport] = set()
_RUNNING_LOCK = threading.RLock()


def kill_running_commands() -> None:
    """On Ctrl-C: kill every ssh command in flight and end every shared connection.

    The master connection holds the commands' pipes, so it must go too; the device then
    sees its session's stdin close, and the profiler's watchdog ends it."""
    with _RUNNING_LOCK:
        processes, masters = list(_RUNNING), list(_MASTERS)
    for process in processes:
        process.kill()
    for transport in masters:
        transport.close()


def _pump(stream, lines: list[str], callback) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        lines.append(line)
        if callback is not None:
            callback(line)

