"""Read a JSON object into a dataclass, every field checked: the one reader of profile records.

A profile row comes from a child process or a device, a profile report from a file someone
kept: input like any other. `read_record(cls, data, where, spec)` refuses, in one line naming
the key (`models[0].latency_ms.p50`), a field that is missing, of the wrong type or not finite,
and builds nested records through their own `from_dict`. Device-side: the standard library only.

A spec maps a field name to what it may hold: a type (`str`, `int`, `float`, `bool`, `dict`,
`list`), a record class (anything with `from_dict(data, where, path)`), `ListOf(x)`, `DictOf(x)`,
`None` (JSON null), or a tuple of these alternatives. Fields without a spec are taken as they are.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any

from edgeact.errors import InputError


class ProfileDataError(InputError):
    """A profile row or report is not one this edgeact can read; the message names the key."""


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class DictOf:
    item: Any


# JSON has no inf/nan: edgeact writes them as strings (fileio.json_safe); read back as floats.
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
FINITE = "finite"  # a float that must be finite (times, sizes)
JSON_FLOAT = "json_float"  # a float that may be inf/nan, written as a string (SQNR of identical outputs)


def _name(alt: Any) -> str:
    if alt is None:
        return "null"
    if alt in (FINITE, JSON_FLOAT):
        return "number"
    if isinstance(alt, ListOf):
        return "list"
    if isinstance(alt, DictOf) or hasattr(alt, "from_dict"):
        return "object"
    return {int: "int", float: "number", str: "str", bool: "bool", dict: "object", list: "list"}.get(alt, str(alt))


def _matches(value: Any, alt: Any) -> bool:
    if alt is None:
        return value is None
    if alt in (float, FINITE):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if alt == JSON_FLOAT:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) \
            or (isinstance(value, str) and value in _NONFINITE)
    if alt is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(alt, ListOf):
        return isinstance(value, list)
    if isinstance(alt, DictOf) or hasattr(alt, "from_dict"):
        return isinstance(value, dict) or (hasattr(alt, "from_dict") and isinstance(value, alt))
    return isinstance(value, alt)


def read_value(value: Any, spec: Any, where: str, path: str) -> Any:
    """`value` checked against `spec` (and converted: records built, "inf" strings to floats)."""
    alternatives = spec if isinstance(spec, tuple) else (spec,)
    for alt in alternatives:
        if not _matches(value, alt):
            continue
        if alt == FINITE and not math.isfinite(value):
            raise ProfileDataError(f"{where}: '{path}' is {value}, not a finite time")
        if alt == JSON_FLOAT:
            return _NONFINITE[value] if isinstance(value, str) else float(value)
        if alt is float:
            return float(value)
        if isinstance(alt, ListOf):
            return [read_value(v, alt.item, where, f"{path}[{k}]") for k, v in enumerate(value)]
        if isinstance(alt, DictOf):
            return {str(k): read_value(v, alt.item, where, f"{path}.{k}") for k, v in value.items()}
        if hasattr(alt, "from_dict") and isinstance(value, dict):
            return alt.from_dict(value, where, path)
        return value
    expected = " or ".join(dict.fromkeys(_name(a) for a in alternatives))
    raise ProfileDataError(f"{where}: '{path}' is {type(value).__name__}, not {expected}")


def read_record(cls, data: Any, where: str, spec: dict[str, Any], path: str = "", fix: str = "") -> dict:
    """The keyword arguments for `cls(**...)`: every field of `data` checked against `spec`.

    Optional fields (with a default) may be missing; unknown keys are ignored (a newer writer's
    additions). `fix` ends the message for a missing field: what the user can do.
    """
    where_path = f"'{path}'" if path else "it"
    if not isinstance(data, dict):
        raise ProfileDataError(f"{where}: {where_path} is {type(data).__name__}, not a JSON object")
    out = {}
    for spec_field in fields(cls):
        name = spec_field.name
        key = f"{path}.{name}" if path else name
        if name not in data:
            if spec_field.default is MISSING and spec_field.default_factory is MISSING:
                raise ProfileDataError(f"{where} has no '{key}'" + (f"; {fix}" if fix else ""))
            continue
        out[name] = read_value(data[name], spec[name], where, key) if name in spec else data[name]
    return out
