"""Crop-and-resize of patches as band pairs, so N patches of different sizes batch into one device call.

SPEC §5.4 crops a rect ``[x, y, w, h]`` out of a full-size map with NumPy slicing (step 2), CUBIC-resizes the
crop to 1024² (step 4), and later CUBIC-resizes a 1024² result back to the crop size and blends it in at the
rect (steps 7-9). A crop followed by a resize is again a separable resize of the *whole* image whose taps all
lie inside the crop: the crop's bands (:func:`hrjax.ops.resize.resize_band`, 4 or 2 taps per output pixel
and axis) with their source indices shifted by the crop's corner. Every patch then has bands of the same
shape, (out_h, k) and (out_w, k), whatever its rect and whatever the image size, and N patches stack into
(N, out, k) arrays (SPEC §11). (The reverse, pasting a resized map at a rect of a full canvas, and the dense
matrix formulation this replaced, are test references now: tests/reference_ops.py; the pipeline blends on
per-patch canvases, :mod:`hrjax.pipeline.canvas`.)

Host functions (numpy) build the bands; :func:`batched_crop_resize` is the jitted device gather-and-sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from hrjax.ops.banded import resize_2d, shifted
from hrjax.ops.resize import Method, Variant, cv2_variant, resize_band, resize_np

MERGE_SIZE = (1024, 1024)  # the merge net's fixed input size (SPEC §4.1, §5.4 steps 3-4)


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


def crop_resize_bands(rect: Sequence[int], in_hw: tuple[int, int], size: tuple[int, int] = MERGE_SIZE,
                      method: Method = "cubic", *, cv_dtype=np.float32, channels: int = 1,
                      variant: Variant | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(iy, wy, ix, wx)``: the bands (out_h, k) and (out_w, k) of ``resize(crop(img, rect), size)`` on the
    full (H, W) = ``in_hw`` image (source indices in full-image coordinates).

    SPEC §5.4 steps 2+4: the resize weights of the clipped crop (h_r, w_r), their taps shifted by the crop's
    corner. The default ``cv_dtype=float32`` matches step 4 (the base estimate is float32); the cv2 code path
    is chosen from the crop size unless ``variant`` is given. Weights float64.
    """
    bounds = crop_bounds(rect, in_hw)
    h_r, w_r = _nonempty(bounds, rect)
    y0, _, x0, _ = bounds
    var = variant or cv2_variant(method, cv_dtype, (h_r, w_r), channels)
    iy, wy = shifted(resize_band(h_r, int(size[0]), method, var, vertical=True), y0)
    ix, wx = shifted(resize_band(w_r, int(size[1]), method, var), x0)
    return iy, wy, ix, wx


def stack_crop_resize_bands(rects: Sequence[Sequence[int]], in_hw: tuple[int, int],
                            size: tuple[int, int] = MERGE_SIZE, method: Method = "cubic", *,
                            cv_dtype=np.float32, channels: int = 1,
                            dtype=np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N, out_h, k), (N, out_h, k), (N, out_w, k), (N, out_w, k) stacks of :func:`crop_resize_bands` for N
    rects (SPEC §11), weights in ``dtype``: the arguments of :func:`batched_crop_resize` after the image."""
    bands = [crop_resize_bands(r, in_hw, size, method, cv_dtype=cv_dtype, channels=channels) for r in rects]
    iy, wy, ix, wx = (np.stack([b[i] for b in bands]) for i in range(4))
    return iy, wy.astype(dtype), ix, wx.astype(dtype)


@jax.jit
def batched_crop_resize(img: jax.Array, iy: jax.Array, wy: jax.Array, ix: jax.Array, wx: jax.Array) -> jax.Array:
    """All patches at once: ``out[n] = resize(crop(img, rect_n))`` per channel (SPEC §5.4 steps 2+4, §11).

    ``img`` is the shared full image, (H, W) or (H, W, C); the bands (N, out, k) come from
    :func:`stack_crop_resize_bands`. Returns (N, out_h, out_w[, C]) in ``img.dtype`` (the weights are cast to
    it). The program depends on the image shape, N and the output size only, not on the rects.
    """
    return jax.vmap(lambda a, b, c, d: resize_2d(img, a, b, c, d))(iy, wy, ix, wx)
