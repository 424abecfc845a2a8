"""The guided filter of the merge-net training loader (He et al.; SPEC-TRAINING 3), on the host in NumPy.

``GF(guide, src, r, eps)``: the guide is the **first** argument. With ``B(X)`` the sum of X over the
(2r+1)^2 window clipped at the borders and ``N = B(1)``::

    muI = B(I)/N, mup = B(p)/N, cov = B(I*p)/N - muI*mup, var = B(I*I)/N - muI^2
    a = cov/(var + eps), b = mup - a*muI, q = (B(a)/N)*I + B(b)/N

``B`` is computed as the reference does: a cumulative sum along rows, differenced, then the same along
columns. ``box_dtype`` is the dtype of the first-stage box sums (of I, p, I*p, I*I): the reference computes
them as float32 cumulative sums of its float32 inputs and everything after the division by N in float64;
``box_dtype=np.float64`` computes them in float64 too (SPEC-TRAINING 3: the two differ by <~1e-5).
"""

from __future__ import annotations

import numpy as np


def box_sum(x: np.ndarray, r: int, dtype=None) -> np.ndarray:
    """Sum of ``x`` (H, W) over the (2r+1)^2 window around each pixel, clipped at the image borders.

    Row i sums rows max(0, i-r) .. min(H-1, i+r), columns likewise. Needs H, W >= 2r+2 (the reference's
    cumsum-difference formula; smaller maps raise ValueError). Accumulates in ``dtype`` (default x.dtype).
    """
    x = np.asarray(x, dtype=dtype if dtype is not None else None)
    h, w = x.shape
    if h < 2 * r + 2 or w < 2 * r + 2:
        raise ValueError(f"guided filter radius {r} needs maps of at least {2 * r + 2}^2, got {h}x{w}")
    return _diff(np.cumsum(_diff(np.cumsum(x, axis=0), r, 0), axis=1), r, 1)


def _diff(c: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Window sums from a cumulative sum ``c`` along ``axis`` (the reference's boxfilter slicing)."""
    c = np.moveaxis(c, axis, 0)
    top = c[r:2 * r + 1]
    mid = c[2 * r + 1:] - c[:-2 * r - 1]
    bottom = c[-1:] - c[-2 * r - 1:-r - 1]
    return np.moveaxis(np.concatenate([top, mid, bottom], axis=0), 0, axis)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int = 64, eps: float = 1e-8,
                  box_dtype=np.float32) -> np.ndarray:
    """``GF(guide, src, r, eps)`` of two (H, W) maps; returns float32 (the loader casts the result).

    ``box_dtype=np.float32`` replicates the reference's numerics (float32 box sums of float32 inputs, the
    rest in float64); ``np.float64`` does every step in float64.
    """
    I = np.asarray(guide, box_dtype)
    p = np.asarray(src, box_dtype)
    if I.shape != p.shape or I.ndim != 2:
        raise ValueError(f"guide and source must be equal-shape 2-D maps, got {I.shape} and {p.shape}")
    n = box_sum(np.ones(I.shape, np.float64), r)
    mu_i = box_sum(I, r) / n
    mu_p = box_sum(p, r) / n
    cov = box_sum(I * p, r) / n - mu_i * mu_p
    var = box_sum(I * I, r) / n - mu_i * mu_i
    a = cov / (var + eps)
    b = mu_p - a * mu_i
    q = (box_sum(a, r) / n) * I + box_sum(b, r) / n
    return q.astype(np.float32)
