"""`edgetpu_compiler` on PATH: compile, parse the log, compare with the pre-flight.

The compiler (google-coral, frozen at version 16, x86-64 Linux only) writes
`<input stem>_edgetpu.tflite` and `<input stem>_edgetpu.log` into `-o DIR`, and with `-s`
prints the operation table on stdout. Its output, as it appears in public logs
(google-coral/edgetpu#393, #512, #714)::

    Edge TPU Compiler version 16.0.384591198
    Started a compilation timeout timer of 180 seconds.

    Model compiled successfully in 354 ms.

    Input model: m.tflite
    ...
    On-chip memory used for caching model parameters: 932.50KiB
    On-chip memory remaining for caching model parameters: 6.71MiB
    Off-chip memory used for streaming uncached model parameters: 0.00B
    Number of Edge TPU subgraphs: 1
    Total number of operations: 32
    ...
    Number of operations that will run on Edge TPU: 117
    Number of operations that will run on CPU: 48

    Operator                       Count      Status

    RESHAPE                        10         Operation is working on an unsupported data type
    CONV_2D                        11         Mapped to Edge TPU

and on failure "Compilation failed!" after an "ERROR: ..." line (#829).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

COMPILER = "edgetpu_compiler"
MAPPED = "Mapped to Edge TPU"
TIMEOUT_S = 600  # the compiler's own timer is 180 s by default; this only guards a hung process

_SIZE = re.compile(r"([\d.]+)\s*(B|KiB|MiB|GiB)")
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3}
_ROW = re.compile(r"^([A-Z][A-Z0-9_]*(?::[\w-]+)?)\s+(\d+)\s+(\S.*?)\s*$")
_FIELDS = {
    "version": re.compile(r"Edge TPU Compiler version (\S+)"),
    "on_chip_used": re.compile(r"On-chip memory used for caching model parameters: (\S+)"),
    "on_chip_remaining": re.compile(r"On-chip memory remaining for caching model parameters: (\S+)"),
    "streamed": re.compile(r"Off-chip memory used for streaming uncached model parameters: (\S+)"),
    "subgraphs": re.compile(r"Number of Edge TPU subgraphs: (\d+)"),
    "total_ops": re.compile(r"Total number of operations: (\d+)"),
    "tpu_ops": re.compile(r"Number of operations that will run on Edge TPU: (\d+)"),
    "cpu_ops": re.compile(r"Number of operations that will run on CPU: (\d+)"),
}


def _bytes(text: str) -> int | None:
    found = _SIZE.fullmatch(text.strip())
    return int(float(found.group(1)) * _UNITS[found.group(2)]) if found else None


def parse_log(text: str) -> dict:
    """What a compiler run says: version, success, memory, op counts and the Operator/Count/Status rows."""
    found: dict = {"compiled": "Model compiled successfully" in text and "Compilation failed" not in text}
    for key, pattern in _FIELDS.items():
        match = pattern.search(text)
        if match:
            value = match.group(1)
            found[key] = _bytes(value) if key in ("on_chip_used", "on_chip_remaining", "streamed") else \
                value if key == "version" else int(value)
    errors = [line.strip() for line in text.splitlines() if line.strip().startswith("ERROR")]
    if errors:
        found["error"] = errors[0]
    rows, in_table = [], False
    for line in text.splitlines():
        if re.match(r"^Operator\s+Count\s+Status", line):
            in_table = True
            continue
        match = _ROW.match(line) if in_table else None
        if match:
            rows.append({"op": match.group(1), "count": int(match.group(2)), "status": match.group(3)})
    found["operations"] = rows
    if rows and "tpu_ops" not in found:
        found["tpu_ops"] = sum(r["count"] for r in rows if r["status"] == MAPPED)
        found["cpu_ops"] = sum(r["count"] for r in rows if r["status"] != MAPPED)
    return found


def compare(prediction: dict, compiled: dict) -> list[str]:
    """Where the compiler's table and the pre-flight disagree, per op type: mapped counts."""
    predicted: dict[str, int] = {}
    for op in prediction["ops"]:
        predicted.setdefault(op["type"], 0)
        predicted[op["type"]] += bool(op["mapped"])
    actual: dict[str, int] = {}
    for row in compiled.get("operations") or []:
        actual.setdefault(row["op"], 0)
        actual[row["op"]] += row["count"] if row["status"] == MAPPED else 0
    if not compiled.get("operations"):
        return []
    found = []
    for op in sorted(set(predicted) | set(actual)):
        if predicted.get(op, 0) != actual.get(op, 0):
            statuses = sorted({r["status"] for r in compiled["operations"] if r["op"] == op and r["status"] != MAPPED})
            found.append(f"{op}: predicted {predicted.get(op, 0)} mapped, the compiler mapped {actual.get(op, 0)}"
                         + (f" ({'; '.join(statuses)})" if statuses else ""))
    return found


def run_compiler(model: Path, name: str, compiler: str | None = None) -> tuple[bytes | None, str, dict]:
    """Compile `model` as `<name>.tflite` in a temporary folder; (compiled bytes or None, log text, parsed)."""
    compiler = compiler or shutil.which(COMPILER)
    with tempfile.TemporaryDirectory(prefix="edgeact-edgetpu-") as tmp:
        source = Path(tmp) / f"{name}.tflite"
        shutil.copyfile(model, source)
        out = Path(tmp) / "out"
        out.mkdir()
        try:
            done = subprocess.run([compiler, "-s", "-o", str(out), str(source)], capture_output=True, text=True,
                                  timeout=TIMEOUT_S, cwd=tmp)
            text = done.stdout + done.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, "", {"compiled": False, "error": f"{COMPILER} did not run: {exc}"}
        log_file = out / f"{name}_edgetpu.log"
        if log_file.is_file() and "Operator" not in text:
            text += "\n" + log_file.read_text(errors="replace")
        parsed = parse_log(text)
        compiled = out / f"{name}_edgetpu.tflite"
        if done.returncode != 0 or not compiled.is_file():
            parsed["compiled"] = False
            parsed.setdefault("error", f"{COMPILER} exited with {done.returncode}")
            return None, text, parsed
        return compiled.read_bytes(), text, parsed


def not_installed_advice(int8_path: str) -> str:
    return (f"{COMPILER} is not on PATH: on an x86-64 Linux host (Debian/Ubuntu: apt-get install edgetpu-compiler "
            f"from packages.cloud.google.com/apt coral-edgetpu-stable) run `{COMPILER} -s {int8_path}`, then profile "
            "the *_edgetpu.tflite it writes on the Coral (edgeact profile --target coral-usb)")


__all__ = ["COMPILER", "compare", "not_installed_advice", "parse_log", "run_compiler"]
