"""Run `edgeact inspect FILE` and `edgeact profile FILE --json` on many files in one process.

`python -m tests.fuzz_batch [--inspect-only] FILE...` goes through exactly the CLI's code path (click's
CliRunner calls the same `cli` group, whose `invoke` translates errors) and prints one JSON
line per command: file, command, exit code, stdout, stderr, and the exception if one
escaped the CLI. Before each command it prints a `start` line, so a native crash of the
whole process shows which file caused it. Anything a runtime writes to the real file
descriptors lands between those lines, where the test sees it.
"""
from __future__ import annotations

import json
import sys

from click.testing import CliRunner

from edgeact.cli import cli

COMMANDS = (("inspect",), ("profile", "--json", "--runs", "1", "--warmup", "0", "--no-progress"))


def main(paths: list[str]) -> int:
    commands = COMMANDS
    if paths[:1] == ["--inspect-only"]:  # the metadata fuzz: the reader under test is inspect's
        commands, paths = COMMANDS[:1], paths[1:]
    runner = CliRunner()
    for k, path in enumerate(paths):
        for command in commands:
            if command == ("inspect",) and k % 2:
                command = ("inspect", "--json")  # half the files: the JSON rendering too
            args = [command[0], *command[1:], "--", path]
            print(json.dumps({"start": path, "command": command[0]}), flush=True)
            result = runner.invoke(cli, args)
            escaped = result.exception if not isinstance(result.exception, SystemExit) else None
            print(json.dumps({"file": path, "command": command[0], "json": "--json" in command,
                              "exit_code": result.exit_code,
                              "stdout": result.stdout, "stderr": result.stderr,
                              "exception": None if escaped is None else repr(escaped)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
