"""The jitted device kernels of the pipeline: banded resizes, network passes, merges, alignment.

Every OpenCV-exact resize is a pair of bands (k source taps and weights per output row / column, built on the
host: :mod:`hrjax.pipeline.canvas`, :mod:`hrjax.ops.crop`), so the N patches of an image become fixed-shape
stacks of bands and each stage here is one batched gather-and-sum or network call (SPEC 11). A band pair is
passed as four arrays ``(iy, wy, ix, wx)``: rows' tap indices and weights, then columns'. The network
functions are jitted separately from the cheap resizes, so a new image size recompiles only those
(milliseconds), never the base network or the merge net, which compile once per bucket shape. No host code
here: chunking and sharding are :mod:`hrjax.pipeline.batching`'s.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hrjax.bases.base import Normalisation
from hrjax.models import mergenet
from hrjax.ops.banded import resize_2d
FLOAT64_EPS = 2.22e-16  # the reference's "max - min > eps" guards (SPEC 1.4, 3.2)


# --- device: small jitted kernels --------------------------------------------------------------------------

@jax.jit
def resize_maps(iy, wy, maps: jax.Array, ix, wx) -> jax.Array:
    """Per-sample resizes: (N, h, w) maps with bands (N, A, k), (N, B, k) -> (N, A, B)."""
    return jax.vmap(resize_2d)(maps, iy, wy, ix, wx)


def _masked_minmax_normalize(x: jax.Array, valid: jax.Array) -> jax.Array:
    """Min-max each sample over its valid region to [0, 1]; invalid entries become 0.

    A flat estimate makes the reference return the scalar 0 and crash later (SPEC 3.2 step 5, quirk Q8);
    hrjax returns an all-zero map instead.
    """
    axes = tuple(range(1, x.ndim))
    lo = jnp.min(jnp.where(valid, x, jnp.inf), axis=axes, keepdims=True)
    hi = jnp.max(jnp.where(valid, x, -jnp.inf), axis=axes, keepdims=True)
    rng = hi - lo
    ok = rng > FLOAT64_EPS
    out = (x - lo) / jnp.where(ok, rng, jnp.ones_like(rng))
    return jnp.where(valid & ok, out, jnp.zeros_like(out))


@jax.jit
def resize_images(iy, wy, ix, wx, images: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, A, B, C) with shared bands (A, k), (B, k): one resize for many images of one size."""
    return resize_2d(images, iy, wy, ix, wx, axes=(1, 2))


@functools.partial(jax.jit, static_argnames=("min_max",))
def _crop_values(y, valid, *, min_max: bool):
    return _masked_minmax_normalize(y, valid) if min_max else jnp.where(valid, y, jnp.zeros_like(y))


def estimate_to_crop_size(byi, byw, y, bxi, bxw, valid, *, min_max: bool = True):
    """SPEC 3.2 steps 4-5: network output -> crop size (CUBIC, on a canvas) -> min-max over the valid region
    (MiDaS), or kept raw with the canvas beyond the crop zeroed (LeReS: ``estimateleres`` has no min-max).

    Two programs, not one: in one, XLA:CPU fuses the resize's gathers into each consumer of the resized map
    (the min, the max and the output), which made this step 15x slower (a 384^2 estimate onto a 1600^2 canvas:
    203 ms, against 13 ms resize + 5 ms normalisation apart; same values)."""
    return _crop_values(resize_maps(byi, byw, y, bxi, bxw), valid, min_max=min_max)


def estimate_to_crop_and_merge_size(byi, byw, y, bxi, bxw, valid, cyi, cyw, cxi, cxw, *, min_max: bool = True):
    """SPEC 3.2 steps 4-5 then 3.1 step 1: network output -> crop size (CUBIC) -> [min-max] -> 1024^2 (CUBIC).
    ``b*`` resize into the crop-size canvas, ``c*`` from it to 1024^2 (bands, see the module docstring).

    Returns (the map at crop size on its canvas, the 1024^2 map).
    """
    at_crop = estimate_to_crop_size(byi, byw, y, bxi, bxw, valid, min_max=min_max)
    return at_crop, resize_maps(cyi, cyw, at_crop, cxi, cxw)


@functools.partial(jax.jit, static_argnames=("graphdef", "normalisation"))
def base_on_rgb(graphdef: nnx.GraphDef, state: nnx.State, rgb: jax.Array, *,
                normalisation: Normalisation) -> jax.Array:
    """Normalise as the base network's reference code does (SPEC 3.2 step 2; LeReS: docs/leres.md step 3) and
    run it: (N, h, w, 3) RGB in [0, 1] -> (N, h, w)."""
    x = rgb[..., ::-1] if normalisation.channel_order == "bgr" else rgb
    mean = jnp.asarray(normalisation.mean, jnp.float32).reshape(1, 1, 1, 3)
    std = jnp.asarray(normalisation.std, jnp.float32).reshape(1, 1, 1, 3)
    return nnx.merge(graphdef, state)((x - mean) / std)


# Buffer donation: the merge stages' outputs have the shape of one (N, 1024, 1024) input that the caller no
# longer needs, so XLA writes the result into it (4 MB per item saved; 128 MB per call at batch 32).
@functools.partial(jax.jit, static_argnames=("graphdef",), donate_argnames=("low",))
def double_from_estimates(graphdef, state, low, high):
    """SPEC 3.1 steps 3-4: merge(outer=low, inner=high), (y+1)/2, min-max over the 1024^2 map.
    ``low`` is donated (deleted by the call)."""
    y = mergenet.to_unit(mergenet.merge(graphdef, state, low, high))
    return _masked_minmax_normalize(y, jnp.ones(y.shape, bool))


FLOAT32_EPS = float(np.finfo(np.float32).eps)


def polyfit_line_like_numpy(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``np.polyfit(x, y, 1)`` per sample for float32 ``x``, ``y`` of shape (N, ...): returns (slope, intercept).

    Reference quirk (SPEC 5.4 step 6, measured on the goldens): the reference calls ``np.polyfit`` on
    float32 arrays, so numpy's default ``rcond = len(x) * eps(float32)`` = 0.125 for 1024^2 points. polyfit
    solves the least squares on the column-normalised Vandermonde matrix A = [x/|x|, 1/sqrt(n)], whose
    singular values are sqrt(1 +- rho), rho = sum(x)/(|x| sqrt(n)). When sqrt(1-|rho|)/sqrt(1+|rho|) < rcond
    (a map whose values sit far from 0 relative to their spread, the usual case: rho ~ 0.98) lstsq drops the
    small singular value and returns the rank-1 minimum-norm solution, not the least-squares line. Both
    branches are reproduced here in closed form (an all-zero x gets slope 0 and intercept mean(y)).
    """
    axes = tuple(range(1, x.ndim))
    n = float(np.prod(x.shape[1:]))
    rcond = n * FLOAT32_EPS
    nx = jnp.sqrt(jnp.sum(x * x, axis=axes))
    n1 = jnp.float32(np.sqrt(n))
    safe_nx = jnp.where(nx > 0, nx, jnp.ones_like(nx))
    rho = jnp.sum(x, axis=axes) / (safe_nx * n1)
    a0 = jnp.sum(x * y, axis=axes) / safe_nx
    a1 = jnp.sum(y, axis=axes) / n1
    r = jnp.abs(rho)
    sgn = jnp.where(rho < 0, -jnp.ones_like(rho), jnp.ones_like(rho))
    truncated = jnp.sqrt(jnp.maximum(1 - r, 0.0)) < rcond * jnp.sqrt(1 + r)
    # rank 1: c = v v^T A^T y / s1^2 with v = [1, sgn]/sqrt(2), s1^2 = 1 + |rho|
    c0_trunc = (a0 + sgn * a1) / (2 * (1 + r))
    c1_trunc = sgn * c0_trunc
    # rank 2: solve [[1, rho], [rho, 1]] c = [a0, a1]
    det = jnp.where(truncated, jnp.ones_like(rho), 1 - rho * rho)
    c0_full = (a0 - rho * a1) / det
    c1_full = (a1 - rho * a0) / det
    slope = jnp.where(truncated, c0_trunc, c0_full) / safe_nx
    intercept = jnp.where(truncated, c1_trunc, c1_full) / n1
    zero = nx <= 0
    return (jnp.where(zero, jnp.zeros_like(slope), slope),
            jnp.where(zero, jnp.mean(y, axis=axes), intercept))


@functools.partial(jax.jit, static_argnames=("graphdef",), donate_argnames=("base",))
def merge_into_base(graphdef, state, base, patch):
    """SPEC 5.4 steps 5-6: m = (merge(outer=base crop, inner=patch double) + 1)/2 (no min-max), then the
    reference's linear alignment base ~ alpha*m + beta (see :func:`polyfit_line_like_numpy`).
    Returns (m, alpha, beta); ``base`` is donated (deleted by the call)."""
    m = mergenet.to_unit(mergenet.merge(graphdef, state, base, patch))
    alpha, beta = polyfit_line_like_numpy(m, base)
    return m, alpha, beta


@jax.jit
def aligned_to_canvas(fyi, fyw, m, fxi, fxw, alpha, beta):
    """SPEC 5.4 steps 6-7: P = alpha*m + beta, CUBIC-resized from 1024^2 to the patch size (on a canvas)."""
    p = alpha[:, None, None] * m + beta[:, None, None]
    return resize_maps(fyi, fyw, p, fxi, fxw)
