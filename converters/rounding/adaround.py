"""Up or down: each weight's rounding direction chosen to minimise its layer's output error.

AdaRound's problem (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training
Quantization", ICML 2020), for a convolution or dense layer y = W^T x with the per-channel
symmetric grid both converters give its kernel (s_c = max|W_c| / L, L = 127, or 64 for
ONNX's 7-bit weights):

    choose q_kc in {floor(w_kc / s_c), ceil(w_kc / s_c)}
    minimising  E = sum_c  d_c^T H d_c,     d_c = s_c q_c - w_c,   H = mean of x x^T

E is the mean squared error of the layer's pre-activation output over the calibration inputs
(x: an input patch, one row of the im2col matrix). AdaRound relaxes q and descends a
sigmoid-regularised loss by SGD; here E is a quadratic in d, so the search is exact greedy
coordinate descent from round-to-nearest: a weight is flipped to its other neighbour when that
lowers E, computed from the gradient g = H d kept up to date by rank-one steps, until a full
pass flips nothing. Every accepted flip lowers E, so the result is never worse than
round-to-nearest on the calibration inputs; whether it is better on other inputs is measured
(`held_out_errors`), and `converters.rounding.layers` keeps a layer's integers only when it is.

Scale preserved: each channel's largest weight keeps its value (and its integer, +-L), so the
converters compute the same s_c from the snapped kernel and their own round-to-nearest gives
back exactly the integers chosen here (`snapped`).

Depthwise layers have one H per channel (C, K, K); the others one H shared by all channels.
Bias correction of the same layer: the mean output error of the chosen integers, mu^T d_c
(mu: the mean input), is subtracted from the bias; on held-out inputs that changes the error
by -2 m.(d^T mu_h) + |m|^2, so it too is kept only where it helps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_PASSES = 6


@dataclass
class InputMoments:
    """A layer's input statistics over patch rows: H = mean x x^T, and the mean x.

    hessian: (K, K), or (C, K, K) per channel; mean: (K,), or (C, K).
    """

    hessian: np.ndarray
    mean: np.ndarray
    rows: int

    @property
    def per_channel(self) -> bool:
        return self.hessian.ndim == 3


class MomentSum:
    """Running sums of x x^T and x over patch rows, in float64: batch after batch, bounded memory."""

    def __init__(self) -> None:
        self.outer = None
        self.total = None
        self.rows = 0

    def add(self, rows: np.ndarray) -> None:
        """rows: (R, K) patches of a shared-kernel layer, or (R, K, C) of a depthwise one.

        One batch's products in float32 (BLAS; within 1e-6 of float64 on a batch), summed over
        batches in float64."""
        rows = np.asarray(rows, np.float32)
        if rows.ndim == 2:
            outer, total = rows.T @ rows, rows.sum(axis=0, dtype=np.float64)
        else:
            by_channel = np.ascontiguousarray(rows.transpose(2, 1, 0))  # (C, K, R)
            outer, total = by_channel @ by_channel.transpose(0, 2, 1), rows.sum(axis=0, dtype=np.float64).T
        outer = outer.astype(np.float64)
        self.outer = outer if self.outer is None else self.outer + outer
        self.total = total if self.total is None else self.total + total
        self.rows += len(rows)

    def moments(self) -> InputMoments:
        if not self.rows:
            raise ValueError("no input rows were added")
        outer = self.outer / self.rows
        # exactly symmetric (a float32 product of X^T X need not be), so the solver may read a row for a column
        outer = (outer + np.swapaxes(outer, -1, -2)) / 2.0
        return InputMoments(outer, self.total / self.rows, self.rows)


def channel_scale(kernel: np.ndarray, levels: int) -> np.ndarray:
    """s_c = max|W_c| / levels per output channel (column), in float32 as the converters compute it."""
    peak = np.max(np.abs(kernel.astype(np.float32)), axis=0)
    return np.where(peak > 0, peak / np.float32(levels), np.float32(1)).astype(np.float32)


def nearest(kernel: np.ndarray, levels: int) -> np.ndarray:
    """Round-to-nearest integers (K, C): what both converters do by themselves."""
    scale = channel_scale(kernel, levels)
    return np.clip(np.rint(kernel.astype(np.float32) / scale), -levels, levels).astype(np.int32)


def _gradient(moments: InputMoments, delta: np.ndarray) -> np.ndarray:
    if moments.per_channel:
        return np.einsum("ckl,lc->kc", moments.hessian, delta, optimize=True)
    return moments.hessian @ delta


def output_error(kernel: np.ndarray, q: np.ndarray, levels: int, moments: InputMoments) -> float:
    """E: the mean squared pre-activation error, summed over channels, of integers q on these inputs."""
    delta = _delta(kernel, q, levels)
    return float(np.sum(delta * _gradient(moments, delta)))


def _delta(kernel: np.ndarray, q: np.ndarray, levels: int) -> np.ndarray:
    scale = channel_scale(kernel, levels).astype(np.float64)
    return q * scale - kernel.astype(np.float64)


def adaround(kernel: np.ndarray, moments: InputMoments, levels: int,
             max_passes: int = MAX_PASSES) -> np.ndarray:
    """The integers (K, C) minimising E from round-to-nearest, each weight floor or ceil of w/s."""
    w = kernel.astype(np.float64)
    scale = channel_scale(kernel, levels).astype(np.float64)
    ratio = w / scale
    low = np.floor(ratio)
    q = nearest(kernel, levels).astype(np.float64)
    other = np.where(q == low, low + 1, low)
    peak = np.abs(w) == np.max(np.abs(w), axis=0, keepdims=True)
    movable = (ratio != low) & ~peak & (np.abs(other) <= levels)
    hessian = moments.hessian
    diag = np.diagonal(hessian, axis1=-2, axis2=-1)  # (K,) or (C, K)
    # g kept channel-major, (C, K): a flip of weight k in channels `cols` updates whole rows
    # g[cols], contiguous, where the (K, C) layout gathered scattered columns (4.8 s -> 0.5 s at K = C = 1024).
    g = np.ascontiguousarray(_gradient(moments, (q - ratio) * scale).T)
    for _ in range(max_passes):
        flips = 0
        for k in np.flatnonzero(movable.any(axis=1)):
            step = (other[k] - q[k]) * scale  # (C,)
            curvature = step * step * (diag[:, k] if moments.per_channel else diag[k])
            gain = 2.0 * step * g[:, k] + curvature
            cols = np.flatnonzero(movable[k] & (gain < -1e-9 * curvature))
            if not len(cols):
                continue
            if moments.per_channel:
                g[cols] += hessian[cols, k, :] * step[cols, None]  # H symmetric: row k is column k
            else:
                g[cols] += step[cols, None] * hessian[k]
            q[k, cols], other[k, cols] = other[k, cols], q[k, cols]
            flips += len(cols)
        if not flips:
            break
    return q.astype(np.int32)


def snapped(kernel: np.ndarray, q: np.ndarray, levels: int) -> np.ndarray:
    """The float kernel on the grid at integers q: round-to-nearest of it gives q back.

    Each channel's largest weight keeps its exact value, so its scale is computed unchanged."""
    scale = channel_scale(kernel, levels)
    out = (q.astype(np.float32) * scale).astype(np.float32)
    peak = np.abs(kernel) == np.max(np.abs(kernel), axis=0, keepdims=True)
    out[peak] = kernel[peak]
    return out


def bias_shift(kernel: np.ndarray, q: np.ndarray, levels: int, moments: InputMoments) -> np.ndarray:
    """m_c = mu^T d_c: the mean output error integers q leave in each channel (subtract it from the bias)."""
    delta = _delta(kernel, q, levels)
    if moments.per_channel:
        return np.einsum("ck,kc->c", moments.mean, delta)
    return moments.mean @ delta


def corrected_error(kernel: np.ndarray, q: np.ndarray, levels: int, moments: InputMoments,
                    shift: np.ndarray) -> float:
    """E on these inputs after `shift` is subtracted from the bias: E - 2 m.(mean error) + |m|^2."""
    return (output_error(kernel, q, levels, moments) - 2.0 * float(shift @ bias_shift(kernel, q, levels, moments))
            + float(shift @ shift))


__all__ = ["InputMoments", "MomentSum", "adaround", "bias_shift", "channel_scale", "corrected_error", "nearest",
           "output_error", "snapped"]
