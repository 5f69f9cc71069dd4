"""Small helpers shared by tests."""
from __future__ import annotations


def only(outputs: dict):
    """The one value of a single-output model's outputs (keyed by output name)."""
    (value,) = outputs.values()
    return value
