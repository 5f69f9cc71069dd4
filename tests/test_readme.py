"""Every command the README and the docs/ pages show really runs, as written (device names pointed
at a local sshd), and every page is reachable from the README."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli

from .conftest import ROOT
from .helpers import README_DEVICE
from .sshd import make_server

LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def linked_pages(page: Path) -> list[Path]:
    """The .md files `page` links to, in order of first mention, resolved."""
    seen: dict[Path, None] = {}
    for target in LINK.findall(page.read_text()):
        if "://" not in target:
            seen.setdefault((page.parent / target).resolve(), None)
    return list(seen)


def documentation_pages() -> list[Path]:
    """The README, then every page reachable from it through links, breadth first: the order in which
    the commands run (the README's convert writes what the pages' commands read)."""
    order, queue = [], [(ROOT / "README.md").resolve()]
    while queue:
        page = queue.pop(0)
        if page in order or not page.is_relative_to(ROOT):
            continue
        order.append(page)
        queue += [p for p in linked_pages(page) if p.exists()]
    return order


def page_commands(page: Path) -> list[str]:
    """`edgeact ...` and `python -m edgeact...` lines of a page's code blocks, continuations joined."""
    commands, in_block, pending = [], False, ""
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        text = re.sub(r"\s+#.*$", "", text)
        if re.match(r"^(edgeact [a-z]+ |python -m edgeact)", text) and not re.match(r"^edgeact [a-z]+:", text):
            commands.append(text)
    return commands


def readme_commands() -> list[str]:
    """Every page's commands in page order, each distinct command once."""
    return list(dict.fromkeys(c for page in documentation_pages() for c in page_commands(page)))


def test_every_page_is_reachable_and_every_link_resolves():
    pages = documentation_pages()
    on_disk = {p.resolve() for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk - set(pages) == set(), "pages no link from the README reaches"
    broken = [(page.name, target) for page in pages for target in LINK.findall(page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert broken == []
    assert len(pages) >= 10  # the README, the topic pages, the benchmark pages


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, len(lines)
    for needed in ("make demo", "make test", "edgeact convert", "edgeact profile", "edgeact inspect",
                   "edgeact layers", "--device"):
        assert any(needed in line for line in lines), needed


def test_the_readme_shows_the_main_commands():
    shown = " | ".join(readme_commands())
    for needed in ("edgeact convert", "edgeact profile", "edgeact inspect", "edgeact device check", "--device"):
        assert needed in shown


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    (folder / "examples").symlink_to(ROOT / "examples")
    return folder


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    server = make_server(tmp_path_factory.mktemp("readme-sshd")).start()
    yield server
    server.stop()


def test_every_readme_command_runs(workdir, device, monkeypatch):
    monkeypatch.chdir(workdir)
    device_args = ["--ssh-option", f"-F {device.client_config}", "--device-python", sys.executable,
                   "--device-cache", str(workdir / "device-cache")]
    ran = []
    for command in readme_commands():  # in README order: convert writes what the others read
        argv = shlex.split(command)
        if argv[:2] == ["python", "-m"]:
            _run_profiler_module(argv, workdir)
        else:
            if README_DEVICE in argv:
                argv = [device.device if a == README_DEVICE else a for a in argv] + device_args
            result = CliRunner().invoke(cli, argv[1:])
            assert result.exit_code == 0, f"{command}\n{result.output}"
        ran.append(command)
    assert len(ran) >= 7


def _run_profiler_module(argv: list[str], workdir: Path) -> None:
    """`python -m edgeact.measure.profiler MODEL inputs.npz ...` with the files it names in the working folder."""
    model = workdir / argv[3]
    model.write_bytes((workdir / "out" / model.name).read_bytes())
    np.savez(workdir / argv[4], x=np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32))
    done = subprocess.run([sys.executable, *argv[1:]], cwd=workdir, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert (workdir / "result.json").exists() and (workdir / "result.npz").exists()
