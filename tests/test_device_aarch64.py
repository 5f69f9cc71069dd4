"""A real aarch64 Linux target: the emulated Debian arm64 device from tests/device/ (qemu-user,
binfmt_misc, its own sshd on 127.0.0.1, Python with numpy<2 and tflite-runtime 2.14).

The fixture builds the device when its cached root filesystem is missing (about 5 minutes
here; .ci/run builds it before the tests) and needs root, as chroot and binfmt_misc do.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli
from edgeact.measure.profiler import LoopSettings
from edgeact.remote import parse_device
from edgeact.remote.device_profile import DeviceOptions, DeviceSession
from edgeact.remote.fleet import wire_inputs
from edgeact.runtime import open_runner
from tests.helpers import only

from .sshd import free_port

pytestmark = [pytest.mark.device, pytest.mark.aarch64, pytest.mark.slow]

DEVICE_DIR = Path(__file__).parent / "device"


@pytest.fixture(scope="module")
def aarch64_device(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the emulated aarch64 device needs root (chroot, mount, binfmt_misc); run the tests as root")
    env = {**os.environ, "EDGEACT_HOST_PYTHON": sys.executable}
    build = subprocess.run(["bash", str(DEVICE_DIR / "build_aarch64_device.sh")], capture_output=True, text=True,
                           env=env, timeout=1800)
    assert build.returncode == 0, f"building the aarch64 device failed:\n{build.stdout[-2000:]}\n{build.stderr[-2000:]}"
    rootfs = Path(subprocess.run(["bash", str(DEVICE_DIR / "build_aarch64_device.sh"), "--print-rootfs"],
                                 capture_output=True, text=True, check=True).stdout.strip())
    port = free_port()
    subprocess.run(["bash", str(DEVICE_DIR / "device.sh"), "start", "--port", str(port)], check=True, env=env,
                   capture_output=True, timeout=120)
    try:
        values = dict(line.split("=", 1) for line in subprocess.run(
            ["bash", str(DEVICE_DIR / "device.sh"), "env"], capture_output=True, text=True, check=True,
            env=env).stdout.split() if "=" in line)
        folder = tmp_path_factory.mktemp("aarch64")
        host_key = (rootfs / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
        (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        config = folder / "ssh_config"
        config.write_text("\n".join([
            "Host *", f"  IdentityFile {values['EDGEACT_DEVICE_KEY'].strip(chr(39))}", "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {folder / 'known_hosts'}", "  StrictHostKeyChecking yes", "  LogLevel ERROR",
        ]) + "\n")
        yield {"device": f"root@127.0.0.1:{port}", "ssh_options": ("-F", str(config))}
    finally:
        subprocess.run(["bash", str(DEVICE_DIR / "device.sh"), "stop"], capture_output=True, timeout=120)


def test_device_check_sees_aarch64(aarch64_device):
    result = CliRunner().invoke(cli, ["device", "check", aarch64_device["device"], "--ssh-option",
                                      " ".join(aarch64_device["ssh_options"]), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)["facts"]
    assert facts["arch"] == "aarch64"
    assert facts["runtimes"]["tflite-runtime"] == "2.14.0" and facts["numpy"].startswith("1.")


def test_int8_outputs_match_the_desktop(aarch64_device, converted_small, pixels_npy):
    """Same model, same quantized inputs: the device's tflite-runtime gives the desktop's INT8 outputs."""
    out, _ = converted_small
    model = out / "small_cnn_int8.tflite"
    x = np.load(pixels_npy)[:24].astype(np.float32) / 255
    options = DeviceOptions(ssh_options=aarch64_device["ssh_options"], timeout=600)
    with DeviceSession(parse_device(aarch64_device["device"]), options) as session:
        profile = session.profile(model, wire_inputs(model, x), LoopSettings(runs=5, warmup=1))
    summary = profile.summary
    assert summary["runtime"] == "tflite-runtime" and summary["runtime_version"] == "2.14.0"
    desktop = only(open_runner(model).predict(x))
    device = only(profile.outputs).reshape(desktop.shape)
    scale = open_runner(model).outputs[0].scale
    assert np.max(np.abs(device - desktop)) <= scale + 1e-7  # at most one quantization step
    assert np.array_equal(device.argmax(1), desktop.argmax(1))


def test_profile_table_from_the_aarch64_device(aarch64_device, converted_small, pixels_npy, small_cnn_file, tmp_path):
    out, _ = converted_small
    data = tmp_path / "eval.npz"
    pixels = np.load(pixels_npy)[:16]
    np.savez(data, x=pixels, y=np.arange(16) % 4)
    result = CliRunner().invoke(cli, [
        "profile", str(out / "small_cnn_int8.tflite"), "--data", str(data), "--reference", str(small_cnn_file),
        "--runs", "10", "--warmup", "2", "--device", aarch64_device["device"],
        "--ssh-option", " ".join(aarch64_device["ssh_options"]), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    row = report["models"][0]
    assert row["device"]["arch"] == "aarch64" and row["runtime"] == "tflite-runtime"
    assert row["reference"]["cosine"] > 0.98
    assert report["devices"][0]["facts_after"]["arch"] == "aarch64"
