"""R_x search, target size, patch selection and the host plan (SPEC §1.3, §2, §5.1–5.3, §9.1, §10).

Checked three ways: the golden pipeline bookkeeping (README §5/§6: exact, K/factor abs 1e-9), a literal
transliteration of the reference functions with the reference's own cv2/skimage calls on random images, and
hand-computed cases for the quirks (Q4, Q8, Q10, Q11, Q12) and the crash cases we define.
"""

import json
import math
import warnings

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrjax.pipeline import patches, search
from hrjax.pipeline.patches import (
    GradientMap,
    adaptive_selection,
    grid_rects,
    output_scale,
    patch_factor,
    plan,
    scale_rects,
    select_patches,
    target_size,
)
from hrjax.pipeline.search import processing_res

IMAGES = ("lunch_640", "synthetic_480")
MODES = ("R0", "R20", "Final")


def _read(path):
    # The reference way (SPEC §1.3 step 1): BGR uint8 -> RGB -> /255.0 float64.
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) / 255.0


@pytest.fixture(scope="module")
def golden_images(golden):
    return {name: _read(golden / "images" / f"{name}.png") for name in IMAGES}


@pytest.fixture(scope="module")
def golden_plans(golden, golden_images):
    """(golden npz, plan) for all 6 pipeline goldens, computed once."""
    out = {}
    for name in IMAGES:
        for mode in MODES:
            d = dict(np.load(golden / "pipeline" / f"{name}_{mode}.npz", allow_pickle=False))
            opts = json.loads(str(d["options_json"]))
            max_res = math.inf if opts["max_res"] is None else opts["max_res"]
            out[name, mode] = d, plan(golden_images[name], mode, max_res=max_res,
                                      output_resolution=opts["output_resolution"])
    return out


# --------------------------------------------------------------------------------------------------------
# Reference transliteration (SPEC §2, §5.1–5.3), with the reference's own cv2 / skimage calls.


def _ref_gray(img):
    return np.dot(img[..., :3], [0.2989, 0.5870, 0.1140])


def _ref_processing_res(img, basesize=384, confidence=0.2, scale_threshold=3, whole_size_threshold=3000):
    """utils.calculateprocessingres as SPEC §2 describes it; the two crash cases (Q8) are mapped to the
    behaviour hrjax defines: empty loop -> (B, 0.0); block size 0 -> break (K from the last P computed)."""
    measure = pytest.importorskip("skimage.measure")
    image_dim = int(min(img.shape[0:2]))
    gray = _ref_gray(img)
    grad = np.abs(cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)) + np.abs(cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3))
    grad = cv2.resize(grad, (image_dim, image_dim), cv2.INTER_AREA)  # literally the reference's call (Q4)
    m, mx = grad.min(), grad.max()
    middle = m + (0.4 * (mx - m))
    grad[grad < middle] = 0
    grad[grad >= middle] = 1
    kernel = np.ones((int(basesize / 32), int(basesize / 32)), float)
    kernel2 = np.ones((int(basesize / (4 * 32)), int(basesize / (4 * 32))), float)
    threshold = min(whole_size_threshold, scale_threshold * max(img.shape[:2]))
    outputsize_scale = basesize / 32
    grad_resized = None
    for p_size in range(int(basesize / 32), int(threshold / 32), int(basesize / (2 * 32))):
        n = int(np.floor(grad.shape[0] / p_size))
        try:
            pooled = measure.block_reduce(grad, (n, n), np.max)
        except ValueError:  # n == 0: the reference crashes here (Q8)
            break
        grad_resized = cv2.resize(pooled, (p_size, p_size), cv2.INTER_NEAREST)  # Q4 again
        grad_resized[grad_resized >= 0.5] = 1
        grad_resized[grad_resized < 0.5] = 0
        dilated = cv2.dilate(grad_resized, kernel, iterations=1)
        meanvalue = (1 - dilated).mean()
        if meanvalue > confidence:
            break
        outputsize_scale = p_size
    if grad_resized is None:  # the reference crashes here (UnboundLocalError, Q8)
        return basesize, 0.0
    grad_region = cv2.dilate(grad_resized, kernel2, iterations=1)
    return int(outputsize_scale * 32), grad_region.mean()


def _ref_generatepatchs(img, base_size, factor):
    """run.generatepatchs / utils.applyGridpatch / run.adaptiveselection, dict-based like the reference."""
    gray = _ref_gray(img)
    whole_grad = np.abs(cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)) + np.abs(cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3))
    threshold = whole_grad[whole_grad > 0].mean()
    whole_grad[whole_grad < threshold] = 0
    gf = whole_grad.sum() / len(whole_grad.reshape(-1))
    integral = cv2.integral(whole_grad)
    blsize = int(round(base_size / 2))
    stride = int(round(blsize * 0.75))
    grid = {}
    counter = 0
    for k in range(blsize, img.shape[1] - blsize, stride):
        for j in range(blsize, img.shape[0] - blsize, stride):
            grid[str(counter)] = {"rect": [k - blsize, j - blsize, 2 * blsize, 2 * blsize], "size": 2 * blsize}
            counter += 1

    def gfi(rect):
        x1, x2, y1, y2 = rect[1], rect[1] + rect[3], rect[0], rect[0] + rect[2]
        return integral[x2, y2] - integral[x1, y2] - integral[x2, y1] + integral[x1, y1]

    height, width = integral.shape
    search_step = int(32 / factor)
    selected = {}
    count = 0
    for c in range(len(grid)):
        bbox = grid[str(c)]["rect"]
        if gfi(bbox) / (bbox[2] * bbox[3]) >= gf:
            bbox_test = bbox.copy()
            selected[str(count)] = {}
            while True:
                bbox_test[0] = bbox_test[0] - int(search_step / 2)
                bbox_test[1] = bbox_test[1] - int(search_step / 2)
                bbox_test[2] = bbox_test[2] + search_step
                bbox_test[3] = bbox_test[3] + search_step
                if bbox_test[0] < 0 or bbox_test[1] < 0 or bbox_test[1] + bbox_test[3] >= height \
                        or bbox_test[0] + bbox_test[2] >= width:
                    break
                if gfi(bbox_test) / (bbox_test[2] * bbox_test[3]) < gf:
                    break
                bbox = bbox_test.copy()
            selected[str(count)]["rect"] = bbox
            selected[str(count)]["size"] = bbox[2]
            count += 1
    ordered = sorted(selected.items(), key=lambda x: x[1]["size"], reverse=True)
    rects = np.array([v["rect"] for _, v in ordered], dtype=np.int64).reshape(-1, 4)
    ids = np.array([int(k) for k, _ in ordered], dtype=np.int64)
    return rects, ids


def _random_image(rng, h, w, kind):
    if kind == "noise":
        return rng.random((h, w, 3))
    if kind == "blocks":  # piecewise-constant blocks: sparse edges
        bh, bw = max(1, h // int(rng.integers(2, 9))), max(1, w // int(rng.integers(2, 9)))
        small = rng.random((-(-h // bh), -(-w // bw), 3))
        return np.repeat(np.repeat(small, bh, axis=0), bw, axis=1)[:h, :w]
    # smooth ramp plus a few sharp discs: mostly flat with localized detail
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w, yy / h, 0.5 + 0 * xx], axis=-1) * 0.3
    for _ in range(int(rng.integers(1, 5))):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(3, max(4, min(h, w) // 3))
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.random(3)
    return img


# --------------------------------------------------------------------------------------------------------
# Goldens (README §5, tolerances §6)


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("mode", MODES)
def test_golden_search(golden_plans, name, mode):
    d, p = golden_plans[name, mode]
    assert tuple(int(v) for v in d["input_shape"]) == p.input_shape
    assert p.R == int(d["R"]) and p.R0 == int(d["R0"])
    assert abs(p.K - float(d["K"])) <= 1e-9
    assert abs(p.R0_K - float(d["R0_K"])) <= 1e-9
    assert p.boost == (mode == "Final")


@pytest.mark.parametrize("name", IMAGES)
def test_golden_final_bookkeeping(golden_plans, name):
    d, p = golden_plans[name, "Final"]
    assert abs(p.factor - float(d["factor"])) <= 1e-9
    assert p.target_size == tuple(int(v) for v in d["target_size"])
    assert p.img_target.shape == p.target_size + (3,) and p.img_target.dtype == np.float64
    assert p.n_patches == int(d["n_patches"])
    np.testing.assert_array_equal(p.patch_ids, d["patch_ids"])
    np.testing.assert_array_equal(p.rects_target, d["patch_rects_target"])
    np.testing.assert_array_equal(p.rects_scaled, d["patch_rects_scaled"])
    assert abs(p.mergein_scale - float(d["mergein_scale"])) <= 1e-12
    assert p.mergein_shape == tuple(int(v) for v in d["mergein_shape"])
    assert p.img_out.shape == p.mergein_shape + (3,) and p.img_out.dtype == np.float64
    # Stable sort: equal sizes keep the kept-grid (column-major) order; both goldens have such ties.
    sizes = p.rects_target[:, 2]
    ties = sizes[1:] == sizes[:-1]
    assert ties.any() and np.all(np.diff(p.patch_ids)[ties] > 0)


@pytest.mark.parametrize("name", IMAGES)
@pytest.mark.parametrize("mode", ("R0", "R20"))
def test_golden_whole_image_modes_have_no_patches(golden_plans, name, mode):
    _, p = golden_plans[name, mode]
    assert p.factor is None and p.target_size is None and p.img_target is None and p.img_out is None
    assert p.n_patches == 0 and p.rects_target.shape == (0, 4) and p.rects_scaled.shape == (0, 4)


def test_golden_final_images_are_cv2_cubic(golden_plans, golden_images):
    # Step 8 / 10: the target image is CUBIC from the input (may overshoot, never clipped); img_out is CUBIC from
    # the target image.
    _, p = golden_plans["synthetic_480", "Final"]
    img = golden_images["synthetic_480"]
    a, b = p.target_size
    ref_t = cv2.resize(img, (b, a), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(p.img_target, ref_t)
    assert ref_t.max() > 1.0 or ref_t.min() < 0.0  # this image overshoots: nothing may clip it
    ho, wo = p.mergein_shape
    np.testing.assert_array_equal(p.img_out, cv2.resize(ref_t, (wo, ho), interpolation=cv2.INTER_CUBIC))


def test_plan_arrays_are_read_only(golden_plans):
    _, p = golden_plans["lunch_640", "Final"]
    with pytest.raises(ValueError):
        p.rects_target[0, 0] = 1
    with pytest.raises(ValueError):
        p.img_out[0, 0, 0] = 1.0
    with pytest.raises(AttributeError):
        p.R = 1  # frozen dataclass


@pytest.mark.parametrize("name", IMAGES)
def test_golden_select_patches_matches_transliteration(golden_plans, name):
    _, p = golden_plans[name, "Final"]
    rects, ids = _ref_generatepatchs(p.img_target, 768, p.factor)
    np.testing.assert_array_equal(p.rects_target, rects)
    np.testing.assert_array_equal(p.patch_ids, ids)


def test_golden_max_res_below_r_skips_boosting(golden_images):
    # SPEC §1.3 step 7: lunch_640 has R20 = 1728; max_res 1700 < R -> whole-image result, factor still computed.
    p = plan(golden_images["lunch_640"], "final", max_res=1700)
    assert p.R == 1728 and not p.boost and p.n_patches == 0 and p.target_size is None and p.img_out is None
    assert p.factor == patch_factor(p.K, p.R)


def test_golden_output_resolution_0(golden_images):
    # output_resolution 0: s = 1, merged-in shape = target size, rects unscaled.
    p = plan(golden_images["synthetic_480"], "final", max_res=2200, output_resolution=0)
    assert p.mergein_scale == 1.0 and p.mergein_shape == p.target_size == (1650, 2200)
    np.testing.assert_array_equal(p.rects_scaled, p.rects_target)
    np.testing.assert_array_equal(p.img_out, p.img_target)


# --------------------------------------------------------------------------------------------------------
# Resolution search (SPEC §2)


def test_search_uses_linear_resize_q4(golden_images):
    # With the INTER_AREA the reference *meant*, lunch_640's R20 search gives a different answer; we must not.
    img = golden_images["lunch_640"]
    e = search.edge_map(img)
    d = min(img.shape[:2])
    gray = np.dot(img, [0.2989, 0.5870, 0.1140])
    grad = np.abs(cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)) + np.abs(cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3))
    area = cv2.resize(grad, (d, d), interpolation=cv2.INTER_AREA)
    e_area = (area >= area.min() + 0.4 * (area.max() - area.min())).astype(np.float64)
    assert not np.array_equal(e, e_area)
    assert processing_res(img, conf=0.2) == (1728, pytest.approx(0.4070644718792867, abs=1e-12))


@settings(max_examples=25, deadline=None)
@given(st.integers(8, 260), st.integers(8, 260), st.sampled_from(["noise", "blocks", "discs"]),
       st.sampled_from([0.0, 0.2]), st.sampled_from([384, 448]), st.integers(0, 2**32 - 1))
def test_search_matches_transliteration_random(h, w, kind, conf, rf, seed):
    img = _random_image(np.random.default_rng(seed), h, w, kind)
    r, k = processing_res(img, receptive_field=rf, conf=conf)
    r_ref, k_ref = _ref_processing_res(img, rf, conf)
    assert r == r_ref
    assert k == k_ref
    assert r >= rf and (r - rf) % (32 * int(rf / 64)) == 0


@pytest.mark.parametrize("shape", [(64, 48), (48, 64), (138, 100), (100, 138), (20, 20)])
@pytest.mark.parametrize("conf", [0.0, 0.2])
def test_search_empty_loop_defined(shape, conf):
    # Reference crash Q8 (long side <= 138 for B = 384): defined as (B, 0.0).
    img = np.random.default_rng(0).random(shape + (3,))
    assert processing_res(img, conf=conf) == (384, 0.0)
    assert patch_factor(0.0, 384) == 0.2


def test_search_empty_loop_boundary_and_leres():
    rng = np.random.default_rng(1)
    # 139: 3*139 = 417 -> range(12, 13, 6) = [12]: the loop runs once.
    r, k = processing_res(rng.random((139, 100, 3)), conf=0.2)
    assert r == 384 and k > 0
    # LeReS (B = 448): empty up to 159 (3*159 = 477 < 480), runs at 160.
    assert processing_res(rng.random((159, 120, 3)), receptive_field=448) == (448, 0.0)
    assert processing_res(rng.random((160, 120, 3)), receptive_field=448)[1] > 0


@pytest.mark.parametrize("shape", [(2000, 40), (40, 2000)])
def test_search_zero_block_defined(shape):
    # Reference crash Q8: with a dense edge map the search never breaks, and reaches p = 42 > d = 40 (n = 0).
    # Defined as a break: R = 36*32 and K from the P of p = 36.
    img = np.random.default_rng(2).random(shape + (3,))
    r, k = processing_res(img, conf=0.2)
    assert r == 36 * 32
    assert (r, k) == _ref_processing_res(img, 384, 0.2)
    e = search.edge_map(img)
    p36 = (cv2.resize(e, (36, 36)) >= 0.5).astype(np.float64)  # n = 40 // 36 = 1: pooling is the identity
    assert k == cv2.dilate(p36, np.ones((3, 3))).mean()


def test_search_zero_block_on_first_iteration():
    # Short side < 12 with a long side > 138: no P at all -> (B, 0.0) like the empty loop.
    img = np.random.default_rng(3).random((2000, 10, 3))
    assert processing_res(img, conf=0.2) == (384, 0.0)


def test_search_constant_image():
    # Zero gradient: lo = hi = mid = 0, the edge map is all ones, nothing is ever missed -> the largest R.
    img = np.full((300, 400, 3), 0.25)
    assert processing_res(img, conf=0.0) == (1152, 1.0)  # T = min(3000, 1200) -> p < 37.5 -> 36


# --------------------------------------------------------------------------------------------------------
# Factor, target size, output scale, rect scaling (SPEC §1.3 steps 6, 8, 10; Q10, Q12)


def test_patch_factor():
    assert patch_factor(0.4070644718792867, 1728) == 0.9378765432098766  # lunch_640 golden, bit-exact
    assert patch_factor(0.3912, 2112) == 1.0  # SPEC §10: 1.10 clamps to 1
    assert patch_factor(0.01, 384) == 0.2  # lower clamp
    assert patch_factor(0.28935185185185186, 960) == pytest.approx(0.37037037037037035, abs=1e-15)


def test_target_size_worked_example():
    # SPEC §10 (lunch_rgb.jpg, 1543 x 2000): MiDaS R20 = 2112, factor 1 -> 3259 x 4224; LeReS R = 2464 -> 3802 x 4928.
    assert target_size(1543, 2000, 2112, 1.0) == (3259, 4224)
    assert target_size(1543, 2000, 2464, 1.0) == (3802, 4928)
    assert output_scale((1543, 2000), (3259, 4224)) == (1543 / 3259, (1543, 2000))


def test_target_size_goldens():
    assert target_size(494, 640, 1728, 0.9378765432098766, 2200) == (1698, 2200)
    assert target_size(360, 480, 960, 0.37037037037037035, 2200) == (1650, 2200)
    # Without the cap: 2R/factor on the long side.
    assert target_size(360, 480, 960, 0.37037037037037035) == (3888, 5184)


def test_target_size_round_half_even_q10():
    # 2R*h/w = 768*5/1536 = 2.5 -> 2 (half-up would give 3).
    assert target_size(5, 1536, 384, 1.0) == (2, 768)
    assert target_size(1536, 5, 384, 1.0) == (768, 2)
    # max_res recompute: 768 > 700, long side -> 700, short side round(700*1/280 = 2.5) = 2.
    assert target_size(1, 280, 384, 1.0, 700) == (2, 700)
    assert target_size(280, 1, 384, 1.0, 700.0) == (700, 2)
    assert all(isinstance(v, int) for v in target_size(280, 1, 384, 1.0, 700.0))
    # Square images take the "else" branch (b = 2R).
    assert target_size(100, 100, 384, 0.5) == (1536, 1536)


def test_output_scale():
    s, shape = output_scale((494, 640), (1698, 2200))
    assert s == 494 / 1698 and shape == (494, 640)
    assert output_scale((494, 640), (1698, 2200), 0) == (1.0, (1698, 2200))
    # Q12: round(b*s) may differ from W_in (40 x 2000 -> target 46 x 2304 -> 40 x 2003).
    assert output_scale((40, 2000), (46, 2304)) == (40 / 46, (40, 2003))
    with pytest.raises(ValueError):
        output_scale((494, 640), (1698, 2200), 2)


def test_scale_rects_round_half_even():
    out = scale_rects(np.array([[1, 3, 5, 7]]), 0.5)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[0, 2, 2, 4]])  # 0.5, 1.5, 2.5, 3.5
    assert scale_rects(np.zeros((0, 4), np.int64), 0.3).shape == (0, 4)


# --------------------------------------------------------------------------------------------------------
# Grid and adaptive selection (SPEC §5.2, §5.3; Q11)


def test_grid_worked_example_counts():
    # SPEC §10: 12 columns x 9 rows = 108 squares, for MiDaS (768, stride 288) and LeReS (896, stride 336).
    g = grid_rects(3259, 4224, 768)
    assert len(g) == 108
    assert g[0] == [0, 0, 768, 768] and g[1] == [0, 288, 768, 768]  # rows are the inner loop
    assert g[9] == [288, 0, 768, 768]
    assert len(grid_rects(3802, 4928, 896)) == 108
    assert grid_rects(3802, 4928, 896)[1] == [0, 336, 896, 896]


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4000), st.integers(1, 4000), st.sampled_from([768, 896, 96]))
def test_grid_count_formula(h, w, base):
    bl = base // 2
    stride = int(round(bl * 0.75))
    g = grid_rects(h, w, base)
    expect = math.ceil((w - 2 * bl) / stride) * math.ceil((h - 2 * bl) / stride) if min(h, w) > 2 * bl else 0
    assert len(g) == expect
    assert all(x + s < w and y + s < h for x, y, s, _ in g)  # never reaches the right/bottom edge


def _ones_map(h, w):
    g = np.ones((h, w))
    return GradientMap(integral=cv2.integral(g), gf=1.0, threshold=1.0)


def test_adaptive_odd_step_grows_asymmetrically():
    # factor 0.7 -> step = int(45.7) = 45 (odd), half = 22: x -= 22, w += 45 per step; stops when x would be < 0.
    out = adaptive_selection(_ones_map(1000, 1000), [[100, 100, 200, 200]], 0.7)
    assert out == [(0, [12, 12, 380, 380])]


def test_adaptive_may_touch_right_bottom_edge():
    # step 64 (factor 0.5): 472 - 32j, 400 + 64j -> j = 4 ends exactly at 1000 = W_t (bound is I.shape = W_t + 1).
    out = adaptive_selection(_ones_map(1000, 1000), [[472, 472, 400, 400]], 0.5)
    assert out == [(0, [344, 344, 656, 656])]
    assert out[0][1][0] + out[0][1][2] == 1000


def test_adaptive_density_rules():
    # Gradient only in the top-left 300 x 300 of a 1000 x 1000 map; gf = 0.09.
    g = np.zeros((1000, 1000))
    g[:300, :300] = 1.0
    gm = GradientMap(integral=cv2.integral(g), gf=g.sum() / g.size, threshold=1.0)
    grid = [[500, 500, 200, 200], [100, 100, 100, 100], [200, 200, 200, 200]]
    out = adaptive_selection(gm, grid, 1.0)  # step 32, half 16
    # The flat square is dropped; ids count kept squares only. [100,100,100,100] grows while density >= 0.09,
    # up to x = 0; [200,200,200,200] (density 0.25) grows while its density stays >= gf.
    assert [i for i, _ in out] == [0, 1]
    ref = []
    for rect in grid[1:]:
        x, y, w, h = rect
        while True:
            c = [x - 16, y - 16, w + 32, h + 32]
            if c[0] < 0 or c[1] < 0 or c[0] + c[2] > 1000 or c[1] + c[3] > 1000:
                break
            if g[c[1]:c[1] + c[3], c[0]:c[0] + c[2]].sum() / (c[2] * c[3]) < gm.gf:
                break
            x, y, w, h = c
        ref.append([x, y, w, h])
    assert [r for _, r in out] == ref
    assert out[0][1][:2] == [4, 4]  # stopped by the x >= 0 bound, not by density


def test_select_patches_constant_image():
    rects, ids = select_patches(np.zeros((1000, 1400, 3)), 768, factor=1.0)  # defined as no patches
    assert rects.shape == (0, 4) and rects.dtype == np.int64 and ids.shape == (0,) and ids.dtype == np.int64


@settings(max_examples=12, deadline=None)
@given(st.integers(100, 420), st.integers(100, 420), st.sampled_from(["noise", "blocks", "discs"]),
       st.sampled_from([1.0, 0.7, 0.37, 0.2]), st.integers(0, 2**32 - 1))
def test_select_patches_matches_transliteration_random(h, w, kind, factor, seed):
    # A small base size (96 -> 96 px squares, stride 36) gives many grid squares and growth steps on small images.
    img = _random_image(np.random.default_rng(seed), h, w, kind)
    rects, ids = select_patches(img, 96, factor=factor)
    r_ref, i_ref = _ref_generatepatchs(img, 96, factor)
    np.testing.assert_array_equal(rects, r_ref)
    np.testing.assert_array_equal(ids, i_ref)
    assert np.all(rects[:, 2] == rects[:, 3])  # square
    assert np.all(np.diff(rects[:, 2]) <= 0)  # largest first
    if len(rects):
        assert rects[:, 0].min() >= 0 and rects[:, 1].min() >= 0
        assert np.all(rects[:, 0] + rects[:, 2] <= w) and np.all(rects[:, 1] + rects[:, 3] <= h)


def test_gradient_map_values():
    img = _random_image(np.random.default_rng(5), 120, 160, "discs")
    gm = patches.gradient_map(img)
    gray = np.dot(img, [0.2989, 0.5870, 0.1140])
    g = np.abs(cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)) + np.abs(cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3))
    thr = g[g > 0].mean()
    g[g < thr] = 0
    assert gm.threshold == thr and gm.gf == g.sum() / g.size
    np.testing.assert_array_equal(gm.integral, cv2.integral(g))


# --------------------------------------------------------------------------------------------------------
# Edge cases of the whole host flow


def test_constant_image_no_patches_no_warning():
    # mean(G[G > 0]) of an empty set is NaN in the reference; defined: no patches (and no RuntimeWarning).
    img = np.full((400, 700, 3), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gm = patches.gradient_map(img)
        assert math.isnan(gm.threshold) and gm.gf == 0.0
        p = plan(img, "final", max_res=2000)
    assert p.boost and p.n_patches == 0 and p.rects_scaled.shape == (0, 4)
    assert p.img_out.shape == p.mergein_shape + (3,)


@pytest.mark.parametrize("shape", [(64, 48), (48, 64)])
def test_tiny_image_plan(shape):
    # Empty R loop -> R = 384, K = 0 -> factor 0.2 -> the target is 2R/0.2 = 3840 on the long side (the
    # reference's arithmetic for this defined case); max_res keeps the test fast and exercises the recompute.
    img = np.random.default_rng(6).random(shape + (3,))
    for mode in ("r0", "r20"):
        p = plan(img, mode)
        assert (p.R, p.K, p.R0, p.R0_K) == (384, 0.0, 384, 0.0) and not p.boost
    p = plan(img, "Final", max_res=1000)
    assert p.factor == 0.2
    assert max(p.target_size) == 1000 and p.mergein_shape == shape
    assert p.rects_scaled.shape == p.rects_target.shape


@pytest.mark.parametrize("shape", [(2000, 40), (40, 2000), (2000, 10)])
def test_extreme_aspect_plan(shape):
    img = np.random.default_rng(7).random(shape + (3,))
    p = plan(img, "final")
    assert p.boost and p.n_patches == 0  # the short target side is far below 768: no grid squares
    a, b = p.target_size
    assert p.img_target.shape == (a, b, 3) and p.img_out.shape == p.mergein_shape + (3,)
    assert p.mergein_shape[0] == shape[0]


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError):
        plan(np.zeros((50, 50)), "final")  # grayscale: promoting to 3 channels is the caller's job
    with pytest.raises(ValueError):
        plan(np.zeros((50, 50, 3)), "r10")
    with pytest.raises(ValueError):
        plan(np.zeros((200, 200, 3)), "final", output_resolution=2)


@pytest.mark.heavy
@pytest.mark.parametrize(("name", "target", "n"), [("lunch_640", (2845, 3685), 65), ("synthetic_480", (3888, 5184), 80)])
def test_golden_uncapped_patch_counts(golden_images, name, target, n):
    # README §5: without --max_res the Final runs select 65 (lunch) and 80 (synthetic) patches (~1.5 s / 3.5 s here).
    p = plan(golden_images[name], "final")
    assert p.target_size == target and p.n_patches == n
