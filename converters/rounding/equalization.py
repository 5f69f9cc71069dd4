"""Cross-layer equalization as a default INT8 candidate: the equalized kernels and biases as changes
each exporter writes into its own float model, then calibrates and judges.

    equalized, (result,) = run_pipeline(folded, ["equalize"], None)    # converters.pipeline runs the pass
    changes = equalization_changes(folded, equalized)                   # [KernelChange...], [] when no pair

The `equalize` pass (converters.passes.equalize, DFQ) rescales each conv -> ReLU -> conv pair
per channel so that one channel blown up by the first layer (and scaled back down by the second)
no longer stretches the per-tensor activation grid over the others; the float model computes the
same. It changes activation ranges, so unlike the weight steps it needs its own calibration: each
exporter snaps these kernels into a copy of its float model by content (converters.rounding.placement),
calibrates that copy, quantizes it with round-to-nearest weights, and keeps it only where the judge
samples resolve a gain over the model it kept otherwise (converters.rounding.judge.choose_step).
A change any exporter cannot place in full is not tried there: half an equalized pair computes a
different function.
"""
from __future__ import annotations

import numpy as np

from .layers import KernelChange

EQUALIZATION = "cross-layer equalization"  # the step's name in the report


def equalization_changes(model, equalized) -> list[KernelChange]:
    """The kernels and biases that differ between `model` (a folded Keras model) and `equalized`
    (the same model after the equalize pass, converters.pipeline runs it), in Keras layout."""
    if equalized is None:
        return []
    changes, names = [], {layer.name for layer in equalized.layers}
    for layer in model.layers:
        if not hasattr(layer, "kernel") or layer.name not in names:
            continue
        new = equalized.get_layer(layer.name)
        kernel, new_kernel = layer.kernel.numpy(), new.kernel.numpy()
        bias = layer.bias.numpy() if getattr(layer, "bias", None) is not None else None
        new_bias = new.bias.numpy() if bias is not None else None
        if np.array_equal(kernel, new_kernel) and (bias is None or np.array_equal(bias, new_bias)):
            continue
        changes.append(KernelChange(layer.name, kernel, new_kernel.astype(np.float32), bias,
                                    None if bias is None else new_bias.astype(np.float32)))
    return changes


def fully_placed(found: dict, changes: list) -> bool:
    """Whether a snap (converters.tflite.weights / converters.onnx.weights) wrote every kernel and bias."""
    biases = sum(1 for c in changes if c.new_bias is not None)
    return not found.get("unmatched") and found.get("snapped") == len(changes) and found.get("biases") == biases


def unplaced(found: dict, changes: list) -> str:
    """What a snap left out, in a few words."""
    missing = list(found.get("unmatched") or [])
    return (", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")) if missing \
        else f"{found.get('snapped', 0)} of {len(changes)} kernels written"


__all__ = ["EQUALIZATION", "equalization_changes", "fully_placed", "unplaced"]
