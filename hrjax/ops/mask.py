"""The patch blending mask (SPEC §5.5, reference ``utils.generatemask((3000, 3000))``) in closed form.

The reference builds a 3000² float32 indicator of ``[450, 2550)²``, blurs it with
``cv2.GaussianBlur(mask, (749, 749), 187)`` (border REFLECT_101), min-max normalises it, and per patch
resizes it with INTER_LINEAR to the patch size (SPEC §5.4 step 8). The indicator is an outer product and the
Gaussian is separable, so the blurred mask is ``outer(p, p)`` with ``p`` the 1-D blur of the 1-D indicator;
the resize is separable too, so the per-patch mask is ``outer(Ry @ p, Rx @ p)`` — no 3000² array and no
6-second blur are ever needed. Against the literal cv2 construction the closed form differs by ~1.3e-6
(cv2 filters in float32: its own result is not even symmetric to 1.8e-6).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from hrjax.ops.resize import cv2_variant, resize_matrix

MASK_SIZE = 3000  # generatemask((3000, 3000))
MARGIN = int(0.15 * MASK_SIZE)  # 450: the indicator is 1 on [450, 2550)
SIGMA = int(MASK_SIZE / 16)  # 187
KSIZE = int(2 * math.ceil(2 * SIGMA) + 1)  # 749


def gaussian_kernel(ksize: int = KSIZE, sigma: float = SIGMA) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma, CV_64F)``: ``exp(−(i − (k−1)/2)² / (2σ²))`` normalised to sum 1.

    (cv2 only uses its fixed 3/5/7-tap tables for sigma <= 0; SPEC §5.5 has sigma = 187.)
    """
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) * 0.5
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


@functools.lru_cache(maxsize=1)
def mask_profile() -> np.ndarray:
    """(3000,) float64 ``p`` with ``M0 = outer(p, p)`` (SPEC §5.5 closed form). Cached, read-only.

    ``p`` is the indicator of ``[450, 2550)`` blurred with the normalised 749-tap Gaussian (σ = 187) under
    BORDER_REFLECT_101 (= ``np.pad(mode="reflect")``). The reference's min-max normalisation is then applied:
    the min is exactly 0 (``p = 0`` for index < 76, out of the kernel's reach) and the max is 1 up to
    round-off, so dividing by ``max(p)`` makes ``max(M0)`` exactly 1 as ``(M − min)/(max − min)`` does.
    """
    ind = np.zeros(MASK_SIZE)
    ind[MARGIN:MASK_SIZE - MARGIN] = 1.0
    r = KSIZE // 2
    padded = np.pad(ind, r, mode="reflect")  # REFLECT_101: ... 2 1 | 0 1 2 ... (edge not repeated)
    p = np.convolve(padded, gaussian_kernel(), mode="valid")  # symmetric kernel: convolution == correlation
    p = p / p.max()
    p.flags.writeable = False
    return p


def patch_mask_profiles(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``(py (h,), px (w,))`` float64 with ``patch_mask(h, w) == outer(py, px)`` (SPEC §5.4 step 8, §5.5).

    ``cv2.resize(M0, (w, h), INTER_LINEAR)`` is ``Ry @ outer(p, p) @ Rx^T = outer(Ry @ p, Rx @ p)``. M0 is a
    float32 3000² single-channel image, so cv2 runs its IPP linear path (double-precision positions,
    :func:`hrjax.ops.resize.cv2_variant`); a 3000 → 3000 axis is the identity.
    """
    var = cv2_variant("linear", np.float32, (MASK_SIZE, MASK_SIZE), 1)
    p = mask_profile()
    py = resize_matrix(MASK_SIZE, int(h), "linear", var, vertical=True) @ p
    px = resize_matrix(MASK_SIZE, int(w), "linear", var) @ p
    return py, px


def patch_mask(h: int, w: int) -> np.ndarray:
    """(h, w) float32 ``Mk = cv2.resize(M0, (w, h), INTER_LINEAR)`` (SPEC §5.4 step 8, §5.5).

    Bilinear, no antialiasing, computed as the outer product of the resized 1-D profiles (exact in exact
    arithmetic; within ~1e-7 of cv2 applied to the same float32 M0, ~1.3e-6 of cv2's own blurred M0).
    """
    py, px = patch_mask_profiles(h, w)
    return np.outer(py, px).astype(np.float32)
