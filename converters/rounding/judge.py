"""Which weight step an exporter keeps: each candidate INT8 model, run on the judge samples, against
the one without, sample by sample.

    choice = choose_step(reference, {"none": outputs, "rounding": outputs, ...})
    choice["kept"]   # the step written

The judge samples are calibration samples the rounding never fitted on and convert's held-out
samples are not among them (converters.rounding.layers). A step is kept only when the 95 %
bootstrap interval of its mean per-sample gain (the noise without it over the noise with it,
in dB) lies above zero and it does not lower the SQNR of all judge samples together: at 8 bits
the gains are tenths of a dB to a few dB on trained CNNs, and a step whose gain the judge
samples cannot tell from noise is not kept.
"""
from __future__ import annotations

import numpy as np

NONE = "none"
ROUNDS = 1000


def _per_sample(outputs: dict, reference: dict) -> np.ndarray:
    """Noise energy of each sample, summed over the outputs."""
    total = None
    for name, ref in reference.items():
        diff = np.asarray(outputs[name], np.float64) - np.asarray(ref, np.float64)
        energy = np.sum(diff.reshape(len(diff), -1) ** 2, axis=1)
        total = energy if total is None else total + energy
    return total


def choose_step(reference: dict, outputs: dict, seed: int = 0, rounds: int = ROUNDS) -> dict:
    """{"kept", "samples", "sqnr_db": {step: dB}, "gain_db": {step: [low, high]}} for outputs by step
    (NONE among them), each a dict of output name -> array on the same samples as `reference`.

    gain_db is the 95 % bootstrap interval of the mean per-sample gain, 10 log10 of the noise energy
    without the step over the noise energy with it: the SQNR of all samples together is the sum of a
    few samples' noise (softmax scores near a tie), and 100 samples put it anywhere in +-5 dB."""
    signal = sum(float(np.sum(np.asarray(r, np.float64) ** 2)) for r in reference.values())
    noise = {step: _per_sample(found, reference) for step, found in outputs.items()}
    count = len(noise[NONE])
    floor = 1e-12 * signal / max(count, 1)  # a sample both reproduce exactly gains nothing
    sqnr = {step: float(10 * np.log10(signal / max(float(n.sum()), 1e-30))) for step, n in noise.items()}
    picks = np.random.default_rng(seed).integers(0, count, (rounds, count))
    gains, kept = {}, NONE
    for step, n in noise.items():
        if step == NONE:
            continue
        per_sample = 10 * np.log10((noise[NONE] + floor) / (n + floor))
        low, high = np.percentile(per_sample[picks].mean(axis=1), [2.5, 97.5])
        gains[step] = [round(float(low), 3), round(float(high), 3)]
        if low > 0 and sqnr[step] >= sqnr[NONE] and (kept == NONE or sqnr[step] > sqnr[kept]):
            kept = step
    return {"kept": kept, "samples": count, "sqnr_db": {k: round(v, 3) for k, v in sqnr.items()}, "gain_db": gains}


def keep_step(mode: str, reference: dict, none, candidates: dict, build, run) -> tuple[object, dict]:
    """The model of the step to keep and why, for an exporter: `none` is its model without a step,
    `build(changes)` gives (model, what was found of the changes) per candidate, `run(model)` its
    outputs on the judge samples. `all` mode keeps the fullest candidate without running anything."""
    built = {NONE: (none, {})}
    for name, changes in candidates.items():
        built[name] = build(changes)
    if mode == "all":
        choice = {"kept": next(iter(candidates))}
    else:
        choice = choose_step(reference, {name: run(model) for name, (model, _) in built.items()})
    model, found = built[choice["kept"]]
    choice.update(found)
    return model, choice


def timed(step: dict | None, start: float) -> dict | None:
    """`step` (a verdict, or None where nothing was tried) with the seconds since `start`
    (time.perf_counter()): what building, quantizing and judging the step cost, in the report."""
    import time

    if step is not None:
        step["seconds"] = round(time.perf_counter() - start, 2)
    return step


__all__ = ["NONE", "choose_step", "keep_step", "timed"]
