"""`edgeact device check`: what a device has, what it lacks, and the command that installs each piece."""
from __future__ import annotations

from dataclasses import asdict, dataclass

# Wheels exist for these (ai-edge-litert: manylinux aarch64/x86_64, Python >= 3.9; tflite-runtime
# 2.14: aarch64/armv7l/x86_64 for Python 3.8 to 3.11, built against numpy 1.x).
_LITERT_MACHINES = ("aarch64", "x86_64")
_TFLITE_RUNTIME_PYTHONS = ((3, 8), (3, 9), (3, 10), (3, 11))


@dataclass
class Finding:
    item: str
    status: str  # ok, missing, warning
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _python_version(facts: dict) -> tuple[int, int]:
    major, minor = (int(p) for p in facts.get("python", "0.0").split(".")[:2])
    return major, minor


def runtime_install_command(facts: dict) -> str:
    """The pip command that gives this device a working TFLite runtime."""
    pip = f"{facts.get('python_executable') or 'python3'} -m pip install"
    if facts.get("arch") in _LITERT_MACHINES and _python_version(facts) >= (3, 9):
        return f"{pip} ai-edge-litert"
    return f"{pip} 'numpy<2' tflite-runtime"


def tflite_runtime(facts: dict) -> str | None:
    runtimes = facts.get("runtimes") or {}
    return next((name for name in ("litert", "tflite-runtime") if runtimes.get(name)), None)


def diagnose(facts: dict, edgetpu: bool = False, formats: tuple[str, ...] = ("tflite",)) -> list[Finding]:
    """Findings for a device's facts (from `probe.gather_facts` run on it).

    A runtime counts as missing only for the model formats that are to run there.
    """
    findings = [Finding("python", "ok", f"Python {facts.get('python')} ({facts.get('python_executable')})")]
    numpy = facts.get("numpy")
    runtimes = facts.get("runtimes") or {}
    if numpy:
        findings.append(Finding("numpy", "ok", f"numpy {numpy}"))
    else:
        findings.append(Finding("numpy", "missing", "numpy is not importable",
                                f"{facts.get('python_executable') or 'python3'} -m pip install "
                                + ("'numpy<2'" if runtimes.get("tflite-runtime") else "numpy")))
    runtime = tflite_runtime(facts)
    if runtime:
        findings.append(Finding("tflite runtime", "ok", f"{runtime} {runtimes[runtime]}"))
    elif "tflite" not in formats:
        findings.append(Finding("tflite runtime", "warning", "no TFLite runtime (not needed for .onnx models)",
                                runtime_install_command(facts)))
    else:
        errors = facts.get("runtime_errors") or {}
        broken = "; ".join(f"{k}: {v}" for k, v in errors.items())
        findings.append(Finding("tflite runtime", "missing",
                                "no TFLite runtime is importable" + (f" ({broken})" if broken else ""),
                                runtime_install_command(facts)))
    if runtimes.get("onnxruntime"):
        findings.append(Finding("onnxruntime", "ok", f"onnxruntime {runtimes['onnxruntime']} (for .onnx models)"))
    elif "onnx" in formats:
        findings.append(Finding("onnxruntime", "missing", "ONNX Runtime is not importable (needed for .onnx models)",
                                f"{facts.get('python_executable') or 'python3'} -m pip install onnxruntime"))
    if edgetpu:
        if facts.get("edgetpu_library"):
            findings.append(Finding("edgetpu", "ok", "libedgetpu.so.1 found"))
        else:
            findings.append(Finding("edgetpu", "missing", "libedgetpu.so.1 not found",
                                    "sudo apt-get install libedgetpu1-std (from the Coral apt repository: "
                                    "packages.cloud.google.com/apt coral-edgetpu-stable)"))
    governor = facts.get("governor")
    if governor and governor != "performance":
        findings.append(Finding("cpu governor", "warning", f"'{governor}': latency varies with the clock",
                                "echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"))
    throttled = facts.get("throttled") or {}
    if any(throttled.get(k) for k in ("under_voltage", "frequency_capped", "throttled", "soft_temp_limit")):
        findings.append(Finding("throttling", "warning", f"the device reports throttling now ({throttled['raw']})",
                                "cool the device and check its power supply before measuring"))
    free = facts.get("free_disk_mb")
    if free is not None and free < 200:
        findings.append(Finding("disk", "warning", f"only {free} MB free in the home folder",
                                "free some space; edgeact's cache needs room for the model and inputs"))
    return findings


def can_profile(findings: list[Finding]) -> bool:
    return not any(f.status == "missing" for f in findings)


@dataclass
class DeviceCheck:
    """`edgeact device check`: a device's facts, what was found, and whether it can run a profile."""

    device: str
    facts: dict
    findings: list[Finding]

    @property
    def can_profile(self) -> bool:
        return can_profile(self.findings)

    def to_dict(self) -> dict:
        return {"device": self.device, "facts": self.facts, "findings": [f.to_dict() for f in self.findings],
                "can_profile": self.can_profile}


def check_device(host: str, options=None, edgetpu: bool = False,
                 formats: tuple[str, ...] = ("tflite",)) -> DeviceCheck:
    """Read the facts of HOST ([user@]host[:port] or an ssh alias) over SSH and diagnose them.

    Args:
        options: `edgeact.remote.device_profile.DeviceOptions` (how to reach it); None: the defaults.
    Raises:
        InputError for a malformed host; DeviceError when it cannot be reached or has no Python.
    """
    from .device_profile import DeviceOptions, DeviceSession
    from .target import parse_device

    spec = parse_device(host)
    with DeviceSession(spec, options or DeviceOptions()) as session:
        facts = session.facts()
    return DeviceCheck(str(spec), facts, diagnose(facts, edgetpu, tuple(formats) or ("tflite",)))
