"""Targets: what the numbers were measured for, and what that device needs to run a model.

`--target` records the target in the profile and checks, before anything is measured,
the runtime, the delegate and (for the Edge TPU) that the model is full-integer INT8 and
compiled by edgetpu_compiler. Unmet requirements are one InputError naming each of them.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from edgeact.errors import InputError
from edgeact.runtime import Delegate, RuntimeName, model_format
from edgeact.targets import Target

EDGETPU_OP = "CUSTOM:edgetpu-custom-op"


@dataclass(frozen=True)
class TargetSpec:
    """What a target runs. Empty tuples mean anything goes."""

    description: str
    runtimes: tuple[RuntimeName, ...] = ()
    delegates: tuple[str, ...] = ()  # named delegates allowed; library paths are always allowed
    default_delegate: str = Delegate.XNNPACK.value
    formats: tuple[str, ...] = ()
    edgetpu: bool = False  # full-integer INT8, compiled by edgetpu_compiler
    machines: tuple[str, ...] = ()  # platform.machine() values of the device itself


_PI_RUNTIMES = (RuntimeName.LITERT, RuntimeName.TFLITE_RUNTIME, RuntimeName.ONNXRUNTIME)
_CORAL_RUNTIMES = (RuntimeName.LITERT, RuntimeName.TFLITE_RUNTIME)
_CPU_DELEGATES = (Delegate.XNNPACK.value, Delegate.NONE.value)

TARGETS: dict[Target, TargetSpec] = {
    Target.DESKTOP: TargetSpec("this desktop"),
    Target.RPI4: TargetSpec("Raspberry Pi 4 (Cortex-A72)", _PI_RUNTIMES, _CPU_DELEGATES,
                            machines=("aarch64", "armv7l")),
    Target.RPI5: TargetSpec("Raspberry Pi 5 (Cortex-A76)", _PI_RUNTIMES, _CPU_DELEGATES,
                            machines=("aarch64",)),
    Target.CORAL_USB: TargetSpec("Coral USB Accelerator (Edge TPU)", _CORAL_RUNTIMES, (Delegate.EDGETPU.value,),
                                 Delegate.EDGETPU.value, ("tflite",), edgetpu=True),
    Target.CORAL_DEVBOARD: TargetSpec("Coral Dev Board (Edge TPU)", _CORAL_RUNTIMES, (Delegate.EDGETPU.value,),
                                      Delegate.EDGETPU.value, ("tflite",), edgetpu=True, machines=("aarch64",)),
    Target.X86_VNNI: TargetSpec("x86-64 CPU with VNNI", machines=("x86_64", "amd64")),
    Target.X86_AVX2: TargetSpec("x86-64 CPU without VNNI", machines=("x86_64", "amd64")),
}


def target_from_reports(models) -> Target | None:
    """The target the models' convert reports name (`convert --target`), when they agree on one
    (an Edge TPU target only for compiled `*_edgetpu.tflite` models); None otherwise."""
    from edgeact.report.sidecar import find_report

    named = set()
    for model in models:
        try:
            report = find_report(model)
        except InputError:
            continue  # profile reads the report itself and says what is wrong with it
        if report is not None and report.target:
            named.add(report.target)
    if len(named) != 1:
        return None
    target = Target(named.pop())
    # An Edge TPU target needs the compiled model; the _int8 file beside it profiles on the CPU.
    if TARGETS[target].edgetpu and not all(Path(m).stem.endswith("_edgetpu") for m in models):
        return None
    return target


def default_delegate(target: Target | str) -> str:
    return TARGETS[Target(target)].default_delegate


def check_target(target: Target | str, model: str | Path, runtime: RuntimeName | str, delegate: str) -> None:
    """Raise InputError naming every requirement of `target` that this model/runtime/delegate misses."""
    target = Target(target)
    spec = TARGETS[target]
    runtime = RuntimeName(runtime)
    fmt = model_format(model)
    problems = []
    if spec.formats and fmt not in spec.formats:
        problems.append(f"a {' or '.join('.' + f for f in spec.formats)} model, not .{fmt}")
    if spec.runtimes and runtime not in spec.runtimes:
        problems.append(f"runtime {' or '.join(r.value for r in spec.runtimes)} (not {runtime.value})")
    named = delegate in {d.value for d in Delegate}
    if spec.delegates and named and delegate not in spec.delegates:
        problems.append(f"--delegate {' or '.join(spec.delegates)} (not {delegate})")
    if spec.edgetpu and fmt == "tflite":
        problems.extend(edgetpu_problems(model))
    if problems:
        raise InputError(f"target {target.value} ({spec.description}) needs " + "; ".join(problems)
                         + f" for {Path(model).name}")


def edgetpu_problems(model: str | Path) -> list[str]:
    """Why a .tflite cannot run on the Edge TPU: float ops left, or not compiled for it."""
    from edgeact.formats.tflite_model import read_tflite

    info = read_tflite(model)
    # A float interface's own QUANTIZE/DEQUANTIZE run on the CPU, which is fine.
    float_ops = [op.type for op in info.float_ops(float_io=True)]
    problems = []
    if float_ops:
        problems.append(f"a full-integer INT8 model ({len(float_ops)} ops compute in float, e.g. "
                        f"{', '.join(sorted(set(float_ops))[:3])}; profile the _int8 model)")
    elif not any(op.type == EDGETPU_OP for op in info.ops):
        problems.append("a model compiled for the Edge TPU (run edgetpu_compiler on it and profile "
                        "the *_edgetpu.tflite it writes)")
    return problems


def host_note(target: Target | str) -> str | None:
    """A note when the numbers are measured somewhere other than the target device."""
    spec = TARGETS[Target(target)]
    machine = platform.machine()
    if spec.machines and machine not in spec.machines:
        return (f"measured on this {machine} machine, not on a {spec.description}; "
                "run edgeact profile on the device for its numbers")
    from edgeact.cpu_features import describe_cpu_class, host_cpu_class
    from edgeact.targets import device_spec

    wanted, here = device_spec(target).cpu, host_cpu_class()
    if wanted is not None and here is not None and wanted is not here and not spec.edgetpu:
        return (f"measured on {describe_cpu_class(here)}, not on {describe_cpu_class(wanted)} (target "
                f"{Target(target).value}): their INT8 speed-ups differ; run edgeact profile on such a CPU")
    return None


def host_info() -> dict:
    """Where the numbers were measured (the same probe a device runs)."""
    from edgeact.remote.probe import gather_facts

    facts = gather_facts()
    return {"machine": facts["arch"], "system": platform.system(), "release": facts["kernel"],
            "processor": facts["cpu_model"] or "unknown", "cpus": facts["cpu_count"], "python": facts["python"]}
