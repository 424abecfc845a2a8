"""Batched, jitted device work of the pipeline: crop+resize operators, network passes, merges, alignment.

Every OpenCV-exact resize is a pair of dense interpolation matrices built on the host (``resize_matrix``); a
crop followed by a resize is the same pair with zeros outside the crop (``hrjax.ops.crop``), and a resize to a size that differs
per patch is written into a fixed canvas with zero rows beyond the patch. So the N patches of an image become
fixed-shape stacks of operators and each stage is one batched einsum or network call (SPEC 11). The
network functions are jitted separately from the cheap resize einsums, so a new image size recompiles only
the einsums (milliseconds), never MiDaS or the merge net, which compile once per bucket shape.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from hrjax.models import mergenet
from hrjax.models.midas_v21 import check_input
from hrjax.ops.resize import Variant, cv2_variant, resize_matrix
from hrjax.pipeline.midas_input import IMAGENET_MEAN, IMAGENET_STD

HIGHEST = jax.lax.Precision.HIGHEST
MERGE_SIZE = mergenet.MERGE_SIZE
FLOAT64_EPS = 2.22e-16  # the reference's "max - min > eps" guards (SPEC 1.4, 3.2)


# --- host: operator matrices ------------------------------------------------------------------------------

# Which of cv2's two CUBIC code paths the reference's call took (see hrjax.ops.resize): float64 images always
# run OpenCV's generic code (float32 positions/weights), float32 maps of both sides >= 4 run IPP (double).
def variant(dtype, src_hw: tuple[int, int], channels: int = 1) -> Variant:
    return cv2_variant("cubic", dtype, src_hw, channels)


def resize_into_canvas(n_in: int, n_out: int, canvas: int, var: Variant) -> np.ndarray:
    """(canvas, n_in): CUBIC resize n_in -> n_out written to the first n_out rows; the rest is zero."""
    m = np.zeros((canvas, n_in), np.float32)
    m[:n_out] = resize_matrix(n_in, n_out, "cubic", var)
    return m


def resize_from_canvas(n_in: int, n_out: int, canvas: int, var: Variant) -> np.ndarray:
    """(n_out, canvas): CUBIC resize of the first n_in entries of a canvas to n_out; the rest is ignored."""
    m = np.zeros((n_out, canvas), np.float32)
    m[:, :n_in] = resize_matrix(n_in, n_out, "cubic", var)
    return m


def canvas_size(n: int, quantum: int = 64) -> int:
    """Round a per-patch size up so nearby sizes share one compiled shape."""
    return -(-n // quantum) * quantum


# --- device: small jitted kernels --------------------------------------------------------------------------

@jax.jit
def resize_maps(ay: jax.Array, maps: jax.Array, ax: jax.Array) -> jax.Array:
    """Per-sample (N, A, h) @ (N, h, w) @ (N, B, w)^T -> (N, A, B)."""
    t = jnp.einsum("nah,nhw->naw", ay, maps, precision=HIGHEST)
    return jnp.einsum("naw,nbw->nab", t, ax, precision=HIGHEST)


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
def estimate_to_crop_and_merge_size(by, y, bx, valid, cy, cx):
    """SPEC 3.2 steps 4-5 then 3.1 step 1: network output -> crop size (CUBIC) -> min-max -> 1024^2 (CUBIC).

    Returns (the min-maxed map on its canvas, the 1024^2 map).
    """
    at_crop = _masked_minmax_normalize(resize_maps(by, y, bx), valid)
    return at_crop, resize_maps(cy, at_crop, cx)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def midas_on_rgb(graphdef: nnx.GraphDef, state: nnx.State, rgb: jax.Array) -> jax.Array:
    """ImageNet-normalise (SPEC 3.2 step 2) and run MiDaS: (N, h, w, 3) RGB in [0, 1] -> (N, h, w)."""
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32).reshape(1, 1, 1, 3)
    std = jnp.asarray(IMAGENET_STD, jnp.float32).reshape(1, 1, 1, 3)
    return nnx.merge(graphdef, state)((rgb - mean) / std)


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
def aligned_to_canvas(fy, m, fx, alpha, beta):
    """SPEC 5.4 steps 6-7: P = alpha*m + beta, CUBIC-resized from 1024^2 to the patch size (on a canvas)."""
    p = alpha[:, None, None] * m + beta[:, None, None]
    return resize_maps(fy, p, fx)


# --- batching -----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Batcher:
    """Runs a jitted function over the leading axis of its arguments in bounded, fixed-shape chunks.

    Chunks hold at most ``max_batch`` items; a short tail chunk is padded (repeating its first item) up to a
    power of two, so a stage compiles at most log2(max_batch) + 1 batch shapes. With a ``mesh`` (1-D, axis
    ``"batch"``) every chunk is sharded over the mesh's devices and the shared arguments (weights, the image)
    are replicated: data parallelism over local devices with the same results as one device.
    """

    max_batch: int = 4
    mesh: Mesh | None = None

    @property
    def n_devices(self) -> int:
        return 1 if self.mesh is None else int(self.mesh.devices.size)

    def chunk_size(self, k: int) -> int:
        p = 1
        while p < k:
            p *= 2
        p = min(p, max(self.max_batch, k))
        return -(-p // self.n_devices) * self.n_devices  # a multiple of the device count

    def _put(self, x, spec):
        if self.mesh is None or isinstance(x, nnx.GraphDef):
            return x
        return jax.device_put(x, NamedSharding(self.mesh, spec))

    def run(self, fn, arrays: tuple, *, shared: tuple = ()) -> list:
        """``fn(*shared, *chunk)`` over chunks of ``arrays``; returns each output concatenated over all items.

        A chunk may be the caller's array itself (a slice of all of it is the array), so when ``fn`` donates an
        argument, the caller gives that array up."""
        shared = tuple(self._put(a, P()) for a in shared)
        n = int(arrays[0].shape[0])
        outs, start = [], 0
        while start < n:
            k = min(n - start, self.max_batch)
            p = self.chunk_size(k)
            chunk = []
            for a in arrays:
                c = jnp.asarray(a[start:start + k])
                if p > k:
                    c = jnp.concatenate([c, jnp.repeat(c[:1], p - k, axis=0)])
                chunk.append(self._put(c, P("batch")))
            res = fn(*shared, *chunk)
            res = res if isinstance(res, tuple) else (res,)
            outs.append([r[:k] for r in res])
            start += k
        return [jnp.concatenate([o[i] for o in outs]) if len(outs) > 1 else outs[0][i] for i in range(len(outs[0]))]


# Device memory one more item of the largest batched stage needs: a 768^2 patch through MiDaS in float32 takes
# 0.35 GiB of XLA temp memory per item (memory analysis of batch 1, 2, 4: 0.35 / 0.70 / 1.41 GiB); the merge net
# at 1024^2 needs ~0.25 GiB per item. Rounded up for the other buffers of a stage.
BYTES_PER_ITEM = 0.4 * 2 ** 30
WEIGHTS_RESERVE = 2 ** 30  # both networks' weights (0.4 + 0.2 GiB) plus the image-level buffers
# On CPU cores batching costs time: MiDaS 768^2 takes 5.4 s per item at batch 1, 5.7 at batch 2 and 6.8 at
# batch 4 on the 2-core development machine (cache pressure), and every batch size is another compilation.
CPU_MAX_BATCH = 1
MAX_AUTO_BATCH = 32


def auto_max_batch(devices, bytes_per_item: float = BYTES_PER_ITEM) -> int:
    """A power-of-two batch per device (times the device count) whose activations fit in half of each device's
    memory after the weights. Uses the memory limit, not the momentary use, so every call of a run gets the
    same answer (no recompilation). Devices that do not report a limit (CPU) get ``CPU_MAX_BATCH``."""
    per_device = []
    for d in devices:
        stats = d.memory_stats() if d.platform != "cpu" else None
        if not stats or "bytes_limit" not in stats:
            return CPU_MAX_BATCH * len(devices)
        per_device.append(max(1, int(0.5 * (stats["bytes_limit"] - WEIGHTS_RESERVE) // bytes_per_item)))
    n = min(min(per_device), MAX_AUTO_BATCH)
    return (1 << (n.bit_length() - 1)) * len(devices)


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh (axis ``"batch"``) over ``devices`` (default: all local devices)."""
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("batch",))


def midas_batched(graphdef, state, rgb: jax.Array, batcher: Batcher) -> jax.Array:
    check_input(rgb)
    return batcher.run(midas_on_rgb, (rgb,), shared=(graphdef, state))[0]
