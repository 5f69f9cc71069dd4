"""Profile the same models on several devices at once; one device failing never loses the others.

`local` is this machine (measured in this process); anything else is `[user@]host[:port]`
reached over SSH. Each device gets its own thread and connection; a device's error is kept
with its name and the rows of the devices that worked are returned with it.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from edgeact.errors import EdgeactError, InputError
from edgeact.measure.profiler import LoopSettings, ModelProfile, fit_inputs, profile_model
from edgeact.runtime.base import IOSpec, quantize

from .device_profile import DeviceOptions, DeviceSession
from .probe import gather_facts
from .ssh import kill_running_commands
from .target import parse_device

LOCAL = "local"


@dataclass
class Job:
    """One model to run, with its prepared float inputs and loop settings."""

    key: object  # the caller's handle for this job (its plan)
    model: Path
    inputs: np.ndarray | dict  # one array, or arrays keyed by input name
    settings: LoopSettings


@dataclass
class DeviceRun:
    device: str
    facts_before: dict = field(default_factory=dict)
    facts_after: dict = field(default_factory=dict)
    results: list[tuple[object, ModelProfile]] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> dict:
        """What a profile row says about where it was measured."""
        before, after = self.facts_before, self.facts_after
        flags = (after.get("throttled") or {})
        throttled = any(flags.get(k) for k in ("under_voltage", "frequency_capped", "throttled", "soft_temp_limit"))
        return {
            "name": self.device, "arch": before.get("arch"), "model": before.get("model"),
            "cpu_model": before.get("cpu_model"), "cpu_count": before.get("cpu_count"), "os": before.get("os"),
            "python": before.get("python"), "numpy": before.get("numpy"), "governor": before.get("governor"),
            "temperature_before_c": _max_temp(before), "temperature_after_c": _max_temp(after),
            "throttled": throttled, "throttle_flags": flags.get("raw"),
            "cpu_class": _cpu_class(before),
        }


def _cpu_class(facts: dict) -> str | None:
    """The device's CPU class from the flags its probe read (edgeact.cpu_features), for the speed band."""
    from edgeact.cpu_features import cpu_class

    features = facts.get("cpu_features")
    if not facts.get("arch") or features is None:
        return None
    found = cpu_class(facts["arch"], set(features))
    return found.value if found else None


def _max_temp(facts: dict) -> float | None:
    temps = list((facts.get("temperature_c") or {}).values())
    return max(temps) if temps else None


def wire_inputs(model: Path, inputs):
    """Inputs as the device's interpreter takes them: quantized here for an integer .tflite input.

    int8 is a quarter of float32 over the network, and the device then skips quantizing.
    Several inputs (keyed by name) go as float32 and are quantized on the device.
    """
    if isinstance(inputs, dict):
        return {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in inputs.items()}
    if model.suffix.lower() != ".tflite":
        return np.ascontiguousarray(inputs, dtype=np.float32)
    spec = input_spec(model)
    return quantize(fit_inputs(inputs, spec), spec)


@lru_cache(maxsize=32)
def input_spec(model: Path) -> IOSpec:
    """A .tflite's first input, read from the flatbuffer once (the evaluation asks for every chunk)."""
    from edgeact.formats.tflite_model import read_tflite

    info = read_tflite(model)
    tensor = info.tensors[info.inputs[0]]
    return IOSpec(tensor.name, tuple(tensor.shape), np.dtype(tensor.dtype),
                  tensor.scale[0] if len(tensor.scale) == 1 else 0.0,
                  tensor.zero_point[0] if len(tensor.zero_point) == 1 else 0)


def run_device(device: str, jobs: list[Job], options: DeviceOptions, edgetpu: bool,
               progress: Callable[[str, dict], None] | None) -> DeviceRun:
    run = DeviceRun(device)
    try:
        if device == LOCAL:
            run.facts_before = gather_facts()
            for job in jobs:
                run.results.append((job.key, profile_model(job.model, job.inputs, job.settings)))
            run.facts_after = gather_facts()
            return run
        with DeviceSession(parse_device(device), options) as session:
            formats = tuple(sorted({job.model.suffix.lower().lstrip(".") for job in jobs}))
            run.facts_before = session.check(edgetpu, formats)

            def report(line: str) -> None:
                if progress is not None and line.startswith("{"):
                    try:
                        progress(device, json.loads(line))
                    except ValueError:
                        pass

            for job in jobs:
                profile = session.profile(job.model, wire_inputs(job.model, job.inputs), job.settings, report)
                run.results.append((job.key, profile))
            run.facts_after = session.facts()
            session.tidy()
    except EdgeactError as exc:
        run.error = str(exc)
    return run


def profile_fleet(devices: list[str], jobs: list[Job], options: DeviceOptions | None = None,
                  edgetpu: bool = False, progress: Callable[[str, dict], None] | None = None) -> list[DeviceRun]:
    """Every job on every device, devices concurrently; results in the order devices were given."""
    options = options or DeviceOptions()
    for device in devices:
        if device != LOCAL:
            parse_device(device)  # a malformed name is an input error before anything runs
    repeated = sorted({d for d in devices if devices.count(d) > 1})
    if repeated:
        raise InputError(f"--device {repeated[0]} is given twice; runs on one device would disturb "
                         "each other's timings: give each device once")
    pool = ThreadPoolExecutor(max_workers=max(1, len(devices)))
    try:
        futures = [pool.submit(run_device, d, jobs, options, edgetpu, progress) for d in devices]
        return [f.result() for f in futures]
    except KeyboardInterrupt:
        # Ctrl-C: end every ssh command now, so that no worker waits out a remote run.
        kill_running_commands()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
