"""The house's layering, checked: which wings may import which, no import circle, a device side
that needs neither TensorFlow nor ONNX nor the host packages.

`WINGS` is the table `docs/architecture.md` draws. A wing may import itself and the wings it
lists, at module level and inside functions alike, so nothing runs back up; the few lazy
imports of the host side from edgeact are listed, each with its reason.
"""
from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edgeact", "converters", "calibration")

CORE = "edgeact (core)"
# wing -> the wings it may import (besides itself). A module belongs to the longest wing prefix
# that names it; edgeact's top-level modules are its core, except the API and entry points.
WINGS: dict[str, set[str]] = {
    CORE: set(),
    "edgeact.formats": {CORE},
    "edgeact.data": {CORE, "edgeact.formats"},
    "edgeact.runtime": {CORE, "edgeact.formats", "edgeact.data"},
    "edgeact.measure": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime"},
    "edgeact.fastpath": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.measure"},
    "edgeact.report": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.measure",
                       "edgeact.fastpath"},
    "edgeact.remote": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.measure"},
    "edgeact.profile": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.measure",
                        "edgeact.fastpath", "edgeact.report", "edgeact.remote"},
    "edgeact.frame_api": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.report"},
    "edgeact.cli": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.measure",
                    "edgeact.fastpath", "edgeact.report", "edgeact.remote", "edgeact.profile",
                    "edgeact.frame_api", "calibration", "converters.keras", "converters (base)",
                    "converters.layer_error", "converters.budget", "converters (top)"},
    "edgeact.__main__": {"edgeact.cli"},
    # host side
    "calibration": {CORE, "edgeact.formats", "edgeact.data"},
    "converters.keras": {CORE, "edgeact.formats", "edgeact.data", "edgeact.report", "calibration"},
    "converters (base)": {CORE, "edgeact.formats", "edgeact.data", "edgeact.report", "calibration",
                          "converters.keras"},
    "converters.passes": {CORE, "converters.keras"},
    "converters.layer_error": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.report",
                               "calibration", "converters.keras", "converters (base)"},
    "converters.tflite": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.fastpath",
                          "edgeact.report", "calibration", "converters.keras", "converters (base)",
                          "converters.layer_error", "converters.rounding"},
    "converters.onnx": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.fastpath",
                        "edgeact.report", "calibration", "converters.keras", "converters (base)",
                        "converters.layer_error", "converters.rounding"},
    "converters.rounding": {CORE, "edgeact.formats", "edgeact.data", "converters.keras", "converters (base)",
                            "converters.layer_error"},
    # host: edgetpu_compiler's run and log beside the device-side pre-flight (edgeact.fastpath.edgetpu)
    "converters.edgetpu": {CORE, "edgeact.formats", "edgeact.fastpath", "edgeact.report"},
    "converters.budget": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.fastpath",
                          "edgeact.report", "calibration", "converters.keras", "converters (base)",
                          "converters.layer_error", "converters.passes", "converters.tflite", "converters.onnx"},
    "converters (top)": {CORE, "edgeact.formats", "edgeact.data", "edgeact.runtime", "edgeact.fastpath",
                         "edgeact.report", "calibration", "converters.keras", "converters (base)",
                         "converters.layer_error", "converters.passes", "converters.tflite", "converters.onnx",
                         "converters.budget", "converters.edgetpu", "converters.rounding"},
}
CONVERTERS_BASE = {"converters.options", "converters.job", "converters.progress", "converters.verify",
                   "converters.metadata", "converters.registry", "converters.check_registry", "converters.pool_windows"}
CONVERTERS_TOP = {"converters", "converters.checks", "converters.pipeline"}

# Lazy imports that cross the table on purpose: (importing module, imported wing) -> why.
LAZY_EXCEPTIONS = {
    ("edgeact", "edgeact.frame_api"): "edgeact.load() is the package's front door; imported on first use",
    ("edgeact.profile.reference", "converters.keras"): "a Keras reference model needs the host side to load",
}
HOST_ONLY = {"tensorflow", "tf2onnx", "keras", "onnx", "onnxruntime", "converters", "calibration"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for top in PACKAGES for p in (ROOT / top).rglob("*.py")}


def wing_of(module: str) -> str:
    if module in CONVERTERS_BASE:
        return "converters (base)"
    if module in CONVERTERS_TOP:
        return "converters (top)"
    if module in ("edgeact.frame_api", "edgeact.__main__"):
        return module
    named = [w for w in WINGS if module == w or module.startswith(w + ".")]
    if named:
        return max(named, key=len)
    if module.startswith("edgeact"):
        return CORE
    raise AssertionError(f"{module} is in no wing of tests/test_layering.py's table")


def imports_of(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import, relative ones resolved."""
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    for node in tree.body:  # imports under a module-level try/if run at import time too
        if isinstance(node, (ast.Try, ast.If)):
            top_level |= {id(n) for n in ast.walk(node)}
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names = [f"{target}.{a.name}" for a in node.names]
            found += [(n if n in MODULES else target, node.lineno, id(node) in top_level) for n in names]
    return found


MODULES = modules()


def test_every_module_is_in_a_wing_and_no_folder_is_a_hall():
    for module in MODULES:
        wing_of(module)
    for folder in {p.parent for p in MODULES.values()}:
        count = len([p for p in folder.glob("*.py") if p.name != "__init__.py"])
        assert count <= 20, f"{folder.relative_to(ROOT)} holds {count} modules side by side; make a wing"


def test_each_wing_imports_only_the_wings_below_it():
    wrong = []
    for module, path in MODULES.items():
        own = wing_of(module)
        for target, line, _ in imports_of(path, module):
            if target.split(".")[0] not in PACKAGES:
                continue
            theirs = wing_of(target)
            if theirs == own or theirs in WINGS[own]:
                continue
            if (module, theirs) in LAZY_EXCEPTIONS:
                continue
            wrong.append(f"{path.relative_to(ROOT)}:{line} ({own}) imports {target} ({theirs})")
    assert not wrong, "imports against the layering table:\n" + "\n".join(wrong)


def test_no_import_circle_at_module_level():
    graph = {m: {t for t, _, top in imports_of(p, m) if top and t in MODULES and t != m} for m, p in MODULES.items()}
    index, low, stack, on_stack, circles, counter = {}, {}, [], set(), [], [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            # A package and the modules its __init__ re-exports are one unit, not a circle.
            if len(component) > 1 and not all(c.startswith(min(component, key=len)) for c in component):
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not circles, f"import circles at module level: {circles}"


def test_the_device_side_imports_no_host_package_at_module_level():
    """`import edgeact` and `edgeact profile` on a Pi: numpy and a runtime, nothing else."""
    wrong = []
    for module, path in MODULES.items():
        if not module.startswith("edgeact"):
            continue
        for target, line, top in imports_of(path, module):
            if top and target.split(".")[0] in HOST_ONLY:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} at module level")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("wing", sorted({m for m in MODULES if MODULES[m].name == "__init__.py"} - set(PACKAGES)))
def test_each_wing_says_what_it_is_for_and_what_it_may_import(wing):
    doc = ast.get_docstring(ast.parse(MODULES[wing].read_text())) or ""
    assert len(doc.split()) >= 12, f"{wing}/__init__.py: say in its docstring what the wing is for"
    assert "May import" in doc, f"{wing}/__init__.py: say which wings it may import ('May import: ...')"


def test_the_repository_tracks_no_tool_leftovers():
    """ORT's shape inference once left 114 MB in the repository root; nothing like it may be tracked."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")  # an sdist: nothing is tracked
    leftovers = [f for f in tracked.stdout.split() if f.endswith((".data", ".onnx", ".tflite")) and "/" not in f
                 or Path(f).name == "sym_shape_infer_temp.onnx"]
    assert not leftovers, f"tool output tracked in the repository: {leftovers}"


def test_no_test_module_imports_another():
    """Shared test code lives in helper modules (tests/helpers.py, fuzzing.py, onnx_models.py, ...),
    so changing or deselecting one test module cannot break another's collection."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                if module.lstrip(".").removeprefix("tests.").startswith("test_"):
                    offenders.append(f"{path.name}: from {module} import ...")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}: import {a.name}" for a in node.names
                              if a.name.removeprefix("tests.").startswith("test_")]
    assert offenders == []
