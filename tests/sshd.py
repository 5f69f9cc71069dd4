"""A real OpenSSH server on 127.0.0.1 for the device tests: temporary host key, authorised client key.

The server runs as the current user with its own config, host key and authorized_keys
file, on a free port; the client gets an ssh config file that pins that host key in its
own known_hosts, so host key checking stays strict exactly as it would for a user.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@dataclass
class SshServer:
    folder: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def host_key(self) -> Path:
        return self.folder / "host_key"

    @property
    def client_key(self) -> Path:
        return self.folder / "client_key"

    @property
    def client_config(self) -> Path:
        return self.folder / "ssh_config"

    @property
    def device(self) -> str:
        return f"{os.environ.get('USER', 'root')}@127.0.0.1:{self.port}"

    @property
    def ssh_options(self) -> list[str]:
        return ["-F", str(self.client_config)]

    def start(self) -> "SshServer":
        config = self.folder / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}", f"PidFile {self.folder / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "PermitRootLogin prohibit-password", "StrictModes no", "LogLevel ERROR",
            # The tests' own environment (the venv's PATH) is what a device login would have.
            "PermitUserEnvironment no", "AcceptEnv LANG",
        ]) + "\n")
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=open(self.folder / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"sshd exited: {(self.folder / 'sshd.log').read_text()}")
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def make_server(folder: Path) -> SshServer:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    server = SshServer(folder, free_port())
    keygen(server.host_key)
    keygen(server.client_key)
    shutil.copy(f"{server.client_key}.pub", folder / "authorized_keys")
    host_pub = Path(f"{server.host_key}.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {host_pub[0]} {host_pub[1]}\n")
    server.client_config.write_text("\n".join([
        "Host *", f"  IdentityFile {server.client_key}", "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {folder / 'known_hosts'}", "  StrictHostKeyChecking yes",
        "  LogLevel ERROR",
    ]) + "\n")
    return server


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), e.g. the sessions of an sshd."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def cut_connections(server: SshServer) -> None:
    """Kill the server and every session it runs: a device that drops off the network mid-run."""
    import signal

    for pid in [server.process.pid, *descendants(server.process.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.process.wait(timeout=10)
