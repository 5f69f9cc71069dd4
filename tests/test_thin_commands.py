"""Thin commands: a count out of range is refused by the parser before anything runs, choices come
from the library's enums, and one -v/--verbose works on the group and on every command alike."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from edgeact import quiet
from edgeact.cli import cli
from edgeact.config import LayerErrorMode, choices

COMMANDS = [("convert",), ("inspect",), ("profile",), ("layers",), ("device", "check")]


def test_the_commands_here_are_every_command():
    def paths(group, prefix=()):
        for name, command in group.commands.items():
            yield from paths(command, (*prefix, name)) if isinstance(command, click.Group) else [(*prefix, name)]

    assert sorted(paths(cli)) == sorted(COMMANDS)


@pytest.mark.parametrize("option, value, expected", [
    ("--runs", "0", "--runs 0: give at least 1 timed run"),
    ("--warmup", "-1", "--warmup -1: give 0 or more warm-up runs"),
    ("--threads", "0", "--threads 0: give at least 1 thread"),
    ("--streams", "0", "--streams 0: give at least 1 stream"),
    ("--runs", "many", "--runs 'many': give at least 1 timed run"),
])
def test_counts_out_of_range_are_one_line_before_the_model_is_opened(option, value, expected, tmp_path):
    # The model does not exist: a run that got as far as the library would say so instead.
    result = CliRunner().invoke(cli, ["profile", str(tmp_path / "missing.tflite"), option, value])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"error: {expected}\n"
    from edgeact.cli.profile import profile

    (param,) = [p for p in profile.params if option in p.opts]
    assert isinstance(param.type, click.IntRange)  # --help shows the range: [x>=1]


def test_warmup_zero_is_a_valid_count(converted_small):
    out, _ = converted_small
    result = CliRunner().invoke(cli, ["profile", str(out / "small_cnn_int8.tflite"), "--runs", "2", "--warmup", "0",
                                      "--in-process", "--json"])
    assert result.exit_code == 0, result.output


def test_layer_error_choices_are_the_enum_values_and_the_library_takes_them():
    from converters.options import ConvertOptions
    from edgeact.cli.convert import convert

    (option,) = [p for p in convert.params if p.name == "layer_error"]
    assert list(option.type.choices) == choices(LayerErrorMode) == ["always", "auto", "never"]
    assert ConvertOptions().layer_error is LayerErrorMode.ALWAYS
    assert ConvertOptions(layer_error=LayerErrorMode("never")).layer_error == "never"  # a str Enum: old callers


@pytest.mark.parametrize("path", COMMANDS)
def test_every_command_takes_the_one_verbose_switch(path, tmp_path):
    """`edgeact CMD -v` turns the runtimes' logs on as `edgeact -v CMD` does; the next invocation
    without it turns them off again (one process, as under CliRunner or a notebook)."""
    missing = str(tmp_path / "missing.tflite")
    args = {("profile",): [missing], ("inspect",): [missing], ("layers",): [missing, "--data", missing],
            ("convert",): [missing, "-c", "random"], ("device", "check"): ["bad host name"]}[path]
    for where in ("command", "group"):
        argv = [*path, *args, "-v"] if where == "command" else ["-v", *path, *args]
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code != 0 and "Error: No such option" not in result.output, result.output
        assert quiet.verbose(), (where, result.output)
        CliRunner().invoke(cli, [*path, *args])
        assert not quiet.verbose()
