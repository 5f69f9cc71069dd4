"""The `edgeact` command line: one module per command, options shared by several in `options`.

Commands parse options, call one library function and render its result. `app` holds the
group, where every EdgeactError becomes a one-line `error: ...` and its exit code, once.

May import: every wing of edgeact; `converters` and `calibration` lazily, inside the commands
that convert (`convert`, `layers`), so `edgeact profile` runs on a device without them.
"""
from .app import cli, main

__all__ = ["cli", "main"]
