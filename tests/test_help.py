"""Help that matches the product: every example a `--help` shows runs as written, `edgeact` alone
prints the help, and a `profile --json` run keeps runtime logs off the terminal."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgeact.cli import cli

from .conftest import ROOT
from .helpers import README_DEVICE, export_float_onnx

RUNTIME_LOG = re.compile(r"INFO:|WARNING:|XNNPACK|TfLite|onnxruntime|tensorflow|oneDNN|absl|^[IWE]\d{4} |cuda",
                         re.IGNORECASE | re.MULTILINE)


def command_paths(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand, convert first (it writes what the others read)."""
    paths = []
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, (*prefix, name)))
    return sorted(paths, key=lambda p: p != ("convert",))


def help_examples() -> list[tuple[tuple[str, ...], str]]:
    """`edgeact ...` lines in every command's --help, backslash continuations joined."""
    found = []
    for path in command_paths():
        text = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200).output
        pending = ""
        for line in text.splitlines():
            line = pending + line.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            match = re.match(r"^(?:Example:\s*)?(edgeact [a-z].*)$", line)
            if match:
                found.append((path, match.group(1)))
    return found


# The page of the docs that documents each command's options.
OPTION_PAGES = {"convert": "docs/convert.md", "profile": "docs/profile.md", "layers": "docs/layer-error.md",
                "inspect": "docs/inspect.md"}


@pytest.mark.parametrize("command", sorted(OPTION_PAGES))
def test_every_option_of_a_command_is_documented_on_its_page(command):
    """Each option the command really takes (read from its click parameters, not from --help)
    appears on its docs page as `--name`, so an option added without its documentation fails."""
    params = cli.get_command(click.Context(cli), command).params
    options = {name for p in params if isinstance(p, click.Option) for name in p.opts if name.startswith("--")}
    options.discard("--help")
    page = (ROOT / OPTION_PAGES[command]).read_text()
    documented = set(re.findall(r"`(--[a-z0-9-]+)", page))
    assert sorted(options - documented) == [], f"{OPTION_PAGES[command]} does not document these {command} options"


def test_edgeact_alone_prints_the_help_and_exits_0():
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ") and "profile" in result.output and "convert" in result.output
    device = CliRunner().invoke(cli, ["device"])
    assert device.exit_code == 0 and device.output.startswith("Usage: ")
    assert " device " in device.output.splitlines()[0] and "check" in device.output


def test_the_help_shows_examples_for_the_main_commands():
    shown = {path: command for path, command in help_examples()}
    assert set(shown) >= {("convert",), ("profile",), ("device", "check")}
    for path, command in shown.items():
        assert command.startswith("edgeact " + " ".join(path) + " "), command


@pytest.mark.slow
@pytest.mark.device
def test_every_help_example_runs_as_written(tmp_path, monkeypatch):
    """Converts the bundled MNIST CNN, profiles it, checks a device (a local sshd stands in for the Pi)."""
    from .sshd import make_server

    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    server = make_server(tmp_path / "sshd").start()
    try:
        device_args = ["--ssh-option", f"-F {server.client_config}", "--device-python", sys.executable,
                       "--device-cache", str(tmp_path / "device-cache")]
        ran = []
        for _, command in help_examples():
            argv = shlex.split(command)[1:]
            if README_DEVICE in argv:
                argv = [server.device if a == README_DEVICE else a for a in argv] + device_args
            result = CliRunner().invoke(cli, argv)
            assert result.exit_code == 0, f"{command}\n{result.output}"
            ran.append(command)
    finally:
        server.stop()
    assert len(ran) >= 3
    assert (tmp_path / "out" / "mnist_cnn_int8.tflite").exists()  # what the convert example says it writes


def test_profile_json_keeps_runtime_logs_off_stderr(converted_small, small_cnn, small_cnn_file, pixels_npy, tmp_path):
    """A real process (native logs go to file descriptor 2): a TFLite model, an ONNX model and a Keras
    reference, so LiteRT/XNNPACK, ONNX Runtime and TensorFlow all load. stdout is JSON, stderr is empty."""
    import numpy as np

    out, _ = converted_small
    onnx_path = tmp_path / "small_cnn_fp32.onnx"
    export_float_onnx(small_cnn, onnx_path)
    np.savez(tmp_path / "data.npz", x=np.load(pixels_npy)[:16], y=np.arange(16) % 4)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}  # no TF_CPP_MIN_LOG_LEVEL
    done = subprocess.run([sys.executable, "-m", "edgeact", "profile", str(out / "small_cnn_int8.tflite"),
                           str(onnx_path), "--data", str(tmp_path / "data.npz"), "--reference", str(small_cnn_file),
                           "--preprocess", "unit", "--runs", "5", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not RUNTIME_LOG.search(done.stderr), done.stderr
    assert done.stderr.strip() == "", done.stderr
    report = json.loads(done.stdout)
    assert [Path(r["model"]).name for r in report["models"]] == ["small_cnn_int8.tflite", "small_cnn_fp32.onnx"]


def test_verbose_shows_what_the_runtime_prints(converted_small):
    out, _ = converted_small
    command = [sys.executable, "-m", "edgeact", "profile", str(out / "small_cnn_int8.tflite"), "--runs", "3", "--json"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    quiet = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    verbose = subprocess.run([*command, "--verbose"], capture_output=True, text=True, env=env, timeout=120)
    assert quiet.returncode == verbose.returncode == 0
    assert quiet.stderr == "" and "XNNPACK" in verbose.stderr  # LiteRT announces its delegate
    json.loads(verbose.stdout)  # and stdout stays clean JSON


def test_columns_typo_is_one_line_before_anything_runs(tmp_path):
    result = CliRunner().invoke(cli, ["profile", str(tmp_path / "missing.tflite"), "--columns", "model,latency"])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown column 'latency'" in lines[0] and "p50" in lines[0]


@pytest.mark.parametrize("columns", ["80", "100", "160"])
def test_cli_table_fits_the_terminal_width(converted_small, pixels_npy, tmp_path, monkeypatch, columns):
    """$COLUMNS is what shutil.get_terminal_size reads first, as a terminal would report it."""
    import numpy as np

    out, _ = converted_small
    np.savez(tmp_path / "data.npz", x=np.load(pixels_npy)[:16], y=np.arange(16) % 4)
    monkeypatch.setenv("COLUMNS", columns)
    shutil.copy(out / "small_cnn_int8.tflite", tmp_path / "a_copy_with_a_longer_name_int8.tflite")
    models = [str(out / "small_cnn_int8.tflite"), str(out / "small_cnn_fp32.tflite"),
              str(tmp_path / "a_copy_with_a_longer_name_int8.tflite")]
    for count in (2, 3):  # two models: one row per metric; three: one row per model
        result = CliRunner().invoke(cli, ["profile", *models[:count], "--data", str(tmp_path / "data.npz"),
                                          "--preprocess", "unit", "--runs", "3", "--no-progress"])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert max(len(line) for line in lines) <= int(columns), result.stdout
        assert any(line.startswith("p50 ms") for line in lines) == (count == 2)
        assert any(line.startswith("Fastest: ") for line in lines)
