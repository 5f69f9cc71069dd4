"""The house rules the code review asked for, checked: no import cycles between the parts."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_calibration_does_not_import_converters():
    for path in (ROOT / "calibration").glob("*.py"):
        assert not any(name.split(".")[0] == "converters" for name in _imports(path)), path.name


def test_edgeact_does_not_import_tensorflow_or_onnx_at_module_level():
    """Device side: TensorFlow/tf2onnx never at import time (onnx only inside functions)."""
    for path in (ROOT / "edgeact").rglob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
        assert not {n.split(".")[0] for n in names} & {"tensorflow", "tf2onnx", "keras", "converters",
                                                       "calibration"}, path


def test_command_modules_do_not_import_the_cli_group():
    for path in (ROOT / "edgeact").glob("cli_*.py"):
        assert ".cli" not in _imports(path), f"{path.name} imports edgeact.cli (a cycle)"
