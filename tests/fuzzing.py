"""Running fuzzed model files through the CLI in a batch process, and judging what came back.

Shared by the fuzz tests (test_fuzz, test_metadata_fuzz): `run_batch` runs `tests.fuzz_batch` on
the files in a child with bounded memory, `check_records` asserts no traceback, no signal, and
exit 0 or a one-line error with exit 2 for every file and command.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEMORY_LIMIT = 4 * 2**30  # address space of the batch and its children: a runaway allocation fails loudly


def _bounded_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_batch(paths: list[Path], cwd: Path, options: tuple[str, ...] = ()) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-m", "tests.fuzz_batch", *options, *map(str, paths)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=1800, preexec_fn=_bounded_memory)
    lines = done.stdout.splitlines()
    last = next((json.loads(line) for line in reversed(lines) if line.startswith('{"start"')), None)
    assert done.returncode >= 0, (f"signal {signal.Signals(-done.returncode).name} on {last}; "
                                  f"stderr: {done.stderr[-1000:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    stray = [line for line in lines if not line.startswith("{")]
    assert not stray, f"output outside the CLI's streams: {stray[:5]}"
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return [json.loads(line) for line in lines if not line.startswith('{"start"')]


def check_records(records: list[dict]) -> dict[int, int]:
    codes: dict[int, int] = {}
    for r in records:
        where = f"{r['command']} {Path(r['file']).name}: {r['stdout'][-300:]!r} {r['stderr'][-300:]!r}"
        assert r["exception"] is None, f"traceback from {where}: {r['exception']}"
        assert r["exit_code"] in (0, 2), where
        assert "Traceback" not in r["stdout"] + r["stderr"], where
        codes[r["exit_code"]] = codes.get(r["exit_code"], 0) + 1
        if r["exit_code"] == 2:
            assert r["stderr"].count("\n") == 1 and r["stderr"].startswith("error: "), where
        else:
            assert r["stderr"] == "", where
        if r["json"] and r["stdout"]:
            json.loads(r["stdout"])
        if r["command"] == "profile" and r["exit_code"] == 0:
            assert json.loads(r["stdout"])["models"], where
    return codes
