"""convert's Edge TPU step (`--target coral-usb|coral-devboard`): the pre-flight of the INT8 TFLite,
and where `edgetpu_compiler` is on PATH, the compiled model, its log and where the two disagree."""
from __future__ import annotations

import shutil
from pathlib import Path

from edgeact.fastpath.edgetpu import preflight
from edgeact.report.records import ConvertReport

from .compiler import COMPILER, compare, not_installed_advice, run_compiler


def edgetpu_outputs(output_dir: Path, name: str) -> list[Path]:
    """The files the compile step may write (checked for overwriting with the others, up front)."""
    return [output_dir / f"{name}_int8_edgetpu.tflite", output_dir / f"{name}_int8_edgetpu.log"]


def edgetpu_step(name: str, output_dir: Path, report: ConvertReport, staged, compiler: str | None = None) -> None:
    """Add `formats.tflite.details.edgetpu`: {"preflight", "compiler", "disagreements"}; a note per disagreement."""
    section = report.formats.get("tflite")
    if section is None or section.error or "int8" not in section.files:
        return
    final = Path(section.files["int8"])
    int8 = staged.staged_file(final) or final
    predicted = preflight(int8).to_dict()
    predicted["model"] = str(final)
    found: dict = {"preflight": predicted, "disagreements": []}
    compiler = compiler or shutil.which(COMPILER)
    if compiler is None:
        found["compiler"] = {"available": False, "advice": not_installed_advice(str(final))}
    else:
        data, text, parsed = run_compiler(int8, final.stem, compiler)
        found["compiler"] = {"available": True, "path": compiler, **parsed}
        model_path, log_path = edgetpu_outputs(output_dir, name)
        if text:
            staged.write_bytes(log_path, text.encode())
            section.files["edgetpu_log"] = str(log_path)
        if data is not None:
            staged.write_bytes(model_path, data)
            section.files["edgetpu"] = str(model_path)
            section.size_bytes["edgetpu"] = len(data)
        found["disagreements"] = compare(predicted, parsed)
        for line in found["disagreements"]:
            report.notes.append(f"Edge TPU pre-flight and {COMPILER} disagree: {line}")
    section.details["edgetpu"] = found


__all__ = ["edgetpu_outputs", "edgetpu_step"]
