"""Crop-and-resize of patches as matrix pairs, so N patches of different sizes batch into one einsum.

SPEC §5.4 crops a rect ``[x, y, w, h]`` out of a full-size map with NumPy slicing (step 2), CUBIC-resizes the
crop to 1024² (step 4), and later CUBIC-resizes a 1024² result back to the crop size and blends it in at the
rect (steps 7-9). A crop is a selection matrix and a resize is a matrix (SPEC §9.2), so "crop rect, then
resize" is a single pair ``Ry`` (out_h, H), ``Rx`` (out_w, W) applied to the *whole* image: ``Ry`` holds the
resize weights in columns ``y0 .. y1-1`` and zeros elsewhere. Every patch then has operators of the same
shape whatever its rect, and N patches stack into (N, out_h, H) / (N, out_w, W) arrays (SPEC §11). (The
reverse, pasting a resized map at a rect of a full canvas, is only a test reference now:
tests/reference_ops.py; the pipeline blends on per-patch canvases, :mod:`hrjax.pipeline.canvas`.)

Host functions (numpy) build the operators; :func:`batched_crop_resize` and :func:`batched_window_resize` are
the jitted device einsums (``Precision.HIGHEST``, no TF32).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hrjax.ops.resize import Method, Variant, cv2_variant, resize_matrix, resize_np

MERGE_SIZE = (1024, 1024)  # the merge net's fixed input size (SPEC §4.1, §5.4 steps 3-4)
_HIGHEST = jax.lax.Precision.HIGHEST


def crop_bounds(rect: Sequence[int], hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` such that ``img[y:y+h, x:x+w] == img[y0:y1, x0:x1]`` for ``rect = [x, y, w, h]``.

    SPEC §5.4 step 2: the reference crops with NumPy slicing, which silently clips at the border (and, for
    a negative start, counts from the end, which Python's ``slice.indices`` reproduces exactly). An empty
    crop gives ``y1 == y0`` or ``x1 == x0``.
    """
    x, y, w, h = (int(v) for v in rect)
    y0, y1, _ = slice(y, y + h).indices(int(hw[0]))
    x0, x1, _ = slice(x, x + w).indices(int(hw[1]))
    return y0, max(y0, y1), x0, max(x0, x1)


def crop(img, rect: Sequence[int]):
    """``img[y:y+h, x:x+w]`` (numpy or jax array), NumPy slicing semantics (SPEC §5.4 step 2)."""
    y0, y1, x0, x1 = crop_bounds(rect, img.shape[:2])
    return img[y0:y1, x0:x1]


def _nonempty(bounds, rect) -> tuple[int, int]:
    y0, y1, x0, x1 = bounds
    if y1 <= y0 or x1 <= x0:
        # cv2.resize raises on an empty source; make that explicit rather than return garbage
        raise ValueError(f"rect {list(rect)} gives an empty crop")
    return y1 - y0, x1 - x0


def crop_resize_np(img: np.ndarray, rect: Sequence[int], size: tuple[int, int] = MERGE_SIZE,
                   method: Method = "cubic", *, cv_dtype=None, variant: Variant | None = None) -> np.ndarray:
    """Host reference of SPEC §5.4 steps 2+4: ``cv2.resize(img[y:y+h, x:x+w], (out_w, out_h), CUBIC)``.

    ``size`` is (out_h, out_w). The cv2 code path follows ``cv_dtype`` (default ``img.dtype``) and the
    *cropped* size, as cv2 only ever sees the crop (:func:`hrjax.ops.resize.cv2_variant`).
    """
    c = crop(np.asarray(img), rect)
    _nonempty((0, c.shape[0], 0, c.shape[1]), rect)
    return resize_np(c, size, method, cv_dtype=cv_dtype, variant=variant)


def crop_resize_matrices(rect: Sequence[int], in_hw: tuple[int, int], size: tuple[int, int] = MERGE_SIZE,
                         method: Method = "cubic", *, cv_dtype=np.float32, channels: int = 1,
                         variant: Variant | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(Ry (out_h, H), Rx (out_w, W))`` float64 with ``Ry @ img @ Rx^T == resize(crop(img, rect), size)``.

    SPEC §5.4 steps 2+4 as one operator pair on the full (H, W) = ``in_hw`` image: the resize weights of the
    clipped crop (h_r, w_r) sit in columns ``y0 .. y1-1`` (``x0 .. x1-1``), zeros elsewhere. The default
    ``cv_dtype=float32`` matches step 4 (the base estimate is float32); the cv2 code path is chosen from the
    crop size unless ``variant`` is given.
    """
    bounds = crop_bounds(rect, in_hw)
    h_r, w_r = _nonempty(bounds, rect)
    y0, y1, x0, x1 = bounds
    var = variant or cv2_variant(method, cv_dtype, (h_r, w_r), channels)
    ry = np.zeros((int(size[0]), int(in_hw[0])))
    rx = np.zeros((int(size[1]), int(in_hw[1])))
    ry[:, y0:y1] = resize_matrix(h_r, int(size[0]), method, var, vertical=True)
    rx[:, x0:x1] = resize_matrix(w_r, int(size[1]), method, var)
    return ry, rx


def stack_crop_resize_matrices(rects: Sequence[Sequence[int]], in_hw: tuple[int, int],
                               size: tuple[int, int] = MERGE_SIZE, method: Method = "cubic", *,
                               cv_dtype=np.float32, channels: int = 1,
                               dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(N, out_h, H) and (N, out_w, W) stacks of :func:`crop_resize_matrices` for N rects (SPEC §11)."""
    pairs = [crop_resize_matrices(r, in_hw, size, method, cv_dtype=cv_dtype, channels=channels) for r in rects]
    return (np.stack([p[0] for p in pairs]).astype(dtype), np.stack([p[1] for p in pairs]).astype(dtype))


@jax.jit
def batched_crop_resize(img: jax.Array, ry: jax.Array, rx: jax.Array) -> jax.Array:
    """All patches at once: ``out[n] = ry[n] @ img @ rx[n]^T`` per channel (SPEC §5.4 steps 2+4, §11).

    ``img`` is the shared full image, (H, W) or (H, W, C); ``ry`` (N, out_h, H), ``rx`` (N, out_w, W) from
    :func:`stack_crop_resize_matrices`. Returns (N, out_h, out_w[, C]) in ``img.dtype`` (the operators are
    cast to it).
    """
    ry = ry.astype(img.dtype)
    rx = rx.astype(img.dtype)
    if img.ndim == 2:
        t = jnp.einsum("noh,hw->now", ry, img, precision=_HIGHEST)
        return jnp.einsum("now,npw->nop", t, rx, precision=_HIGHEST)
    t = jnp.einsum("noh,hwc->nowc", ry, img, precision=_HIGHEST)
    return jnp.einsum("nowc,npw->nopc", t, rx, precision=_HIGHEST)


def stack_window_resize_matrices(rects: Sequence[Sequence[int]], in_hw: tuple[int, int],
                                 size: tuple[int, int] = MERGE_SIZE, method: Method = "cubic", *,
                                 cv_dtype=np.float32, channels: int = 1, quantum: int = 64,
                                 window: tuple[int, int] | None = None,
                                 dtype=np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The operators of :func:`stack_crop_resize_matrices` restricted to a window around each crop.

    Full-image operators hold N x out x (H + W) values, almost all zeros: 65 patches of a 3000x4000 target at
    1024^2 are 3.7 GB of float64 on the host. Here every crop gets a window of one shared size (the largest
    clipped crop of the group rounded up to ``quantum`` px, at most the image), placed inside the image so that
    it contains the crop; the operators keep only the window's columns, which hold every non-zero weight, so
    the result is the same resize. ``window`` fixes the (rows, cols) window size instead (at least every
    crop's size; callers that build the operators chunk by chunk pass the group's window, so every chunk has
    the same shape). Returns ``(starts (N, 2) int32 (row, col of each window), Ry (N, out_h, wh),
    Rx (N, out_w, ww))`` for :func:`batched_window_resize`.
    """
    H, W = int(in_hw[0]), int(in_hw[1])
    bounds = [crop_bounds(r, in_hw) for r in rects]
    sizes = [_nonempty(b, r) for b, r in zip(bounds, rects)]
    if window is None:
        window = window_size(rects, in_hw, quantum)
    wh, ww = int(window[0]), int(window[1])
    if wh > H or ww > W or any(h > wh or w > ww for h, w in sizes):
        raise ValueError(f"window {window} does not hold every crop inside the {in_hw} image")
    starts = np.zeros((len(rects), 2), np.int32)
    ry = np.zeros((len(rects), int(size[0]), wh), dtype)
    rx = np.zeros((len(rects), int(size[1]), ww), dtype)
    for i, ((y0, y1, x0, x1), (h_r, w_r)) in enumerate(zip(bounds, sizes)):
        ys, xs = min(y0, H - wh), min(x0, W - ww)
        var = cv2_variant(method, cv_dtype, (h_r, w_r), channels)
        starts[i] = ys, xs
        ry[i, :, y0 - ys:y1 - ys] = resize_matrix(h_r, int(size[0]), method, var, vertical=True)
        rx[i, :, x0 - xs:x1 - xs] = resize_matrix(w_r, int(size[1]), method, var)
    return starts, ry, rx


def window_size(rects: Sequence[Sequence[int]], in_hw: tuple[int, int], quantum: int = 64) -> tuple[int, int]:
    """The shared window of :func:`stack_window_resize_matrices`: the largest clipped crop, rounded up to
    ``quantum`` px, at most the image."""
    sizes = [_nonempty(crop_bounds(r, in_hw), r) for r in rects]
    wh = min(int(in_hw[0]), -(-max(h for h, _ in sizes) // quantum) * quantum)
    ww = min(int(in_hw[1]), -(-max(w for _, w in sizes) // quantum) * quantum)
    return wh, ww


@jax.jit
def batched_window_resize(img: jax.Array, starts: jax.Array, ry: jax.Array, rx: jax.Array) -> jax.Array:
    """``out[n] = ry[n] @ window_n(img) @ rx[n]^T`` per channel, with the windows of
    :func:`stack_window_resize_matrices`; the same result as :func:`batched_crop_resize` on the full operators."""
    wh, ww = ry.shape[2], rx.shape[2]
    ry = ry.astype(img.dtype)
    rx = rx.astype(img.dtype)

    def one(start, a, b):
        corner = (start[0], start[1]) + (0,) * (img.ndim - 2)
        win = jax.lax.dynamic_slice(img, corner, (wh, ww) + img.shape[2:])
        if img.ndim == 2:
            return jnp.einsum("ph,hw,qw->pq", a, win, b, precision=_HIGHEST)
        t = jnp.einsum("ph,hwc->pwc", a, win, precision=_HIGHEST)
        return jnp.einsum("pwc,qw->pqc", t, b, precision=_HIGHEST)

    return jax.vmap(one)(starts, ry, rx)
