"""Compare a converted model's outputs with the float model's, and judge them against tolerances."""
from __future__ import annotations

import numpy as np

from edgeact.config import Tolerances
from edgeact.metrics import agreement


def compare_outputs(reference: list[np.ndarray], candidate: list[np.ndarray], names: list[str],
                    tolerances: Tolerances, exact: bool = False) -> list[dict]:
    """One check per output: agreement metrics and whether they pass.

    Args:
        exact: the candidate is a float export, held to `float_max_abs_diff` instead of the
            INT8 tolerances on top-1 agreement and cosine similarity.
    """
    checks = []
    for name, ref, cand in zip(names, reference, candidate):
        metrics = agreement(ref, np.asarray(cand).reshape(ref.shape)).to_dict()
        if exact:
            passed = metrics["max_abs_diff"] <= tolerances.float_max_abs_diff
            rule = f"max abs diff <= {tolerances.float_max_abs_diff:g}"
        else:
            top1 = metrics["top1_agreement"]
            passed = metrics["cosine"] >= tolerances.min_cosine and (
                top1 is None or top1 >= tolerances.min_top1_agreement)
            rule = f"cosine >= {tolerances.min_cosine:g}" + (
                f", top-1 agreement >= {tolerances.min_top1_agreement:g}" if top1 is not None else "")
        checks.append({"output": name, **metrics, "rule": rule, "passed": bool(passed)})
    return checks


def predict_keras(model, batch: np.ndarray) -> list[np.ndarray]:
    """Float outputs of a Keras model (or SavedModel signature) as a list of arrays."""
    if hasattr(model, "predict"):
        out = model.predict(batch, verbose=0, batch_size=64)
        return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]
    # A SavedModel serving signature takes its input by name and returns a dict by output name.
    (name,) = model.structured_input_signature[1]
    outputs = []
    for start in range(0, len(batch), 64):
        result = model(**{name: batch[start:start + 64]})
        outputs.append([np.asarray(v) for _, v in sorted(result.items())])
    return [np.concatenate(parts) for parts in zip(*outputs)]
