"""The typed profile row: round trip, and a malformed summary from another process refused by key."""
from __future__ import annotations

import json

import pytest

from edgeact.errors import InputError
from edgeact.profile.row import ProfileRow


def _row(converted_small):
    from edgeact.profile.session import ProfileOptions, profile_models

    out, _ = converted_small
    report = profile_models([out / "small_cnn_int8.tflite"], ProfileOptions(runs=3, warmup=1, isolate=True))
    assert report.schema_version == 1
    (row,) = report.models
    return row.to_dict()


def test_round_trip_through_json(converted_small):
    row = _row(converted_small)
    again = ProfileRow.from_dict(json.loads(json.dumps(row)))
    assert again.to_dict() == row
    assert again.latency_ms.p50 == row["latency_ms"]["p50"] and again.runtime == "litert"


@pytest.mark.parametrize("key, value, message", [
    ("latency_ms", {"p50": "fast"}, "'latency_ms.p50' is not a time"),
    ("init_ms", float("nan"), "'init_ms' is nan"),
    ("size_bytes", "5 KiB", "'size_bytes' is str"),
    ("threads", True, "'threads' is bool"),
])
def test_a_malformed_summary_is_refused_naming_the_key(converted_small, key, value, message):
    row = {**_row(converted_small), key: value}
    with pytest.raises(InputError, match=message):
        ProfileRow.from_dict(row, "device pi's summary")


def test_a_missing_measurement_is_refused(converted_small):
    row = _row(converted_small)
    del row["latency_ms"]
    with pytest.raises(InputError, match="has no 'latency_ms'"):
        ProfileRow.from_dict(row)
