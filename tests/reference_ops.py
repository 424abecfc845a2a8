"""Reference twins of pipeline operations that only the tests use: the paste family (a 1024^2 map resized and
placed at a rect of a full canvas), the 3000^2 master mask and its canvas profiles, and the dense crop+resize
operators (full interpolation matrices applied as einsums) that the device path used before it became banded.
The pipeline computes the same results another way (per-patch canvases, closed-form mask profiles, bands of 4
or 2 taps); the tests check the two agree. Moved here from hrjax/ops/crop.py and hrjax/ops/mask.py."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hrjax.models.mergenet import MERGE_SIZE as _MERGE
from hrjax.ops.crop import _nonempty, crop_bounds
from hrjax.ops.mask import mask_profile, patch_mask_profiles
from hrjax.ops.resize import Method, Variant, cv2_variant, resize_matrix

MERGE_SIZE = (_MERGE, _MERGE)
_HIGHEST = jax.lax.Precision.HIGHEST


@functools.lru_cache(maxsize=1)
def mask_3000() -> np.ndarray:
    """(3000, 3000) float32 master mask ``M0`` (SPEC §5.5) as ``outer(p, p)``. Cached, read-only (36 MB)."""
    p = mask_profile()
    m = np.outer(p, p).astype(np.float32)
    m.flags.writeable = False
    return m


def canvas_mask_profiles(rect: Sequence[int], full_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(qy (H,), qx (W,))`` float64: the patch mask profiles placed at ``rect`` on an (H, W) canvas, 0 outside.

    ``outer(qy, qx)`` is the SPEC §5.4 step-9 blending weight over the full map: ``Mk`` of the *clipped* crop
    size (h_r, w_r) inside the rect (NumPy slicing, step 2) and 0 elsewhere, so
    ``E·(1 − M) + P·M`` only changes the rect. Pairs with :func:`hrjax.ops.crop.paste_matrices`.
    """
    y0, y1, x0, x1 = crop_bounds(rect, full_hw)
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"rect {list(rect)} gives an empty crop")
    py, px = patch_mask_profiles(y1 - y0, x1 - x0)
    qy = np.zeros(int(full_hw[0]))
    qx = np.zeros(int(full_hw[1]))
    qy[y0:y1] = py
    qx[x0:x1] = px
    return qy, qx


def paste_matrices(rect: Sequence[int], full_hw: tuple[int, int], src_hw: tuple[int, int] = MERGE_SIZE,
                   method: Method = "cubic", *, cv_dtype=np.float64, channels: int = 1,
                   variant: Variant | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(Sy (H, src_h), Sx (W, src_w))`` float64: ``Sy @ m @ Sx^T`` is ``m`` resized to the crop size of
    ``rect`` and placed at the rect of an (H, W) = ``full_hw`` canvas, zero elsewhere.

    SPEC §5.4 step 7: ``P = cv_resize(P, (w_r, h_r), CUBIC)`` with (h_r, w_r) the *clipped* crop size of step 2;
    P is float64 there, hence the default ``cv_dtype=float64`` (cv2's generic path). Rows outside the rect
    are zero, so the step-9 blend ``E·(1 − M) + P·M`` with a mask that is also zero outside the rect
    (:func:`canvas_mask_profiles`) leaves the rest of ``E`` untouched.
    """
    bounds = crop_bounds(rect, full_hw)
    h_r, w_r = _nonempty(bounds, rect)
    y0, y1, x0, x1 = bounds
    var = variant or cv2_variant(method, cv_dtype, tuple(src_hw), channels)
    sy = np.zeros((int(full_hw[0]), int(src_hw[0])))
    sx = np.zeros((int(full_hw[1]), int(src_hw[1])))
    sy[y0:y1] = resize_matrix(int(src_hw[0]), h_r, method, var, vertical=True)
    sx[x0:x1] = resize_matrix(int(src_hw[1]), w_r, method, var)
    return sy, sx


def stack_paste_matrices(rects: Sequence[Sequence[int]], full_hw: tuple[int, int],
                         src_hw: tuple[int, int] = MERGE_SIZE, method: Method = "cubic", *,
                         cv_dtype=np.float64, channels: int = 1,
                         dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, src_h) and (N, W, src_w) stacks of :func:`paste_matrices` for N rects (SPEC §11)."""
    pairs = [paste_matrices(r, full_hw, src_hw, method, cv_dtype=cv_dtype, channels=channels) for r in rects]
    return (np.stack([p[0] for p in pairs]).astype(dtype), np.stack([p[1] for p in pairs]).astype(dtype))


@jax.jit
def batched_paste(maps: jax.Array, sy: jax.Array, sx: jax.Array) -> jax.Array:
    """``out[n] = sy[n] @ maps[n] @ sx[n]^T``: N (src_h, src_w) maps to N full-size (H, W) canvases.

    SPEC §5.4 step 7 for all patches at once; ``sy``/``sx`` from :func:`stack_paste_matrices`. The canvases
    are zero outside each rect. The order-dependent blend (step 9) stays a fold over the patches.
    """
    sy = sy.astype(maps.dtype)
    sx = sx.astype(maps.dtype)
    t = jnp.einsum("nhi,nij->nhj", sy, maps, precision=_HIGHEST)
    return jnp.einsum("nhj,nwj->nhw", t, sx, precision=_HIGHEST)


def crop_resize_matrices(rect: Sequence[int], in_hw: tuple[int, int], size: tuple[int, int] = MERGE_SIZE,
                         method: Method = "cubic", *, cv_dtype=np.float32, channels: int = 1,
                         variant: Variant | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(Ry (out_h, H), Rx (out_w, W))`` float64 with ``Ry @ img @ Rx^T == resize(crop(img, rect), size)``:
    the resize weights of the clipped crop in columns ``y0 .. y1-1`` (``x0 .. x1-1``), zeros elsewhere (SPEC
    §5.4 steps 2+4). The dense twin of :func:`hrjax.ops.crop.crop_resize_bands`."""
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
def batched_crop_resize_dense(img: jax.Array, ry: jax.Array, rx: jax.Array) -> jax.Array:
    """``out[n] = ry[n] @ img @ rx[n]^T`` per channel: the dense twin of :func:`hrjax.ops.crop.batched_crop_resize`
    (O(H + W) multiply-adds per output pixel instead of O(k))."""
    ry = ry.astype(img.dtype)
    rx = rx.astype(img.dtype)
    if img.ndim == 2:
        t = jnp.einsum("noh,hw->now", ry, img, precision=_HIGHEST)
        return jnp.einsum("now,npw->nop", t, rx, precision=_HIGHEST)
    t = jnp.einsum("noh,hwc->nowc", ry, img, precision=_HIGHEST)
    return jnp.einsum("nowc,npw->nopc", t, rx, precision=_HIGHEST)
