"""OpenCV-exact resize (hrjax.ops.resize) and patch crop/paste operators (hrjax.ops.crop) against cv2 itself.

SPEC §9.2 (resize numerics), §5.4 (crop → 1024² → back to the crop size). Random float images in [0, 1].
Tolerances: float64 host resize vs cv2 float64 <= 1e-12 (measured ~3e-15); float32 vs cv2 float32 <= 2e-6
(measured ~3.6e-7: cv2 accumulates in float32). The wrong cv2 code path ("generic" vs "ipp") is off by
~1e-5 on these sizes, so the float32 tolerance also pins down which path cv2 took.
"""

from __future__ import annotations

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrjax.ops.banded import band_of, shifted
from hrjax.ops.crop import batched_crop_resize, crop, crop_bounds, crop_resize_bands, crop_resize_np, stack_crop_resize_bands
from hrjax.ops.resize import cv2_variant, resize, resize_band, resize_matrix, resize_np
from reference_ops import (batched_crop_resize_dense, batched_paste, crop_resize_matrices, paste_matrices,
                           stack_crop_resize_matrices, stack_paste_matrices)

CV = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR}
TOL32 = 2e-6
TOL64 = 1e-12


def cv_resize(img: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """cv2.resize with our (out_h, out_w) order; restores the channel axis cv2 drops for C == 1."""
    out = cv2.resize(img, (size[1], size[0]), interpolation=CV[method])
    return out.reshape(size + img.shape[2:])


def err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# (H, W, out_h, out_w): up/down, odd sizes, 1-px dims, sources < 4 (cv2's generic path), large factors
SHAPES = [
    (37, 53, 101, 29),
    (300, 200, 38, 77),
    (64, 64, 32, 32),       # exact 2x down (cv2 would switch LINEAR to AREA after the HAL; IPP takes it first)
    (5, 5, 5, 17),          # one axis unchanged
    (1, 8, 1, 3),           # 1-px rows: generic path for both methods
    (2, 9, 7, 4),
    (3, 300, 5, 77),        # 3 rows: cubic generic, linear IPP
    (100, 3, 1, 7),
    (1, 1, 4, 6),
    (9, 1, 1, 1),
    (3000, 7, 384, 5),      # 3000 -> 384
    (7, 6, 1024, 1023),     # 7 -> 1024
    (7, 1000, 1024, 999),
]


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(1234)


# --- the matrices -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["cubic", "linear"])
@pytest.mark.parametrize("variant", ["generic", "ipp"])
@pytest.mark.parametrize("n_in,n_out", [(1, 5), (3, 1), (7, 1024), (3000, 384), (384, 3000), (17, 16)])
def test_resize_matrix_rows_sum_to_one(method, variant, n_in, n_out):
    r = resize_matrix(n_in, n_out, method, variant)
    assert r.shape == (n_out, n_in) and r.dtype == np.float64
    # generic weights are float32 (4th = 1 - others, itself rounded); ipp weights are double
    tol = 1e-6 if variant == "generic" else 1e-12
    np.testing.assert_allclose(r.sum(axis=1), 1.0, rtol=0, atol=tol)
    if method == "linear":
        assert r.min() >= 0.0 and np.all((r != 0).sum(axis=1) <= 2)
    else:
        assert np.all((r != 0).sum(axis=1) <= 4)


@pytest.mark.parametrize("method", ["cubic", "linear"])
@pytest.mark.parametrize("variant", ["generic", "ipp"])
def test_resize_matrix_same_size_is_identity(method, variant):
    assert np.array_equal(resize_matrix(13, 13, method, variant), np.eye(13))


def test_resize_matrix_cached_and_read_only():
    a = resize_matrix(11, 29, "cubic")
    assert resize_matrix(11, 29, "cubic") is a
    with pytest.raises(ValueError):
        a[0, 0] = 1.0


def test_resize_matrix_taps_and_positions():
    # 2x upscale of 4 px: src = (d + 0.5)/2 - 0.5 -> -0.25, 0.25, 0.75, ...; cubic row 0 uses taps -2..1 clamped
    r = resize_matrix(4, 8, "cubic", "generic")
    a = -0.75
    def w(t):
        t = abs(t)
        return ((a + 2) * t - (a + 3)) * t * t + 1 if t <= 1 else ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    # d = 1: src = 0.25, taps -1, 0, 1, 2 at distances 1.25, 0.25, 0.75, 1.75; tap -1 clamps onto pixel 0
    expect = [w(1.25) + w(0.25), w(0.75), w(1.75), 0.0]
    np.testing.assert_allclose(r[1], expect, atol=1e-7)
    lin = resize_matrix(4, 8, "linear", "ipp")
    np.testing.assert_array_equal(lin[0], [1, 0, 0, 0])  # src < 0 -> pixel 0, f = 0
    np.testing.assert_array_equal(lin[-1], [0, 0, 0, 1])  # src >= n - 1 -> last pixel
    np.testing.assert_allclose(lin[1], [0.75, 0.25, 0, 0])


def test_generic_linear_vertical_pass_has_no_edge_reset(rng):
    """OpenCV's row pass keeps (1.f - f, f) on two clamped rows at the edges (SPEC §9.2 generic LINEAR): a 1-row
    float64 image (IPP declines) upscaled vertically shows the float32 (1 - f) + f != 1 round-off."""
    img = rng.random((1, 300))
    ref = cv_resize(img, (5, 77), "linear")
    assert err(resize_np(img, (5, 77), "linear"), ref) <= TOL64
    rx = resize_matrix(300, 77, "linear", "generic")
    as_columns = resize_matrix(1, 5, "linear", "generic") @ img @ rx.T  # the column rule used for rows
    assert err(as_columns, ref) > 1e-9
    assert not np.array_equal(resize_matrix(1, 5, "linear", "generic", vertical=True),
                              resize_matrix(1, 5, "linear", "generic"))


def test_bad_arguments():
    with pytest.raises(ValueError):
        resize_matrix(3, 4, "area")
    with pytest.raises(ValueError):
        resize_matrix(3, 4, "cubic", "fast")
    with pytest.raises(ValueError):
        resize_matrix(0, 4)
    with pytest.raises(ValueError):
        resize(jnp.zeros((4, 4)), (0, 3))
    with pytest.raises(TypeError):
        resize(jnp.zeros((4, 4), jnp.int32), (2, 3))
    with pytest.raises(TypeError):
        resize_np(np.zeros((4, 4), np.uint8), (2, 3))
    with pytest.raises(ValueError):
        resize(jnp.zeros((2, 4, 4, 3, 1)), (2, 3))


# --- which cv2 code path ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "dtype,method,shape,expected",
    [
        (np.float32, "cubic", (301, 203), "ipp"),
        (np.float32, "cubic", (3, 300), "generic"),        # IPP cubic needs sources >= 4
        (np.float32, "cubic", (301, 203, 2), "generic"),   # IPP takes 1, 3, 4 channels only
        (np.float32, "cubic", (301, 203, 3), "ipp"),
        (np.float32, "cubic", (301, 203, 5), "generic"),
        (np.float64, "cubic", (301, 203), "generic"),      # IPP rejects 64f cubic
        (np.float64, "linear", (301, 203), "ipp"),
        (np.float64, "linear", (1, 300), "generic"),       # IPP linear needs sources >= 2
        (np.float32, "linear", (301, 203, 4), "ipp"),
        (np.float32, "linear", (301, 203, 2), "generic"),
    ],
)
def test_cv2_code_path_rule(rng, dtype, method, shape, expected):
    """The rule in cv2_variant is what cv2 does: the predicted path matches cv2 to round-off, the other is far.

    Sizes are chosen so that the float32 rounding of the source position (generic path) is visible (~1e-5).
    """
    out_hw = (77, 399) if shape[0] > 3 else (5, 77)
    if shape[1] <= 3:
        out_hw = (77, 5)
    channels = shape[2] if len(shape) == 3 else 1
    assert cv2_variant(method, dtype, shape[:2], channels) == expected
    img = rng.random(shape).astype(dtype)
    ref = cv_resize(img, out_hw, method)
    right = resize_np(img, out_hw, method, variant=expected)
    wrong = resize_np(img, out_hw, method, variant="ipp" if expected == "generic" else "generic")
    tol = TOL64 if dtype == np.float64 else TOL32
    assert err(right, ref) <= tol
    assert err(wrong, ref) > 3e-6


# --- resize vs cv2 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["cubic", "linear"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_resize_np_float64_matches_cv2(rng, method, shape):
    h, w, oh, ow = shape
    for img in (rng.random((h, w)), rng.random((h, w, 3))):
        ref = cv_resize(img, (oh, ow), method)
        out = resize_np(img, (oh, ow), method)
        assert out.dtype == np.float64 and out.shape == ref.shape
        assert err(out, ref) <= TOL64


@pytest.mark.parametrize("method", ["cubic", "linear"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_resize_jax_float32_matches_cv2(rng, method, shape):
    h, w, oh, ow = shape
    for c in (None, 3, 2):
        img = rng.random((h, w) if c is None else (h, w, c)).astype(np.float32)
        ref = cv_resize(img, (oh, ow), method)
        eager = resize(jnp.asarray(img), (oh, ow), method)
        jitted = jax.jit(lambda x: resize(x, (oh, ow), method))(jnp.asarray(img))
        host = resize_np(img, (oh, ow), method)
        for out in (eager, jitted, host):
            assert out.dtype == np.float32 and out.shape == ref.shape
            assert err(out, ref) <= TOL32, (c, type(out))


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 40), w=st.integers(1, 40), oh=st.integers(1, 90), ow=st.integers(1, 90),
    method=st.sampled_from(["cubic", "linear"]), channels=st.sampled_from([None, 1, 3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_resize_random_shapes(h, w, oh, ow, method, channels, seed):
    g = np.random.default_rng(seed)
    shape = (h, w) if channels is None else (h, w, channels)
    img32 = g.random(shape).astype(np.float32)
    assert err(jax.jit(lambda x: resize(x, (oh, ow), method))(img32), cv_resize(img32, (oh, ow), method)) <= TOL32
    img64 = g.random(shape)
    assert err(resize_np(img64, (oh, ow), method), cv_resize(img64, (oh, ow), method)) <= TOL64


def test_resize_float32_emulating_a_float64_cv2_call(rng):
    """A reference float64 resize computed on device in float32: cv_dtype=float64 selects cv2's generic path."""
    img = rng.random((301, 203, 3))
    ref = cv_resize(img, (77, 399), "cubic")
    out = resize(jnp.asarray(img, jnp.float32), (77, 399), "cubic", cv_dtype=np.float64)
    assert err(out, ref) <= TOL32
    assert err(resize(jnp.asarray(img, jnp.float32), (77, 399), "cubic"), ref) > 3e-6  # float32 rule: IPP


def test_resize_x64_matches_cv2_float64(rng):
    img = rng.random((123, 45, 3))
    with jax.enable_x64(True):
        out = jax.jit(lambda x: resize(x, (300, 17), "cubic"))(jnp.asarray(img, jnp.float64))
        assert out.dtype == jnp.float64
        out = np.asarray(out)
    assert err(out, cv_resize(img, (300, 17), "cubic")) <= TOL64


def test_same_size_is_exact_copy(rng):
    img = rng.random((31, 17, 3)).astype(np.float32)
    assert np.array_equal(np.asarray(resize(jnp.asarray(img), (31, 17))), img)
    out = resize_np(img, (31, 17), "linear")
    assert np.array_equal(out, img) and out is not img
    assert np.array_equal(cv_resize(img, (31, 17), "cubic"), img)


@pytest.mark.parametrize("channels", [None, 3])
def test_batched_equals_per_image(rng, channels):
    n, h, w = 3, 29, 41
    imgs = rng.random((n, h, w) if channels is None else (n, h, w, channels)).astype(np.float32)
    out = jax.jit(lambda x: resize(x, (64, 20), batched=True))(jnp.asarray(imgs))
    assert out.shape == (n, 64, 20) + (() if channels is None else (channels,))
    for i in range(n):
        np.testing.assert_allclose(np.asarray(out[i]), np.asarray(resize(jnp.asarray(imgs[i]), (64, 20))), atol=1e-6)
        assert err(out[i], cv_resize(imgs[i], (64, 20), "cubic")) <= TOL32
    np.testing.assert_allclose(resize_np(imgs, (64, 20), batched=True), np.asarray(out), atol=1e-6)


def test_resize_on_sharded_batch(rng):
    """Works on a batch sharded over the 8 host devices (conftest); the batch axis is never contracted."""
    n = len(jax.devices())
    imgs = rng.random((n, 16, 24)).astype(np.float32)
    mesh = jax.make_mesh((n,), ("b",))
    x = jax.device_put(imgs, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("b")))
    out = jax.jit(lambda a: resize(a, (40, 9), "linear", batched=True))(x)
    assert out.sharding.spec[0] == "b"  # stays sharded over the batch
    out = np.asarray(out)
    for i in range(n):
        assert err(out[i], cv_resize(imgs[i], (40, 9), "linear")) <= TOL32


# --- crop + resize as one operator pair (SPEC §5.4) --------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(x=st.integers(-12, 30), y=st.integers(-12, 30), w=st.integers(0, 40), h=st.integers(0, 40))
def test_crop_bounds_is_numpy_slicing(x, y, w, h):
    img = np.arange(20 * 25).reshape(20, 25)
    y0, y1, x0, x1 = crop_bounds([x, y, w, h], img.shape)
    assert np.array_equal(img[y0:y1, x0:x1], img[y:y + h, x:x + w])
    assert np.array_equal(crop(img, [x, y, w, h]), img[y:y + h, x:x + w])


# rects on a 300 x 400 (H x W) map: inside, clipped right/bottom (the rounding of §5.4 step 1), tiny (< 4 px:
# cv2's generic path), whole image, thin
RECTS = [[10, 20, 150, 150], [320, 250, 100, 100], [0, 0, 400, 300], [5, 7, 3, 2], [250, 0, 150, 30]]


def test_batched_crop_resize_matches_cv2(rng):
    base = rng.random((300, 400)).astype(np.float32)
    iy, wy, ix, wx = stack_crop_resize_bands(RECTS, base.shape, (1024, 1024))
    assert iy.shape == wy.shape == ix.shape == wx.shape == (len(RECTS), 1024, 4)
    assert iy.dtype == np.int32 and wy.dtype == np.float32
    out = np.asarray(batched_crop_resize(jnp.asarray(base), iy, wy, ix, wx))
    for i, r in enumerate(RECTS):
        x, y, w, h = r
        ref = cv2.resize(base[y:y + h, x:x + w], (1024, 1024), interpolation=cv2.INTER_CUBIC)
        assert err(out[i], ref) <= TOL32, r
        assert err(crop_resize_np(base, r), ref) <= TOL32, r
        y0, y1, x0, x1 = crop_bounds(r, base.shape)
        assert iy[i].min() >= y0 and iy[i].max() < y1 and ix[i].min() >= x0 and ix[i].max() < x1  # taps in the crop


def test_batched_crop_resize_rgb_float64_reference(rng):
    """RGB float64 crops resized to a network size (SPEC §3.2 step 1 on a patch): cv2's generic path."""
    rgb = rng.random((120, 90, 3))
    rects = [[3, 4, 50, 50], [60, 100, 40, 40]]
    for method in ("cubic", "linear"):  # MiDaS / DAv2 resize CUBIC, LeReS LINEAR
        bands = stack_crop_resize_bands(rects, rgb.shape[:2], (384, 384), method, cv_dtype=np.float64, channels=3)
        assert bands[0].shape[-1] == {"cubic": 4, "linear": 2}[method]
        out = np.asarray(batched_crop_resize(jnp.asarray(rgb, jnp.float32), *bands))
        for i, (x, y, w, h) in enumerate(rects):
            ref = cv_resize(rgb[y:y + h, x:x + w], (384, 384), method)
            assert err(out[i], ref) <= TOL32
            assert err(crop_resize_np(rgb, rects[i], (384, 384), method), ref) <= TOL64


@pytest.mark.parametrize("method", ["cubic", "linear"])
def test_banded_crop_resize_equals_dense_operators(rng, method):
    """The bands hold exactly the dense operators' weights (same numbers, zeros dropped), and applying them
    gives the dense einsum's result up to float32 summation order; gray and RGB, up and down."""
    base = rng.random((300, 400)).astype(np.float32)
    for size in ((256, 192), (40, 700)):
        iy, wy, ix, wx = stack_crop_resize_bands(RECTS, base.shape, size, method)
        ry, rx = stack_crop_resize_matrices(RECTS, base.shape, size, method)
        for i in range(len(RECTS)):  # the band scattered back is the dense operator, bit for bit
            for idx, w, dense in ((iy[i], wy[i], ry[i]), (ix[i], wx[i], rx[i])):
                back = np.zeros_like(dense)
                np.add.at(back, (np.arange(len(idx))[:, None], idx), w)
                np.testing.assert_array_equal(back, dense)
        banded = np.asarray(batched_crop_resize(jnp.asarray(base), iy, wy, ix, wx))
        dense = np.asarray(batched_crop_resize_dense(jnp.asarray(base), jnp.asarray(ry), jnp.asarray(rx)))
        np.testing.assert_allclose(banded, dense, rtol=0, atol=2e-6)
    rgb = rng.random((120, 90, 3))
    rects = [[3, 4, 50, 50], [60, 100, 40, 40], [80, 0, 30, 20]]
    img = jnp.asarray(rgb, jnp.float32)
    bands = stack_crop_resize_bands(rects, rgb.shape[:2], (64, 64), method, cv_dtype=np.float64, channels=3)
    ry, rx = stack_crop_resize_matrices(rects, rgb.shape[:2], (64, 64), method, cv_dtype=np.float64, channels=3)
    np.testing.assert_allclose(np.asarray(batched_crop_resize(img, *bands)),
                               np.asarray(batched_crop_resize_dense(img, ry, rx)), rtol=0, atol=2e-6)


def test_band_of_refuses_non_band_operators_and_pads():
    m = resize_matrix(10, 7, "cubic")
    idx, w = band_of(m, 4)
    assert idx.shape == (7, 4) and idx.min() >= 0 and idx.max() <= 9
    with pytest.raises(ValueError, match="not a 2-tap band"):
        band_of(m, 2)  # cubic weights need 4 taps: a 2-tap band would drop weights
    sparse = np.zeros((3, 8))
    sparse[0, [0, 5]] = 1.0  # non-zeros 6 columns apart
    with pytest.raises(ValueError):
        band_of(sparse, 4)
    i3, w3 = resize_band(3, 9, "cubic")  # a source shorter than k: k taps all the same, extra ones weigh 0
    assert i3.shape == (9, 4) and i3.max() == 2 and not w3[:, 3].any()
    pi, pw = shifted(resize_band(10, 7, "linear"), 5, rows=9)
    assert pi.shape == (9, 2) and not pw[7:].any() and (pi[7:] == 5).all()
    np.testing.assert_array_equal(pi[:7], resize_band(10, 7, "linear")[0] + 5)


def test_batched_paste_matches_cv2(rng):
    maps = rng.random((len(RECTS), 64, 64))  # a smaller "merge size" keeps the test fast; same code path
    full = (300, 400)
    sy, sx = stack_paste_matrices(RECTS, full, (64, 64))
    out = np.asarray(batched_paste(jnp.asarray(maps, jnp.float32), jnp.asarray(sy), jnp.asarray(sx)))
    assert out.shape == (len(RECTS),) + full
    for i, r in enumerate(RECTS):
        y0, y1, x0, x1 = crop_bounds(r, full)
        ref = np.zeros(full)
        ref[y0:y1, x0:x1] = cv2.resize(maps[i], (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
        assert err(out[i], ref) <= TOL32, r
        sy1, sx1 = paste_matrices(r, full, (64, 64))
        assert err(sy1 @ maps[i] @ sx1.T, ref) <= TOL64, r


def test_paste_undoes_nothing_outside_rect_and_empty_rect_raises():
    sy, sx = paste_matrices([390, 290, 50, 50], (300, 400), (16, 16))
    assert not sy[:290].any() and not sx[:390].any()
    with pytest.raises(ValueError):
        crop_resize_bands([400, 0, 10, 10], (300, 400))
    with pytest.raises(ValueError):
        crop_resize_matrices([400, 0, 10, 10], (300, 400))
    with pytest.raises(ValueError):
        paste_matrices([0, 0, 0, 10], (300, 400))
