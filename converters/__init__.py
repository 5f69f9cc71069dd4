"""Host-side conversion: one entry point, `convert()`, dispatching to registered exporters by format.

    convert("model.keras", "photos/", "out/", ConvertOptions(formats=(Format.TFLITE, Format.ONNX)))

The parts, one module each: `options` (what convert can be told), `registry` (exporters by
format), `job` (what exporters get), `signature` (inputs and outputs by name), `pipeline`
(the order of work), `checks` (the registered verdicts), `verify` (per-output parity).
"""
from __future__ import annotations

from .options import ConvertOptions
from .pipeline import convert, report_path
from .registry import EXPORTERS, register_exporter

__all__ = ["ConvertOptions", "EXPORTERS", "convert", "register_exporter", "report_path"]
