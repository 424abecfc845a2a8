"""Blending mask (hrjax.ops.mask, SPEC §5.5) and the patch blend of SPEC §5.4 steps 7-9, against cv2.

The literal reference construction (a 749-tap GaussianBlur on 3000², ~7 s on 2 cores) runs once per module.
Measured: closed-form M0 vs cv2 1.31e-6 (cv2 filters in float32; its own M0 is asymmetric by 1.8e-6);
patch_mask vs cv2.resize of our M0 <= 6e-8, vs cv2.resize of cv2's M0 <= 1.31e-6.
"""

from __future__ import annotations

import cv2
import jax.numpy as jnp
import numpy as np
import pytest

from hrjax.ops.crop import crop_bounds
from hrjax.ops.mask import (
    KSIZE,
    MARGIN,
    SIGMA,
    gaussian_kernel,
    mask_profile,
    patch_mask,
    patch_mask_profiles,
)
from reference_ops import batched_paste, canvas_mask_profiles, mask_3000, stack_paste_matrices


def err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# The tests of cv2_m0 (a 3000^2 GaussianBlur with a 751-tap kernel, ~8 s) go to one worker, which builds it once.
CV2_M0_GROUP = pytest.mark.xdist_group("cv2_m0")


@pytest.fixture(scope="session")
def cv2_m0() -> np.ndarray:
    """utils.generatemask((3000, 3000)) verbatim (SPEC §5.5)."""
    mask = np.zeros((3000, 3000), np.float32)
    mask[int(0.15 * 3000):3000 - int(0.15 * 3000), int(0.15 * 3000):3000 - int(0.15 * 3000)] = 1
    sigma = int(3000 / 16)
    k = int(2 * np.ceil(2 * int(3000 / 16)) + 1)
    mask = cv2.GaussianBlur(mask, (k, k), sigma)
    mask = (mask - mask.min()) / (mask.max() - mask.min())
    return mask.astype(np.float32)


def test_constants_and_kernel():
    assert (MARGIN, SIGMA, KSIZE) == (450, 187, 749)
    np.testing.assert_allclose(gaussian_kernel(), cv2.getGaussianKernel(KSIZE, SIGMA, ktype=cv2.CV_64F).ravel(),
                               rtol=0, atol=1e-17)


def test_profile_shape():
    p = mask_profile()
    assert p.shape == (3000,) and p.dtype == np.float64
    assert np.all(p[:76] == 0) and p[76] > 0  # out of the 374-px kernel reach of index 450
    assert p.max() == 1.0 and np.all(p[824:2176] >= 1 - 1e-15)  # SPEC §5.5: rises to 1 at index 824
    assert np.all(np.diff(p[:825]) >= -1e-15)  # monotone rise
    np.testing.assert_allclose(p, p[::-1], rtol=0, atol=1e-15)


@CV2_M0_GROUP
def test_mask_3000_matches_cv2(cv2_m0):
    m = mask_3000()
    assert m.dtype == np.float32 and m.shape == (3000, 3000)
    assert m.min() == 0.0 and m.max() == 1.0
    assert err(m, cv2_m0) <= 2e-6


@CV2_M0_GROUP
@pytest.mark.parametrize("hw", [(768, 768), (3000, 3000), (3000, 1234), (1537, 2001), (3072, 3072), (2, 2),
                                (1, 5), (100, 4000)])
def test_patch_mask_matches_cv2_resize(hw, cv2_m0):
    h, w = hw
    ours = patch_mask(h, w)
    assert ours.dtype == np.float32 and ours.shape == (h, w)
    # the resize alone (same M0 on both sides): float32 round-off only; cv2's generic (float32-position) path
    # would be up to 3.6e-7 off at e.g. (1537, 2001), so this also checks the IPP-path choice
    ref_same_m0 = cv2.resize(mask_3000(), (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w)
    assert err(ours, ref_same_m0) <= 1.5e-7
    # end to end against the literal reference construction
    ref = cv2.resize(cv2_m0, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w)
    assert err(ours, ref) <= 2e-6


def test_patch_mask_is_separable():
    py, px = patch_mask_profiles(37, 53)
    np.testing.assert_array_equal(patch_mask(37, 53), np.outer(py, px).astype(np.float32))
    assert py.shape == (37,) and px.shape == (53,)


def test_blend_with_full_size_canvases_equals_in_place_blend():
    """SPEC §5.4 steps 7-9 with full-canvas operators equals the reference's crop-and-assign loop.

    Patches overlap and one is clipped by the border; the fold over patches keeps the reference order.
    """
    g = np.random.default_rng(7)
    full = (200, 260)
    rects = [[0, 0, 180, 180], [100, 60, 170, 170], [30, 90, 64, 64]]  # 2nd is clipped right and bottom
    merged = g.random((len(rects), 32, 32))  # stands in for the 1024² aligned merge results (float64)
    e0 = g.random(full).astype(np.float32)

    ref = e0.copy()
    for r, m in zip(rects, merged):
        x, y, w, h = r
        h_r, w_r = ref[y:y + h, x:x + w].shape
        p = cv2.resize(m, (w_r, h_r), interpolation=cv2.INTER_CUBIC)
        mk = cv2.resize(mask_3000(), (w_r, h_r), interpolation=cv2.INTER_LINEAR)
        ref[y:y + h, x:x + w] = ref[y:y + h, x:x + w] * (1 - mk) + p * mk

    sy, sx = stack_paste_matrices(rects, full, (32, 32))
    canv = np.asarray(batched_paste(jnp.asarray(merged, jnp.float32), jnp.asarray(sy), jnp.asarray(sx)))
    out = e0.astype(np.float64)
    for r, c in zip(rects, canv):
        qy, qx = canvas_mask_profiles(r, full)
        m = np.outer(qy, qx)
        y0, y1, x0, x1 = crop_bounds(r, full)
        assert not m[:y0].any() and not m[y1:].any() and not m[:, :x0].any() and not m[:, x1:].any()
        out = (out * (1 - m) + c * m).astype(np.float32).astype(np.float64)  # stored as float32 each step
    assert err(out, ref) <= 2e-6


def test_canvas_mask_empty_rect_raises():
    with pytest.raises(ValueError):
        canvas_mask_profiles([300, 0, 10, 10], (200, 260))
