"""Bilinear x2 upsampling exactly as PyTorch's ``F.interpolate(mode="bilinear")`` (SPEC 6.1, 9.2).

Separable gathers with host-precomputed indices and float32 weights, like ATen's CPU kernel: for each output
index, two source taps ``i0``, ``i1 = min(i0 + 1, n - 1)`` and weights ``(1 - l, l)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def _taps(n_in: int, n_out: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dst = np.arange(n_out, dtype=np.float32)
    if align_corners:
        # src = dst * (in - 1) / (out - 1)   (fusion blocks, SPEC 6.1)
        scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0.0)
        src = dst * scale
    else:
        # src = (dst + 0.5) * in / out - 0.5, clamped at 0   (MiDaS head, SPEC 6.1 / 9.2)
        scale = np.float32(n_in / n_out)
        src = np.maximum((dst + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int32), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, lam


def _lerp_axis(x: jax.Array, axis: int, n_out: int, align_corners: bool) -> jax.Array:
    i0, i1, lam = _taps(x.shape[axis], n_out, align_corners)
    shape = [1] * x.ndim
    shape[axis] = n_out
    w1 = jnp.asarray(lam.reshape(shape), x.dtype)
    w0 = jnp.asarray((np.float32(1.0) - lam).reshape(shape), x.dtype)
    return jnp.take(x, i0, axis=axis) * w0 + jnp.take(x, i1, axis=axis) * w1


def resize_bilinear(x: jax.Array, size: tuple[int, int], *, align_corners: bool) -> jax.Array:
    """(N, H, W, C) -> (N, size[0], size[1], C), ``F.interpolate(x, size, mode="bilinear")``.

    With ``align_corners=True`` a ``scale_factor`` given to torch instead of ``size`` makes no difference (the
    scale is (in - 1) / (out - 1) either way), so this also covers ``scale_factor=2`` (DPT fusion blocks)."""
    return _lerp_axis(_lerp_axis(x, 1, int(size[0]), align_corners), 2, int(size[1]), align_corners)


def upsample_bilinear_x2(x: jax.Array, *, align_corners: bool) -> jax.Array:
    """(N, H, W, C) -> (N, 2H, 2W, C)."""
    _, h, w, _ = x.shape
    return resize_bilinear(x, (2 * h, 2 * w), align_corners=align_corners)
