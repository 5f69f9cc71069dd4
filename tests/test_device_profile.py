"""`edgeact profile --device`: the loop runs on the device through real SSH, results come back.

The "device" is this machine's Python behind an OpenSSH server on 127.0.0.1; the aarch64
tests at the bottom use the emulated Debian arm64 device from tests/device/.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli

from .sshd import cut_connections, descendants, make_server

pytestmark = pytest.mark.device


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two devices; the first one's ssh config knows both host keys and holds both client keys."""
    started = [make_server(tmp_path_factory.mktemp(f"sshd{i}")).start() for i in range(2)]
    first, second = started
    first.client_config.write_text("\n".join([
        "Host *", f"  IdentityFile {first.client_key}", f"  IdentityFile {second.client_key}",
        "  IdentitiesOnly yes", "  StrictHostKeyChecking yes", "  LogLevel ERROR",
        f"  UserKnownHostsFile {first.folder / 'known_hosts'} {second.folder / 'known_hosts'}",
    ]) + "\n")
    yield started
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def labelled_npz(tmp_path_factory):
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, size=(48, 4, 4, 3)).astype(np.float32)
    x = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2).astype(np.uint8)
    path = tmp_path_factory.mktemp("eval") / "eval.npz"
    np.savez(path, x=x, y=rng.integers(0, 4, size=48))
    return path


def device_args(server, tmp_path, python=sys.executable):
    return ["--device", server.device, "--ssh-option", f"-F {server.client_config}", "--device-python", python,
            "--device-cache", str(tmp_path / "device-cache")]


def profile(*args):
    return CliRunner().invoke(cli, ["profile", *[str(a) for a in args], "--no-progress"])


def test_profile_on_two_devices_and_locally(servers, converted_small, labelled_npz, small_cnn_file, tmp_path):
    out, _ = converted_small
    model = out / "small_cnn_int8.tflite"
    result = profile(model, "--data", labelled_npz, "--reference", small_cnn_file, "--runs", 30, "--json",
                     *device_args(servers[0], tmp_path), "--device", servers[1].device, "--device", "local")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {row["device"]["name"]: row for row in report["models"]}
    assert set(rows) == {servers[0].device, servers[1].device, "local"}
    for name, row in rows.items():
        assert row["name"] == "small_cnn_int8.tflite"
        assert row["device"]["arch"] and row["device"]["python"] and row["device"]["cpu_count"]
        assert row["latency_ms"]["runs"] == 30
    # The same loop on the same runtime: identical outputs, so identical scores.
    scores = {(r["accuracy"]["top1"], r["reference"]["max_abs_diff"], r["reference"]["cosine"]) for r in rows.values()}
    assert len(scores) == 1
    assert [d["error"] for d in report["devices"]] == [None, None, None]


def test_table_has_a_row_per_device_and_model(servers, converted_small, labelled_npz, tmp_path):
    out, _ = converted_small
    result = profile(out / "small_cnn_int8.tflite", out / "small_cnn_fp32.tflite", "--data", labelled_npz,
                     "--runs", 10, *device_args(servers[0], tmp_path), "--device", servers[1].device,
                     "--csv", tmp_path / "rows.csv")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("root@")]
    assert len(lines) == 4
    assert sum(servers[0].device in line for line in lines) == 2
    import csv

    rows = list(csv.DictReader((tmp_path / "rows.csv").open()))
    assert sorted(r["device.name"] for r in rows) == sorted([servers[0].device] * 2 + [servers[1].device] * 2)


def test_failed_device_keeps_the_others(servers, converted_small, labelled_npz, tmp_path):
    out, _ = converted_small
    result = profile(out / "small_cnn_int8.tflite", "--data", labelled_npz, "--runs", 10,
                     *device_args(servers[0], tmp_path), "--device", "root@127.0.0.1:1")
    assert result.exit_code == 3
    assert servers[0].device in result.stdout and "small_cnn_int8.tflite" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == ["error: device root@127.0.0.1:1: connection refused: is sshd running on the device, "
                      "and is the port right?"]


def test_device_without_runtime_fails_with_the_install_command(servers, converted_small, labelled_npz, tmp_path):
    out, _ = converted_small
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = profile(out / "small_cnn_int8.tflite", "--data", labelled_npz,
                     *device_args(servers[0], tmp_path, python=str(bare / "bin" / "python")))
    assert result.exit_code == 3
    assert "numpy is not importable" in result.stderr and "-m pip install ai-edge-litert" in result.stderr


def test_dropped_connection_mid_run(converted_small, labelled_npz, tmp_path):
    server = make_server(tmp_path / "sshd").start()
    out, _ = converted_small
    results = {}

    def run():
        results["result"] = profile(out / "small_cnn_int8.tflite", "--data", labelled_npz, "--runs", 2_000_000,
                                    *device_args(server, tmp_path))

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the profiler runs on the "device"
        cmdlines = []
        for pid in descendants(server.process.pid):
            try:
                cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                pass
        if any(b"edgeact.measure.profiler" in c for c in cmdlines):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the profiler never started on the device")
    time.sleep(0.5)
    cut_connections(server)
    worker.join(timeout=120)
    result = results["result"]
    assert result.exit_code == 3
    error = result.stderr.strip()
    assert error.startswith(f"error: device {server.device}: ") and "\n" not in error
    assert any(word in error for word in ("closed", "dropped", "reset", "refused")), error


def test_device_runner_never_imports_tensorflow(servers, converted_small, labelled_npz, tmp_path):
    """The device's Python here cannot import TensorFlow at all; the profile still runs."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['tensorflow'] = None\n")
    python = tmp_path / "python-without-tf"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={blocker} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    check = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True)
    assert check.returncode != 0
    out, _ = converted_small
    result = profile(out / "small_cnn_int8.tflite", "--data", labelled_npz, "--runs", 10,
                     *device_args(servers[0], tmp_path, python=str(python)))
    assert result.exit_code == 0, result.output + result.stderr


def test_inputs_travel_quantized(converted_small, pixels_npy):
    from edgeact.remote.fleet import wire_inputs
    from edgeact.runtime import open_runner

    out, _ = converted_small
    model = out / "small_cnn_int8.tflite"
    x = np.load(pixels_npy)[:8].astype(np.float32) / 255
    wired = wire_inputs(model, x)
    runner = open_runner(model)
    assert wired.dtype == np.int8 and np.array_equal(wired, runner.prepare(x))
    assert wire_inputs(out / "small_cnn_int8.tflite", wired).dtype == np.int8


def _terminal_sigint() -> None:
    """SIGINT as a terminal delivers it. A shell without job control starts a background command
    (`bash .ci/run &`) with SIGINT ignored (POSIX), the disposition is inherited through exec,
    and Python then installs no KeyboardInterrupt handler: the Ctrl-C was ignored and the
    5,000,000 runs completed with exit 0 in two such CI runs, while the test passed from a
    terminal. A user's Ctrl-C meets the default disposition."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_ends_the_run_here_and_on_the_device(servers, converted_small, tmp_path):
    import signal

    out, _ = converted_small
    server = servers[0]
    def remote_profilers():
        found = []
        for pid in descendants(server.process.pid):
            try:
                if b"edgeact.measure.profiler" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                pass
        return found

    earlier = set(remote_profilers())
    process = subprocess.Popen([sys.executable, "-m", "edgeact", "profile", str(out / "small_cnn_int8.tflite"),
                                "--runs", "5000000", "--no-progress", *device_args(server, tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_terminal_sigint)

    # Only this run's profiler: under load, the previous test's run (connection cut) may still be
    # ending on the device, and a Ctrl-C sent on seeing it would hit this process mid-start.
    deadline = time.monotonic() + 60
    while not set(remote_profilers()) - earlier:
        assert time.monotonic() < deadline, "the profiler never started on the device"
        time.sleep(0.1)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in stderr
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while set(remote_profilers()) - earlier:  # the device's watchdog ends it when the session closes
        assert time.monotonic() < deadline, "the profiler kept running on the device"
        time.sleep(0.1)
