"""Devices over real SSH: an OpenSSH server on 127.0.0.1 (tests/sshd.py) running this machine's Python."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli
from edgeact.errors import InputError
from edgeact.remote import parse_device
from edgeact.remote.device_profile import DeviceOptions, DeviceSession
from edgeact.remote.ssh import DeviceError, SshTransport

from .sshd import make_server

pytestmark = pytest.mark.device


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def options(server, tmp_path):
    # The device's "own Python" is this venv's; its cache lives in the test's folder.
    return DeviceOptions(python=sys.executable, ssh_options=tuple(server.ssh_options), timeout=60,
                         cache_dir=str(tmp_path / "remote-cache"))


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A Python with neither numpy nor a TFLite runtime: a device that cannot profile yet."""
    folder = tmp_path_factory.mktemp("bare")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True)
    return str(folder / "venv" / "bin" / "python")


@pytest.mark.parametrize("text, expected", [
    ("pi@raspberrypi.local", ("raspberrypi.local", "pi", None)),
    ("rpi5", ("rpi5", None, None)),
    ("root@127.0.0.1:2222", ("127.0.0.1", "root", 2222)),
])
def test_parse_device(text, expected):
    spec = parse_device(text)
    assert (spec.host, spec.user, spec.port) == expected


@pytest.mark.parametrize("text", ["-oProxyCommand=touch /tmp/x", "pi@host;rm -rf ~", "host:99999", "a b", "@host"])
def test_parse_device_rejects_what_ssh_could_misread(text):
    with pytest.raises(InputError):
        parse_device(text)


def test_arguments_reach_the_device_verbatim(server, options, tmp_path):
    transport = SshTransport(parse_device(server.device), options.ssh_options)
    marker = tmp_path / "pwned"
    nasty = f"a file; touch {marker}; $(touch {marker}) `touch {marker}` 'quoted' \"double\" * ~"
    out = transport.run([sys.executable, "-c", "import sys; print(sys.argv[1])", nasty])
    assert out.decode().rstrip("\n") == nasty
    assert not marker.exists()  # an absolute path: the remote shell runs in $HOME
    transport.close()


def test_device_check_reports_facts(server, options):
    result = CliRunner().invoke(cli, ["device", "check", server.device, "--ssh-option", f"-F {server.client_config}",
                                      "--device-python", sys.executable, "--json"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    assert report["can_profile"] is True
    assert report["facts"]["arch"] == os.uname().machine
    assert report["facts"]["runtimes"]["litert"]


def test_device_without_runtime_gets_install_commands(server, bare_python):
    result = CliRunner().invoke(cli, ["device", "check", server.device, "--ssh-option", f"-F {server.client_config}",
                                      "--device-python", bare_python])
    assert result.exit_code == 1
    assert "numpy is not importable" in result.output
    assert f"fix: {bare_python} -m pip install ai-edge-litert" in result.output
    assert "cannot run a profile yet" in result.output


def test_device_without_python(server):
    result = CliRunner().invoke(cli, ["device", "check", server.device, "--ssh-option", f"-F {server.client_config}",
                                      "--device-python", "/no/such/python3"])
    assert result.exit_code == 3
    assert result.stderr.strip().startswith("error: device ") and "no Python at '/no/such/python3'" in result.stderr


def test_connection_refused(server):
    closed = parse_device(f"root@127.0.0.1:{server.port + 1 if server.port < 65535 else 1}")
    with pytest.raises(DeviceError, match="connection refused"):
        SshTransport(closed, server.ssh_options).run(["true"])


def test_authentication_failure(server, tmp_path):
    config = tmp_path / "config"
    other_key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    config.write_text(server.client_config.read_text().replace(str(server.client_key), str(other_key)))
    with pytest.raises(DeviceError, match="authentication failed"):
        SshTransport(parse_device(server.device), ["-F", str(config)]).run(["true"])


def test_host_key_mismatch_is_never_accepted(server, tmp_path):
    fake = tmp_path / "fake_host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fake)], check=True)
    known = tmp_path / "known_hosts"
    key = Path(f"{fake}.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{server.port} {key[0]} {key[1]}\n")
    config = tmp_path / "config"
    config.write_text(server.client_config.read_text().replace(str(server.folder / "known_hosts"), str(known)))
    for _ in range(2):  # and it stays refused: nothing was written to known_hosts
        with pytest.raises(DeviceError, match="host key mismatch"):
            SshTransport(parse_device(server.device), ["-F", str(config)]).run(["true"])
    assert known.read_text().split()[2] == key[1]


def test_hanging_command_times_out(server, options):
    transport = SshTransport(parse_device(server.device), options.ssh_options, command_timeout=2)
    started = time.monotonic()
    with pytest.raises(DeviceError, match="timed out after 2 s"):
        transport.run(["sleep", "30"])
    assert time.monotonic() - started < 15
    transport.close()


def test_blobs_are_content_addressed_and_sent_once(server, options, tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"TFL3" * 100)
    with DeviceSession(parse_device(server.device), options) as session:
        first = session.send_model(model)
        session.send_bundle()
        assert len(session.sent) == 2
    with DeviceSession(parse_device(server.device), options) as session:
        assert session.send_model(model) == first
        session.send_bundle()
        assert session.sent == []  # both were there already
    assert Path(first).read_bytes() == model.read_bytes() if Path(first).is_absolute() else True


def test_cache_is_kept_under_its_limit(server, options, tmp_path):
    limited = DeviceOptions(**{**options.__dict__, "cache_limit_mb": 1})
    with DeviceSession(parse_device(server.device), limited) as session:
        for i in range(3):
            session.send_inputs(np.full((300_000,), i, np.float32))  # 1.2 MB each
        keep = session.used[-1]
        session.used = [keep]
        result = session.tidy()
    remaining = os.listdir(Path(options.cache_dir) / "blobs")
    assert result["removed"] == 2 and remaining == [keep]


def test_tflite_check_without_schema(converted_small, tmp_path):
    """tflite-runtime ships no flatbuffer schema (and no flatbuffers package): edgeact's own reader
    still reads and validates the whole file."""
    out, _ = converted_small
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all, just text")
    code = ("import sys\n"
            "for name in ('flatbuffers', 'ai_edge_litert.schema_py_generated', 'tensorflow'):\n"
            "    sys.modules[name] = None\n"
            "from edgeact.errors import ModelLoadError\n"
            "from edgeact.formats.tflite_model import read_tflite\n"
            f"print(read_tflite({str(out / 'small_cnn_int8.tflite')!r}).op_counts())\n"
            f"try:\n    read_tflite({str(junk)!r})\nexcept ModelLoadError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert "'DEPTHWISE_CONV_2D': 1" in done.stdout and "not a TFLite model" in done.stdout


def test_ssh_config_alias_is_honoured(server, tmp_path):
    """`--device lab-pi` works when ~/.ssh/config (here: -F) says where lab-pi is."""
    config = tmp_path / "config"
    config.write_text(f"Host lab-pi\n  HostName 127.0.0.1\n  Port {server.port}\n  User {server.device.split('@')[0]}\n"
                      + server.client_config.read_text())
    result = CliRunner().invoke(cli, ["device", "check", "lab-pi", "--ssh-option", f"-F {config}",
                                      "--device-python", sys.executable])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("lab-pi: ")


def test_doctor_asks_only_for_the_runtimes_the_formats_need():
    from edgeact.remote.doctor import can_profile, diagnose

    onnx_only = {"python": "3.11.2", "python_executable": "python3", "arch": "aarch64", "numpy": "2.1.0",
                 "runtimes": {"litert": None, "tflite-runtime": None, "onnxruntime": "1.20.0"}}
    assert can_profile(diagnose(onnx_only, formats=("onnx",)))
    assert not can_profile(diagnose(onnx_only, formats=("tflite",)))
    no_ort = {**onnx_only, "runtimes": {"litert": "2.3.0"}}
    findings = {f.item: f for f in diagnose(no_ort, formats=("tflite", "onnx"))}
    assert findings["onnxruntime"].status == "missing" and "pip install onnxruntime" in findings["onnxruntime"].fix
    armv7 = {**onnx_only, "arch": "armv7l", "runtimes": {}}
    assert "'numpy<2' tflite-runtime" in {f.item: f for f in diagnose(armv7)}["tflite runtime"].fix


def test_ipv6_destination_has_no_brackets():
    spec = parse_device("pi@[::1]:2222")
    assert spec.destination == "pi@::1" and spec.port == 2222 and str(spec) == "pi@[::1]:2222"


def test_a_device_given_twice_is_refused(converted_small):
    out, _ = converted_small
    result = CliRunner().invoke(cli, ["profile", str(out / "small_cnn_int8.tflite"), "--device", "local",
                                      "--device", "local", "--no-progress"])
    assert result.exit_code == 2 and "given twice" in result.stderr


@pytest.mark.parametrize("command", [["device", "--help"], ["device", "check", "--help"]])
def test_device_help(command):
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 0 and "Usage:" in result.output


def test_control_socket_fits_with_a_long_tmpdir(server, options, tmp_path, monkeypatch):
    long_tmp = tmp_path / ("t" * 90)
    long_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(long_tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    transport = SshTransport(parse_device(server.device), options.ssh_options)
    assert transport.run(["echo", "ok"]).strip() == b"ok"
    transport.close()


def test_a_cut_after_progress_lines_reads_as_a_dropped_connection():
    """The device profiler streams JSON progress on the same stderr; a cut connection adds nothing after it."""
    from edgeact.remote.ssh import explain_ssh_failure

    stderr = '{"progress": "m.tflite: timing", "done": 100000, "total": 2000000}\n'
    assert explain_ssh_failure(stderr) == "the connection dropped (ssh ended without a message)"
    assert explain_ssh_failure(stderr + "Connection reset by peer\n") == "the connection was reset"
