"""Device facts, gathered on the device itself with the standard library only.

Sent over SSH as source on stdin (`python3 - < probe.py`) and printed as JSON, so it runs
on a device where nothing of edgeact is installed yet. Also importable: `gather_facts()`
describes the local machine for desktop runs.
"""
from __future__ import annotations

import glob
import importlib
import json
import os
import platform
import subprocess
import sys


def _first_line(exc: BaseException) -> str:
    """edgeact.errors.first_line's rule (this probe runs alone on the device, with the standard library only)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _cpu_model():
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model", "CPU part"):
        for line in text.splitlines():
            if line.lower().startswith(key.lower()) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


# The feature flags that decide a CPU's INT8 arithmetic (edgeact.cpu_features reads them on the host
# side): the dot product on ARM, VNNI and AVX2/AVX-512 on x86-64. Only these travel.
_INT8_FLAGS = ("asimddp", "avx2", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni", "avxvnni", "sse4_1")


def _cpu_features():
    """The INT8-relevant flags of /proc/cpuinfo's `flags` (x86) or `Features` (ARM); None where unreadable."""
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.split(":", 1)[0].strip().lower() in ("flags", "features") and ":" in line:
            return sorted(set(line.split(":", 1)[1].split()) & set(_INT8_FLAGS))
    return None


def _temperatures():
    temps = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        value = _read(os.path.join(zone, "temp"))
        if value and value.lstrip("-").isdigit():
            temps[_read(os.path.join(zone, "type")) or os.path.basename(zone)] = int(value) / 1000.0
    return temps


def _throttled():
    """`vcgencmd get_throttled` on a Raspberry Pi: bits 0-3 now, 16-19 since boot."""
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if "=" not in out:
        return None
    value = int(out.split("=", 1)[1].strip(), 16)
    return {"raw": hex(value), "under_voltage": bool(value & 0x1), "frequency_capped": bool(value & 0x2),
            "throttled": bool(value & 0x4), "soft_temp_limit": bool(value & 0x8),
            "throttled_since_boot": bool(value & 0x40000)}


RUNTIME_ERRORS = {}


def _version(module):
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        if getattr(exc, "name", None) != module:  # installed, but broken (e.g. tflite-runtime with numpy 2)
            RUNTIME_ERRORS[module] = _first_line(exc)
        return None
    except Exception as exc:  # a broken install must not stop the probe
        RUNTIME_ERRORS[module] = f"{type(exc).__name__}: {_first_line(exc)}"
        return None
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version({"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}
                                   .get(module, module))
        except Exception:
            version = "unknown"
    return str(version)


def _edgetpu():
    names = ("libedgetpu.so.1", "libedgetpu.so.1.0")
    dirs = ("/usr/lib", "/usr/lib/aarch64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib/arm-linux-gnueabihf",
            "/usr/local/lib")
    return any(os.path.exists(os.path.join(d, n)) for d in dirs for n in names)


def gather_facts():
    governors = sorted({g for g in (_read(p) for p in glob.glob(
        "/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")) if g})
    freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    return {
        "arch": platform.machine(),
        "os": (platform.freedesktop_os_release().get("PRETTY_NAME") if hasattr(platform, "freedesktop_os_release")
               and os.path.exists("/etc/os-release") else platform.platform()),
        "kernel": platform.release(),
        "hostname": platform.node(),
        "model": _read("/proc/device-tree/model") or _read("/sys/firmware/devicetree/base/model"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_features": _cpu_features(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "numpy": _version("numpy"),
        "runtimes": {"litert": _version("ai_edge_litert"), "tflite-runtime": _version("tflite_runtime"),
                     "onnxruntime": _version("onnxruntime")},
        "edgetpu_library": _edgetpu(),
        "governor": governors[0] if len(governors) == 1 else (governors or None),
        "cpu_freq_mhz": int(freq) / 1000.0 if freq and freq.isdigit() else None,
        "temperature_c": _temperatures(),
        "throttled": _throttled(),
        "free_disk_mb": _free_disk_mb(),
        "runtime_errors": RUNTIME_ERRORS,
    }


def _free_disk_mb():
    try:
        stat = os.statvfs(os.path.expanduser("~"))
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize // (1024 * 1024)


if __name__ == "__main__":
    json.dump(gather_facts(), sys.stdout)
