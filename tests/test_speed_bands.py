"""Speed bands: the measured INT8/float ratio against what the CPU that ran it allows.

The band comes from the CPU's feature flags (the dot product SDOT on ARM, VNNI on x86-64), not
its name; each class is patched in turn, and each pair of rows is built to fall below, inside
and above its band. A device's class travels in its summary (edgeact.remote.fleet).
"""
from __future__ import annotations

import pytest

from edgeact import cpu_features
from edgeact.cpu_features import SPEEDUP_BANDS, CpuClass, cpu_class
from edgeact.fastpath.coverage import Coverage, LeftOp
from edgeact.fastpath.speed_verdict import render_speed, speed_verdicts

CLASSES = {  # machine, flags as /proc/cpuinfo gives them
    CpuClass.ARM: ("aarch64", {"fp", "asimd", "crc32"}),  # Cortex-A72 (Raspberry Pi 4)
    CpuClass.ARM_DOT: ("aarch64", {"fp", "asimd", "asimddp"}),  # Cortex-A76 (Raspberry Pi 5)
    CpuClass.X86: ("x86_64", {"sse4_1", "avx2", "fma"}),
    CpuClass.X86_VNNI: ("x86_64", {"sse4_1", "avx2", "avx512f", "avx512_vnni"}),
}


def _row(path, ms, **extra):
    return {"model": path, "format": "tflite", "runtime": "litert", "delegate": "xnnpack", "threads": 4,
            "latency_ms": {"p50": ms}, **extra}


def _patch(monkeypatch, machine, flags):
    monkeypatch.setattr(cpu_features.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda cpuinfo=None: set(flags))


def _coverage(path, delegate, threads):
    return Coverage("tflite", delegate, 12, 8, 3, [LeftOp(4, "SHAPE", "int32", [4], "shape arithmetic on int32")])


@pytest.mark.parametrize("cls", list(CLASSES))
def test_each_cpu_class_judges_below_inside_and_above_its_band(monkeypatch, cls):
    machine, flags = CLASSES[cls]
    _patch(monkeypatch, machine, flags)
    assert cpu_class() is cls  # read from the flags
    low, high = SPEEDUP_BANDS[cls]
    ratios = {"below": low * 0.8, "inside": (low + high) / 2, "above": high * 1.3}
    rows = []
    for name, ratio in ratios.items():
        rows += [_row(f"{name}_int8.tflite", 10.0 / ratio), _row(f"{name}_fp32.tflite", 10.0)]
    seen = []

    def coverage(path, delegate, threads):
        seen.append(path)
        return _coverage(path, delegate, threads)

    verdicts = {v.int8.split("_")[0]: v for v in speed_verdicts({"models": rows}, coverage=coverage)}
    for name, ratio in ratios.items():
        band = verdicts[name].band
        assert (band["low"], band["high"], band["cpu_class"]) == (low, high, cls.value)
        assert band["state"] == {"below": "below", "inside": "ceiling", "above": "above"}[name]
        assert f"{ratio:.2f}x" in band["text"]
    # Below the band, what leaves the fast path is measured and named; not otherwise (INT8 is faster).
    assert seen == ["below_int8.tflite"]
    below = verdicts["below"]
    if below.slower:  # the INT8-is-slower warning names them, once
        assert "SHAPE" not in below.band["text"] and "WARNING" in below.text() and "SHAPE" in below.text()
    else:
        assert "off the fast path" in below.band["text"] and "SHAPE" in below.band["text"]
    assert "at the ceiling" in verdicts["inside"].band["text"]
    assert "suspiciously above" in verdicts["above"].band["text"]
    text = render_speed({"speed": [v.to_dict() for v in verdicts.values()]})
    assert text.count("band: ") == 3


def test_the_same_ratio_is_the_ceiling_on_one_cpu_and_below_it_on_another(monkeypatch):
    rows = [_row("m_int8.tflite", 10 / 1.6), _row("m_fp32.tflite", 10.0)]
    states = {}
    for cls, (machine, flags) in CLASSES.items():
        _patch(monkeypatch, machine, flags)
        states[cls] = speed_verdicts({"models": rows}, coverage=_coverage)[0].band["state"]
    assert states == {CpuClass.ARM: "ceiling", CpuClass.ARM_DOT: "below", CpuClass.X86: "ceiling",
                      CpuClass.X86_VNNI: "below"}


def test_a_device_row_is_judged_by_the_devices_own_class_and_unknown_features_give_no_band(monkeypatch):
    from edgeact.remote.fleet import _cpu_class

    _patch(monkeypatch, *CLASSES[CpuClass.X86_VNNI])  # this host: VNNI; the device: a Pi 5
    device = {"name": "pi5", "cpu_class": _cpu_class({"arch": "aarch64", "cpu_features": ["asimddp"]})}
    assert device["cpu_class"] == "arm-dot"
    rows = [_row("d_int8.tflite", 10 / 3.0, device=device), _row("d_fp32.tflite", 10.0, device=device)]
    verdict = speed_verdicts({"models": rows}, coverage=_coverage)[0]
    assert verdict.band["cpu_class"] == "arm-dot" and "device pi5" in verdict.band["text"]
    unknown = {"name": "old", "cpu_class": None}
    rows = [_row("u_int8.tflite", 1.0, device=unknown), _row("u_fp32.tflite", 2.0, device=unknown)]
    assert speed_verdicts({"models": rows}, coverage=_coverage)[0].band is None
    assert _cpu_class({"arch": "aarch64", "cpu_features": None}) is None


def test_convert_speed_line_carries_the_band_of_this_host(tmp_path, monkeypatch):
    """convert's timed loop (measure_speed_pair) judges its ratio by this host's class, patched here."""
    import numpy as np

    from converters import ConvertOptions, convert
    from converters.keras.loader import import_keras
    from edgeact.config import Format

    keras = import_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)), name="band")
    _patch(monkeypatch, *CLASSES[CpuClass.ARM_DOT])
    data = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    report = convert(model, data, tmp_path, ConvertOptions(formats=(Format.TFLITE,), samples=8, holdout=8,
                                                           progress=False, layer_error="never"))
    fast = report.formats["tflite"].details["fast_path"]
    assert fast["band"]["cpu_class"] == "arm-dot" and (fast["band"]["low"], fast["band"]["high"]) == (2.5, 4.0)
    assert fast["band"]["text"] in fast["text"]
    expected = "below" if fast["speedup"] < 2.5 else "ceiling" if fast["speedup"] <= 4.0 else "above"
    assert fast["band"]["state"] == expected


def test_profile_notes_a_host_of_another_cpu_class_than_the_target(monkeypatch):
    from edgeact.profile.targets import host_note

    _patch(monkeypatch, *CLASSES[CpuClass.X86_VNNI])
    assert "not on an x86-64 CPU without VNNI (target x86-avx2)" in host_note("x86-avx2")
    assert host_note("x86-vnni") is None and host_note("desktop") is None
    _patch(monkeypatch, *CLASSES[CpuClass.X86])
    assert "not on an x86-64 CPU with VNNI" in host_note("x86-vnni") and host_note("x86-avx2") is None
