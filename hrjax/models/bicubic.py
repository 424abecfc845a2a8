"""PyTorch's ``F.interpolate(mode="bicubic", align_corners=False, antialias=False)``, host (numpy) and device (JAX).

DINOv2 resizes its 37 x 37 grid of position embeddings this way whenever the input is not 518 x 518
(``interpolate_pos_encoding`` in Depth-Anything-V2 ``depth_anything_v2/dinov2.py``). ``jax.image.resize`` cannot
stand in for it: its cubic kernel is Keys with A = -0.5 and it has no notion of torch's *scale_factor*, and
``hrjax.ops.resize`` is OpenCV's variant (its own float32 rounding of the source position). What ATen's CPU kernel
(``UpSampleKernel.cpp``, ``HelperInterpCubic``) does, per axis:

- ``scale``: with an explicit ``scale_factor`` s it is ``float32(1.0 / s)`` (computed in double, then rounded);
  without one, ``float32(n_in) / n_out``. DINOv2 passes ``scale_factor`` = ``(n_out + 0.1) / n_in``, so the source
  positions are *not* those of a plain resize to ``n_out`` (the 0.1 offset, dinov2.py ``interpolate_offset``).
- source position ``src = scale * (d + 0.5) - 0.5`` in float32 (no clamping at 0 for cubic);
  ``i = min(floor(src), n_in - 1)``, ``t = clamp(src - i, 0, 1)``.
- taps ``i - 1 .. i + 2`` clamped to ``[0, n_in - 1]`` (replicate border), Keys weights with A = -0.75 in float32:
  ``w0 = k2(t + 1)``, ``w1 = k1(t)``, ``w2 = k1(1 - t)``, ``w3 = k2(2 - t)`` with
  ``k1(x) = ((A + 2) x - (A + 3)) x^2 + 1`` and ``k2(x) = ((A x - 5A) x + 8A) x - 4A``.
- 2-D: ``out[y, x] = sum_i wy_i * (sum_j wx_j * in[iy_i, ix_j])``, each sum accumulated in order in float32 (the
  inner, last axis first). Both twins below keep that order, so they agree with torch to float32 round-off.
- the output size is ``floor(n_in * s)`` (Python double), as ``F.interpolate`` computes it.

The twins evaluate these formulas as written in ATen's source. The compiled ATen CPU kernels contract some of the
multiply-adds into FMAs (the source position and the outer-tap polynomial, measured on torch 2.13 CPU by resizing
unit impulses), so their weights differ from the unfused float32 values by up to ~2.4e-6 and a resized map by ~2e-6
of its magnitude: float32 round-off, far below the 1e-4 parity tolerance (golden README 7), and it depends on the
CPU that ran the reference. A wrong scale (no 0.1 offset) changes the map by ~1e-1 (tests/test_dav2.py).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

A = np.float32(-0.75)


def output_size(n_in: int, scale_factor: float) -> int:
    """``F.interpolate``'s output length for ``scale_factor`` (``floor`` of the double product)."""
    return int(math.floor(float(n_in) * float(scale_factor)))


def _k1(x: np.ndarray) -> np.ndarray:  # |x| <= 1
    return ((A + np.float32(2.0)) * x - (A + np.float32(3.0))) * x * x + np.float32(1.0)


def _k2(x: np.ndarray) -> np.ndarray:  # 1 < |x| < 2
    return ((A * x - np.float32(5.0) * A) * x + np.float32(8.0) * A) * x - np.float32(4.0) * A


@functools.lru_cache(maxsize=64)
def taps(n_in: int, n_out: int, scale_factor: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indices (n_out, 4) int32, weights (n_out, 4) float32) of one axis, exactly as ATen computes them.

    ``scale_factor`` is the one passed to ``F.interpolate`` (None: a resize to ``n_out`` given as a size).
    Read-only (cached)."""
    n_in, n_out = int(n_in), int(n_out)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got n_in={n_in}, n_out={n_out}")
    if scale_factor is not None and scale_factor > 0:
        scale = np.float32(1.0 / float(scale_factor))
    else:
        scale = np.float32(n_in) / np.float32(n_out)
    src = scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    base = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    t = np.clip(src - base.astype(np.float32), np.float32(0.0), np.float32(1.0)).astype(np.float32)
    one = np.float32(1.0)
    w = np.stack([_k2(t + one), _k1(t), _k1(one - t), _k2((one - t) + one)], axis=-1).astype(np.float32)
    idx = np.clip(base[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1).astype(np.int32)
    idx.flags.writeable = False
    w.flags.writeable = False
    return idx, w


def _axis_np(x: np.ndarray, axis: int, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    acc = np.take(x, idx[:, 0], axis=axis) * w[:, 0].reshape(shape)
    for j in range(1, 4):
        acc = acc + np.take(x, idx[:, j], axis=axis) * w[:, j].reshape(shape)
    return acc


def resize_np(x: np.ndarray, size: tuple[int, int], scale_factor: tuple[float, float] | None = None) -> np.ndarray:
    """Host twin: ``x`` (H, W, ...) float32 -> (size[0], size[1], ...) float32, torch's bicubic (module docstring).

    ``scale_factor`` = (s_h, s_w) as passed to ``F.interpolate`` (None: ``size`` was passed instead)."""
    x = np.asarray(x, np.float32)
    sh, sw = scale_factor if scale_factor is not None else (None, None)
    iy, wy = taps(x.shape[0], size[0], sh)
    ix, wx = taps(x.shape[1], size[1], sw)
    return _axis_np(_axis_np(x, 1, ix, wx), 0, iy, wy)  # the inner (last) spatial axis first, like ATen


def _axis(x: jax.Array, axis: int, idx: np.ndarray, w: np.ndarray) -> jax.Array:
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    acc = jnp.take(x, idx[:, 0], axis=axis) * jnp.asarray(w[:, 0].reshape(shape), x.dtype)
    for j in range(1, 4):
        acc = acc + jnp.take(x, idx[:, j], axis=axis) * jnp.asarray(w[:, j].reshape(shape), x.dtype)
    return acc


def resize(x: jax.Array, size: tuple[int, int], scale_factor: tuple[float, float] | None = None) -> jax.Array:
    """Device twin of :func:`resize_np` (same taps, same summation order); jittable, ``size`` static."""
    sh, sw = scale_factor if scale_factor is not None else (None, None)
    iy, wy = taps(x.shape[0], size[0], sh)
    ix, wx = taps(x.shape[1], size[1], sw)
    return _axis(_axis(x, 1, ix, wx), 0, iy, wy)
