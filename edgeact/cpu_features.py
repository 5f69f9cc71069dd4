"""What this host's CPU does to integer kernels: the one fact convert needs, read without any runtime.

ONNX Runtime's x86-64 U8S8 kernels (uint8 activations, int8 weights: the QDQ models convert
writes) multiply pairs of bytes into 16-bit sums with `vpmaddubsw` unless the CPU has VNNI.
Two products of 255 x 127 overflow 16 bits, so on SSE4.1/AVX2/AVX-512 without VNNI a model
whose weights use the full int8 range computes saturated sums. ORT documents the remedy:
7-bit weights (quantize_static's reduce_range). ARM (NEON, dot product) and VNNI accumulate
in 32 bits and are exact either way.
"""
from __future__ import annotations

import platform

_X86 = {"x86_64", "amd64", "i386", "i686", "x86"}
_VNNI = {"avx512_vnni", "avx_vnni", "avx512vnni", "avxvnni"}


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The `flags` (x86) or `Features` (ARM) of /proc/cpuinfo, or None where they cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as handle:
                cpuinfo = handle.read()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.split(":", 1)[0].strip().lower() in ("flags", "features") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return None


def int8_dot_product(machine: str | None = None, flags: set[str] | None = None) -> bool | None:
    """Whether the CPU multiplies bytes into 32-bit sums in one instruction: VNNI on x86-64, the
    dot-product extension (`asimddp`: Cortex-A76 of a Raspberry Pi 5, not the A72 of a Pi 4) on
    ARM. None when unknown."""
    machine = (machine or platform.machine()).lower()
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return None
    if machine in _X86:
        return bool(flags & _VNNI)
    if machine in ("aarch64", "arm64") or machine.startswith("armv8"):
        return "asimddp" in flags
    return None


def u8s8_saturates(machine: str | None = None, flags: set[str] | None = None) -> bool | None:
    """True where ORT's U8S8 kernels saturate 8-bit weights (x86 without VNNI), False where they
    cannot (ARM, or x86 with VNNI), None when the flags are unknown (not Linux)."""
    machine = (machine or platform.machine()).lower()
    if machine not in _X86:
        return False
    found = int8_dot_product(machine, flags)
    return None if found is None else not found


def slow_int8_note(machine: str | None = None, flags: set[str] | None = None) -> str | None:
    """Why INT8 gains little on this host, where that is the CPU's doing: x86-64 without VNNI
    multiplies int8 in 16-bit lanes (XNNPACK and ORT alike), about the throughput of float FMA."""
    machine = (machine or platform.machine()).lower()
    if machine not in _X86 or int8_dot_product(machine, flags) is not False:
        return None
    return ("this x86-64 CPU has no VNNI (8-bit dot product): INT8 kernels run in 16-bit lanes and gain little "
            "over float here; an ARM device or a VNNI CPU differs, so profile there for the speed-up")


__all__ = ["cpu_flags", "int8_dot_product", "slow_int8_note", "u8s8_saturates"]
