"""The pass registry: `register_pass` and `PassResult`, apart from the passes and the pipeline.

Each pass module imports only this module (and the Keras graph it edits); the pipeline
(`converters.passes.pipeline`) imports the passes. So no pass imports back into the package
that runs it, as coremltools keeps `pass_registry.py` apart from its passes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from converters.keras.graph import KerasGraph

PassFn = Callable[[KerasGraph], "PassResult"]
PASSES: dict[str, PassFn] = {}


@dataclass
class PassResult:
    """What one pass did: `changed` and `skipped` entries name layers; skipped ones say why."""

    name: str
    changed: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    max_abs_diff: float | None = None  # vs the model before the pass, on calibration samples

    def to_dict(self) -> dict:
        return asdict(self)


def register_pass(name: str) -> Callable[[PassFn], PassFn]:
    """Decorator: make a pass available to pipelines under `name`."""

    def decorate(fn: PassFn) -> PassFn:
        PASSES[name] = fn
        return fn

    return decorate
