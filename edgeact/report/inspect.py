"""`edgeact inspect`: what is inside a .tflite or .onnx model."""
from __future__ import annotations

from pathlib import Path

from edgeact.errors import InputError, ModelLoadError
from edgeact.formats.tflite_model import read_tflite


def describe_model(path: str | Path, op_times: bool = False, target: str | None = None) -> dict:
    """Ops, fused activations, tensors, quantization and size of a model file, as a dict.

    `op_times`: also the per-op-type time shares (`edgeact.fastpath.op_time`), under "op_times".
    `target`: an Edge TPU target (coral-usb, coral-devboard) adds the pre-flight
    (`edgeact.fastpath.edgetpu`), under "edgetpu".
    """
    path = Path(path)
    info = _describe(path)
    if target is not None:
        from edgeact.targets import Target, device_spec

        info["target"] = Target(target).value
        if device_spec(target).edgetpu:
            if path.suffix.lower() != ".tflite":
                raise InputError(f"--target {Target(target).value} runs .tflite models only; give the _int8.tflite "
                                 f"model, not {path.name}")
            from edgeact.fastpath.edgetpu import preflight

            info["edgetpu"] = preflight(path).to_dict()
    if op_times:
        from edgeact.fastpath.op_time import measured_op_times

        info["op_times"] = measured_op_times(path)
    return info


def _describe(path: Path) -> dict:
    if not path.exists():
        raise ModelLoadError(f"model {path} does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        from edgeact.formats.metadata import read_metadata

        return {**_with_coverage(read_tflite(path).to_dict(), path), "metadata": read_metadata(path).to_dict()}
    if suffix == ".onnx":
        from edgeact.formats.onnx_model import read_onnx

        return _with_coverage(read_onnx(path), path)
    raise InputError(f"{path} is not a .tflite or .onnx file; inspect takes converted models")


def _with_coverage(info: dict, path: Path) -> dict:
    """Add what the runtime's fast path (XNNPACK, ORT integer kernels) takes of the model."""
    from edgeact.errors import RuntimeUnavailableError
    from edgeact.fastpath.coverage import model_coverage

    try:
        info["coverage"] = model_coverage(path).to_dict()
    except RuntimeUnavailableError as exc:  # inspect still shows the graph without a runtime
        info["coverage"] = {"unavailable": str(exc)}
    return info
