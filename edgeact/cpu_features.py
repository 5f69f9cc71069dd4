"""What this host's CPU does to integer kernels: the one fact convert needs, read without any runtime.

ONNX Runtime's x86-64 U8S8 kernels (uint8 activations, int8 weights: the QDQ models convert
writes) multiply pairs of bytes into 16-bit sums with `vpmaddubsw` unless the CPU has VNNI.
Two products of 255 x 127 overflow 16 bits, so on SSE4.1/AVX2/AVX-512 without VNNI a model
whose weights use the full int8 range computes saturated sums. ORT documents the remedy:
7-bit weights (quantize_static's reduce_range). ARM (NEON, dot product) and VNNI accumulate
in 32 bits and are exact either way.
"""
from __future__ import annotations

import enum
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


class CpuClass(str, enum.Enum):
    """What a CPU multiplies int8 with: the class decides the exact ONNX weight range and the INT8 speed-up band."""

    ARM = "arm"  # NEON without the dot product (Cortex-A53/A72: Raspberry Pi 3/4, Coral Dev Board)
    ARM_DOT = "arm-dot"  # SDOT/UDOT (asimddp: Cortex-A76 of a Raspberry Pi 5)
    X86 = "x86"  # SSE4.1/AVX2/AVX-512 without VNNI: 16-bit pair sums (vpmaddubsw)
    X86_VNNI = "x86-vnni"  # AVX-512 VNNI or AVX-VNNI: 32-bit dot products


def cpu_class(machine: str | None = None, flags: set[str] | None = None) -> CpuClass | None:
    """The class of a CPU from its architecture and feature flags (not its name); None when unknown."""
    machine = (machine or platform.machine()).lower()
    dot = int8_dot_product(machine, flags)
    if dot is None:
        return None
    if machine in _X86:
        return CpuClass.X86_VNNI if dot else CpuClass.X86
    return CpuClass.ARM_DOT if dot else CpuClass.ARM


def host_cpu_class() -> CpuClass | None:
    return cpu_class()


# INT8 over float speed-up that a CPU's instructions allow for CNNs, (low, high), p50 against p50.
# Arm publishes MobileNetV2 2.7x and GoogLeNet 3.6x for INT8 with SDOT on Cortex-A76; without a dot
# product (A72) and on x86-64 without VNNI, int8 multiplies in 16-bit lanes at about the rate of
# float FMA (issue 25 gives the bands).
SPEEDUP_BANDS: dict[CpuClass, tuple[float, float]] = {
    CpuClass.ARM: (1.2, 1.8),
    CpuClass.ARM_DOT: (2.5, 4.0),
    CpuClass.X86: (1.3, 1.8),
    CpuClass.X86_VNNI: (2.5, 4.3),
}

_CPU_WORDS = {CpuClass.ARM: "an ARM CPU without the dot product (e.g. Cortex-A72, Raspberry Pi 4)",
              CpuClass.ARM_DOT: "an ARM CPU with the dot product (SDOT, e.g. Cortex-A76, Raspberry Pi 5)",
              CpuClass.X86: "an x86-64 CPU without VNNI", CpuClass.X86_VNNI: "an x86-64 CPU with VNNI"}


def describe_cpu_class(cls: CpuClass) -> str:
    return _CPU_WORDS[cls]


def precise_u8s8_available(machine: str | None = None, flags: set[str] | None = None) -> bool:
    """Whether ORT's `session.x64quantprecision` applies here. ORT's own words for the key
    (kOrtSessionOptionsAvx2PrecisionMode, onnxruntime_session_options_config_keys.h): "use slower
    U8U8 matrix multiplications. Only effective with AVX2 or AVX512 platforms"; an SSE4.1-only
    CPU has no exact kernel, only the QDQ reference."""
    machine = (machine or platform.machine()).lower()
    flags = cpu_flags() if flags is None else flags
    return machine in _X86 and bool(flags) and any(f == "avx2" or f.startswith("avx512") for f in flags)


__all__ = ["SPEEDUP_BANDS", "CpuClass", "cpu_class", "cpu_flags", "describe_cpu_class", "host_cpu_class",
           "int8_dot_product", "precise_u8s8_available", "slow_int8_note", "u8s8_saturates"]
