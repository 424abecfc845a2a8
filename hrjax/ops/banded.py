"""Separable banded resizes: every output row (column) is a weighted sum of k source rows (columns).

cv2's CUBIC reads 4 source pixels per output pixel along each axis, LINEAR 2 (SPEC 9.2). The dense operators
of :mod:`hrjax.ops.resize` hold those weights with zeros everywhere else, so applying them as matmuls costs
O(input size) per output pixel (a 768^2 patch out of a 3000x4000 map: ~30 GFLOP, almost all of it products
with zero). Here one axis of a resize is a *band*: ``idx`` (n_out, k) int32, the source index of each tap,
and ``w`` (n_out, k), its weight. Bands are cut out of the dense operators on the host (:func:`band_of`), so
the weights are the same numbers as before, bit for bit, and there is one coefficient code
(:func:`hrjax.ops.resize.resize_matrix`); the device gathers the k taps and sums them, O(k) per output
pixel and axis. Static shapes: a band's shape depends on the output size and k only, never on the crop.

Device functions take plain arrays (no pytrees) so that :class:`hrjax.pipeline.batching.Batcher` can chunk
and shard per-sample bands along their leading axis like any other argument.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

TAPS = {"cubic": 4, "linear": 2}  # source pixels per output pixel and axis (cv2 INTER_CUBIC / INTER_LINEAR)


def band_of(m: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(idx (n_out, k) int32, w (n_out, k) float64)`` holding every non-zero of the dense ``m`` (n_out, n_in).

    Each row's taps are ``k`` consecutive source indices starting at its first non-zero (moved left at the
    right edge, so they stay inside ``[0, n_in)``); taps that the dense row holds as zero get weight 0. A
    row without any non-zero (a canvas row beyond the patch) gets taps at 0 with weight 0. A source shorter
    than ``k`` still gets ``k`` taps (the extra ones repeat the last index with weight 0), so bands of crops
    of any size stack. Raises if a row's non-zeros do not fit in ``k`` consecutive columns: then ``m`` is not
    a k-tap resize and banding would silently drop weights.
    """
    m = np.asarray(m)
    n_out, n_in = m.shape
    k = int(k)
    nz = m != 0
    first = np.where(nz.any(axis=1), nz.argmax(axis=1), 0)
    start = np.minimum(first, max(n_in - k, 0))
    raw = start[:, None] + np.arange(k)
    idx = np.minimum(raw, n_in - 1)
    w = np.where(raw < n_in, np.take_along_axis(m, idx, axis=1), 0.0)
    if np.count_nonzero(w) != np.count_nonzero(m):
        raise ValueError(f"operator rows have non-zeros outside {k} consecutive columns: not a {k}-tap band")
    return idx.astype(np.int32), w.astype(np.float64)


def shifted(band: tuple[np.ndarray, np.ndarray], offset: int, rows: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """``band`` reading source index ``i + offset`` for ``i`` (a crop's band on the full image), optionally
    padded with zero-weight rows (taps at ``offset``) up to ``rows`` outputs (a fixed canvas)."""
    idx, w = band
    n_out, k = idx.shape
    rows = n_out if rows is None else int(rows)
    if rows < n_out:
        raise ValueError(f"cannot pad a band of {n_out} outputs to {rows}")
    out_idx = np.full((rows, k), 0, np.int32)
    out_w = np.zeros((rows, k), w.dtype)
    out_idx[:n_out] = idx
    out_w[:n_out] = w
    out_idx += np.int32(offset)
    return out_idx, out_w


def apply_band(x: jax.Array, idx: jax.Array, w: jax.Array, axis: int) -> jax.Array:
    """``out[.., o, ..] = sum_j w[o, j] * x[.., idx[o, j], ..]`` along ``axis``; ``idx``, ``w`` (n_out, k).

    The k taps are summed in order j = 0 .. k-1 in ``x.dtype`` (the weights are cast to it): one gather and
    one multiply-add per tap, which XLA fuses into a single pass over the output.
    """
    w = w.astype(x.dtype)
    axis = axis % x.ndim
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    out = None
    for j in range(idx.shape[1]):
        term = jnp.take(x, idx[:, j], axis=axis, mode="clip") * w[:, j].reshape(shape)
        out = term if out is None else out + term
    return out


def resize_2d(x: jax.Array, iy, wy, ix, wx, axes: tuple[int, int] = (0, 1)) -> jax.Array:
    """Both axes of a separable resize (rows ``axes[0]`` by ``(iy, wy)``, columns ``axes[1]`` by ``(ix, wx)``).

    The axis whose pass leaves the smaller intermediate goes first (rows first costs out_h * W, columns first
    H * out_w taps per other-axis entry); a crop out of a big image thus never resizes the whole of it twice.
    """
    ay, ax = axes
    h, w = x.shape[ay], x.shape[ax]
    out_h, out_w = iy.shape[0], ix.shape[0]
    if out_h * w <= h * out_w:
        return apply_band(apply_band(x, iy, wy, ay), ix, wx, ax)
    return apply_band(apply_band(x, ix, wx, ax), iy, wy, ay)

