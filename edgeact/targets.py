"""The devices edgeact converts for and profiles on, and what follows from each one's CPU.

One table, read by `convert --target` (ONNX weight bits, threads for the timed loop, the
formats and interface that make sense, a batch fixed to 1) and by `profile --target`
(edgeact.profile.targets adds the runtimes and delegates it checks). Device-side: standard
library and edgeact core only.

Without a target, convert's defaults suit a Raspberry Pi-class ARM CPU (`DEFAULT_SPEC`):
8-bit ONNX weights, which ARM's 32-bit accumulators compute exactly, and a TFLite batch
fixed to 1.
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from edgeact.cpu_features import CpuClass, host_cpu_class
from edgeact.errors import InputError


class Target(str, enum.Enum):
    DESKTOP = "desktop"
    RPI4 = "rpi4"
    RPI5 = "rpi5"
    CORAL_USB = "coral-usb"
    CORAL_DEVBOARD = "coral-devboard"
    X86_VNNI = "x86-vnni"
    X86_AVX2 = "x86-avx2"


@dataclass(frozen=True)
class DeviceSpec:
    """What a device computes INT8 with, and the conversion defaults that follow.

    Args:
        cpu: the CPU class (edgeact.cpu_features.CpuClass); None: this host's, read from its flags.
        threads: the device's cores, the threads convert times the models with (capped by this
            host's); None: every core of this host.
        formats: the formats that run there; empty: all.
        io_types: the INT8 interfaces that make sense there; empty: all.
        edgetpu: the model runs on an Edge TPU (compiled by edgetpu_compiler), the CPU takes the rest.
        fixed_batch: the TFLite batch is fixed to 1 (edgeact.fastpath.edgetpu: the shape ops a
            dynamic batch leaves end the Edge TPU's part of the graph and stay off XNNPACK).
    """

    description: str
    cpu: CpuClass | None = None
    threads: int | None = None
    formats: tuple[str, ...] = ()
    io_types: tuple[str, ...] = ()
    edgetpu: bool = False
    fixed_batch: bool = True

    def cpu_class(self) -> CpuClass | None:
        return self.cpu if self.cpu is not None else host_cpu_class()

    @property
    def onnx_weight_bits(self) -> int:
        """8 bits where the integer kernels accumulate in 32 bits (ARM, VNNI), 7 only for x86-64
        without VNNI, whose ORT U8S8 kernels saturate full-range weights (edgeact.cpu_features)."""
        return 7 if self.cpu_class() is CpuClass.X86 else 8


DEVICES: dict[Target, DeviceSpec] = {
    Target.DESKTOP: DeviceSpec("this desktop", fixed_batch=False),
    # Raspberry Pi 4: Cortex-A72, 4 cores, no dot product; Pi 5: Cortex-A76, 4 cores, SDOT.
    Target.RPI4: DeviceSpec("Raspberry Pi 4 (Cortex-A72)", CpuClass.ARM, 4),
    Target.RPI5: DeviceSpec("Raspberry Pi 5 (Cortex-A76)", CpuClass.ARM_DOT, 4),
    # The Edge TPU takes full-integer TFLite only; its host CPU runs what it does not map. The USB
    # Accelerator's host is unknown (a Pi-class ARM board is the common one); the Dev Board has a
    # quad Cortex-A53 (i.MX 8M, no dot product).
    Target.CORAL_USB: DeviceSpec("Coral USB Accelerator (Edge TPU)", CpuClass.ARM, 4, ("tflite",),
                                 ("int8", "uint8"), edgetpu=True),
    Target.CORAL_DEVBOARD: DeviceSpec("Coral Dev Board (Edge TPU)", CpuClass.ARM, 4, ("tflite",),
                                      ("int8", "uint8"), edgetpu=True),
    Target.X86_VNNI: DeviceSpec("x86-64 CPU with VNNI (AVX-512 VNNI or AVX-VNNI)", CpuClass.X86_VNNI,
                                fixed_batch=False),
    Target.X86_AVX2: DeviceSpec("x86-64 CPU without VNNI (SSE4.1/AVX2/AVX-512)", CpuClass.X86, fixed_batch=False),
}

DEFAULT_SPEC = DeviceSpec("a Raspberry Pi-class ARM CPU (no --target)", CpuClass.ARM, 4)


def device_spec(target: Target | str | None) -> DeviceSpec:
    return DEFAULT_SPEC if target is None else DEVICES[Target(target)]


def timing_threads(target: Target | str | None, host_cores: int | None = None) -> int:
    """Threads convert's timed loop uses: the target's cores, at most this host's."""
    if host_cores is None:
        try:
            host_cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            host_cores = os.cpu_count() or 1
    wanted = device_spec(target).threads
    return min(wanted, host_cores) if wanted else host_cores


def check_convert_target(target: Target | str | None, formats: tuple[str, ...], io_type: str) -> None:
    """InputError when a requested format or interface does not run on the target."""
    if target is None:
        return
    spec = device_spec(target)
    name = Target(target).value
    wrong = [f for f in formats if spec.formats and f not in spec.formats]
    if wrong:
        raise InputError(f"--target {name} ({spec.description}) runs {' or '.join(spec.formats)} models only, "
                         f"not {', '.join(wrong)}; drop --format {wrong[0]} or choose another --target")
    if spec.io_types and io_type not in spec.io_types:
        raise InputError(f"--target {name} ({spec.description}) needs a full-integer interface (--io "
                         f"{' or '.join(spec.io_types)}): a float interface leaves QUANTIZE/DEQUANTIZE on its CPU; "
                         f"drop --io {io_type}")


def target_record(target: Target | str | None) -> dict:
    """What the convert report records of the target: `profile` reads `name` back."""
    spec = device_spec(target)
    cpu = spec.cpu_class()
    return {"name": None if target is None else Target(target).value, "description": spec.description,
            "cpu": cpu.value if cpu else None, "threads": spec.threads, "edgetpu": spec.edgetpu,
            "fixed_batch": spec.fixed_batch, "onnx_weight_bits": spec.onnx_weight_bits}


__all__ = ["DEFAULT_SPEC", "DEVICES", "DeviceSpec", "Target", "check_convert_target", "device_spec",
           "target_record", "timing_threads"]
