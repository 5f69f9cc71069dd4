"""The exporter registry: one module per format, each registering itself under its `Format`.

A new format is one new module with a class that has `format`, `output_names(name)` and
`export(job, staged) -> FormatReport`, decorated with `@register_exporter`.
"""
from __future__ import annotations

from typing import Protocol

from edgeact.config import Format
from edgeact.fileio import StagedOutputs
from edgeact.report.records import FormatReport

from .job import ConvertJob


class Exporter(Protocol):
    format: Format

    def output_names(self, name: str) -> list[str]: ...

    def export(self, job: ConvertJob, staged: StagedOutputs, report: FormatReport) -> None:
        """Write the format's files into `staged` and fill `report`; ConversionError if it cannot."""


EXPORTERS: dict[Format, Exporter] = {}


def register_exporter(cls):
    """Class decorator: make an exporter available under its `format`."""
    EXPORTERS[cls.format] = cls()
    return cls
