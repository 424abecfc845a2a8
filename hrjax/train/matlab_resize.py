"""MATLAB ``imresize(A, [h w])`` with its defaults (bicubic, antialiasing when shrinking) for integer images.

Used by the dataset generation (SPEC-TRAINING 1 step 3), which resizes uint16 crops with MATLAB. Written from
MATLAB's documented algorithm (imresize.m: ``contributions`` and ``cubic``):

- Keys cubic with a = -0.5; when shrinking by ``scale < 1`` the kernel is widened to ``scale*k(scale*x)``
  (width 4/scale): the antialiasing;
- output pixel u (1-based) samples ``x = u/scale + 0.5*(1 - 1/scale)``; taps ``floor(x - width/2) + 0..P-1``
  with ``P = ceil(width) + 2``; weights normalised to sum 1; out-of-range taps mirror (symmetric padding);
- dimensions are resized one after the other, the one with the smallest scale first (rows first on ties);
  each pass returns the input class, i.e. the intermediate is rounded (half away from zero) and saturated
  (unsure: this is how ``imresizemex`` treats integer classes as far as I know; it matters by at most 1 LSB).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def matlab_resize_matrix(n_in: int, n_out: int, antialias: bool = True) -> np.ndarray:
    """(n_out, n_in) float64 weights of MATLAB's bicubic imresize along one axis (read-only, cached)."""
    scale = n_out / n_in
    width = 4.0
    if scale < 1 and antialias:
        def kernel(x):
            return scale * _cubic(scale * x)
        width = width / scale
    else:
        kernel = _cubic
    u = np.arange(1, n_out + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    p = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(p)[None, :]
    w = kernel(u[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(1, n_in + 1), np.arange(n_in, 0, -1)])
    idx = aux[np.mod(idx.astype(np.int64) - 1, len(aux))] - 1
    m = np.zeros((n_out, n_in), np.float64)
    np.add.at(m, (np.repeat(np.arange(n_out), p), idx.ravel()), w.ravel())
    m.setflags(write=False)
    return m


def _to_class(v: np.ndarray, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    r = np.where(v >= 0, np.floor(v + 0.5), np.ceil(v - 0.5))   # MATLAB round: half away from zero
    return np.clip(r, info.min, info.max).astype(dtype)


def imresize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``imresize(img, [h w])`` of a uint8/uint16 (H, W) or (H, W, C) image; returns the same dtype."""
    img = np.asarray(img)
    if img.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"imresize expects uint8 or uint16, got {img.dtype}")
    out_h, out_w = (int(s) for s in size)
    h, w = img.shape[:2]
    scales = (out_h / h, out_w / w)
    x = img
    for dim in sorted((0, 1), key=lambda d: scales[d]):     # stable: rows first on ties
        n_in, n_out = x.shape[dim], (out_h, out_w)[dim]
        if n_in == n_out:
            continue
        m = matlab_resize_matrix(n_in, n_out)
        y = np.tensordot(m, np.moveaxis(x.astype(np.float64), dim, 0), axes=(1, 0))
        x = _to_class(np.moveaxis(y, 0, dim), img.dtype)
    return x
