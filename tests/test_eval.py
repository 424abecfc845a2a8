"""Evaluation metrics (hrjax.eval, SPEC 8): hand-computed tiny cases, the reference's pair rules, invariances,
reproducibility, and the ``evaluate`` command. The expected numbers are worked out in the comments."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

pytest.importorskip("skimage")

from hrjax.eval.metrics import (  # noqa: E402
    EPS,
    depth_errors,
    evaluate_normalised,
    evaluate_pair,
    matlab_rescale,
    mean_metrics,
    normalise_estimate,
    normalise_gt,
    ordinal,
    pair_error,
    rmse,
    sample_points,
)
from hrjax.eval.superpixels import (  # noqa: E402
    SamplePoints,
    imresize_nearest,
    neighbour_pairs,
    points_from_labels,
    scored_pairs,
    slic_labels,
    superpixel_centres,
)

# ---------------------------------------------------------------------------------------------------------
# normalisation (SPEC 8.1)


def test_matlab_rescale_ignores_nan_and_constant_gives_lower():
    np.testing.assert_allclose(matlab_rescale(np.array([np.nan, 1.0, 3.0, 2.0])), [np.nan, 0, 1, 0.5])
    np.testing.assert_allclose(matlab_rescale(np.array([0.0, 1.0, 0.5]), 0.2, 1.0), [0.2, 1.0, 0.6])
    np.testing.assert_array_equal(matlab_rescale(np.array([np.nan, 4.0, 4.0]), 0.25, 1.0), [np.nan, 0.25, 0.25])


def test_normalise_gt_disparity_and_depth_by_hand():
    # disparity GT [[0, .5], [.25, 1]]: 0 -> NaN, mgd = .25; gd rescaled = (d - .25)/.75 -> [NaN, 1/3; 0, 1];
    # gz = 1/d = [NaN, 2; 4, 1] rescaled = (z - 1)/3 -> [NaN, 1/3; 1, 0]
    g = normalise_gt(np.array([[0, 0.5], [0.25, 1.0]]), "disparity")
    assert g.mgd == 0.25
    np.testing.assert_allclose(g.gd, [[np.nan, 1 / 3], [0, 1]], atol=1e-15)
    np.testing.assert_allclose(g.gz, [[np.nan, 1 / 3], [1, 0]], atol=1e-15)
    # depth GT [[0, 2], [4, 1]]: gz = [NaN, 2; 4, 1]; gd = 1/gz / max = [NaN, .5; .25, 1]; mgd = .25:
    # the same maps as above
    h = normalise_gt(np.array([[0, 2.0], [4.0, 1.0]]), "depth")
    assert h.mgd == 0.25
    np.testing.assert_allclose(h.gd, g.gd, atol=1e-15)
    np.testing.assert_allclose(h.gz, g.gz, atol=1e-15)


def test_normalise_estimate_by_hand():
    # ed = [0, .5, 1], mgd = .25: rescale(ed, .25, 1) = [.25, .625, 1]; 1/. = [4, 1.6, 1];
    # rescale(., 0, 1) = [1, .6/3, 0] = [1, .2, 0]
    np.testing.assert_allclose(normalise_estimate(np.array([0.0, 0.5, 1.0]), 0.25), [1, 0.2, 0], atol=1e-15)


# ---------------------------------------------------------------------------------------------------------
# ord and the pair scoring (SPEC 8.3)


def test_ordinal_thresholds_and_eps():
    np.testing.assert_array_equal(ordinal([1.2, 1.0, 0.8, 1.05], [1.0, 1.2, 1.0, 1.0], 1.1), [1, -1, -1, 0])
    assert ordinal(0.0, 0.0, 1.0) == 0                  # eps/eps = 1
    assert ordinal(np.nan, 1.0, 1.1) == 0               # NaN compares false
    # eps matters: (0 + eps)/(1e-16 + eps) = 0.689 > 1/1.5 -> 0, where 0/1e-16 would give -1
    assert ordinal(0.0, 1e-16, 1.5) == 0
    assert EPS == 2.220446049250313e-16


def test_pair_error_by_hand():
    # seven points in a row; GT depth g (0 and NaN = no GT), estimate e
    g = np.array([[0.5, 0.52, 0.6, 0.0, np.nan, 0.5, 0.3]])
    e = np.array([[0.5, 0.5, 0.5, 0.4, 0.4, 0.51, 0.4]])
    rows, cols = np.zeros(7, np.int64), np.arange(7)
    src = np.array([0, 0, 2, 2, 0, 1, 6, 5])
    dst = np.array([1, 2, 3, 4, 5, 6, 0, 2])
    # (0,1): g ratio .9615 -> D3R (f=.1) skips it; ORD (f=0): ord(g,1.03) = -1 (< 1/1.03), ord(e) = 0 -> 1
    # (0,2): g .833: ord -1 for both; e 1 -> 0: error 1 in both
    # (2,3) GT 0, (2,4) GT NaN, (0,5) equal GT: skipped by both
    # (1,6): g 1.73 -> +1, e 1.25 -> +1: 0 ; (6,0): g .6 -> -1, e .8 -> -1: 0
    # (5,2): g .833 -> -1; e 1.02: D3R r=.01 -> +1 (error 2), ORD r=.03 -> 0 (error 1)
    assert pair_error(g, e, rows, cols, src, dst, 0.1, 0.01) == (1 + 0 + 0 + 2, 4)     # D3R 3/4
    assert pair_error(g, e, rows, cols, src, dst, 0.0, 0.03) == (1 + 1 + 0 + 0 + 1, 5)  # ORD 3/5


def d3r_loop_reference(rel: list[list[int]]) -> list[tuple[int, int]]:
    """A literal port of the loop of the reference's D3R.m (0-based): which (i, j) get scored."""
    lists = [list(r) for r in rel]
    out = []
    for i in range(len(lists)):
        neighbours = list(lists[i])
        for j in neighbours:
            lists[j] = [k for k in lists[j] if k != i]
            if i != j:  # a self pair has ratio 1: ord(.., 1 + f) == 0, always skipped
                out.append((i, j))
    return sorted(out)


def test_scored_pairs_by_hand():
    # rel_0 = [1, 1, 2], rel_1 = [0, 3, 1], rel_2 = [2, 2, 2], rel_3 = [0, 0, 1]. The loop scores (0,1) twice
    # and (0,2) at i=0 (deleting 0 from rel_1), (1,3) at i=1 (deleting 1 from rel_3), nothing at i=2 (self),
    # and (3,0) twice at i=3 (3 is not in rel_0).
    rel = np.array([[1, 1, 2], [0, 3, 1], [2, 2, 2], [0, 0, 1]])
    s, d = scored_pairs(np.repeat(np.arange(4), 3), rel.ravel())
    got = sorted(zip(s.tolist(), d.tolist()))
    assert got == [(0, 1), (0, 1), (0, 2), (1, 3), (3, 0), (3, 0)]
    assert got == d3r_loop_reference(rel.tolist())


def test_scored_pairs_match_the_reference_loop_on_random_relations():
    rng = np.random.default_rng(5)
    for n in (1, 2, 5, 30):
        rel = rng.integers(0, n, size=(n, 3))
        s, d = scored_pairs(np.repeat(np.arange(n), 3), rel.ravel())
        assert sorted(zip(s.tolist(), d.tolist())) == d3r_loop_reference(rel.tolist())


# ---------------------------------------------------------------------------------------------------------
# superpixel points (SPEC 8.2)


def test_imresize_nearest_matlab_rule():
    a = np.arange(11)[:, None] * np.ones((1, 4))
    # scale .2: ceil(2.2) = 3 rows; u = 5x - 2 = 3, 8, 13 (1-based); 13 > 11 mirrors to 10 -> 0-based 2, 7, 9
    np.testing.assert_array_equal(imresize_nearest(a, 0.2)[:, 0], [2, 7, 9])
    # scale .5 on 4 samples: u = 2x - .5 = 1.5, 3.5 -> floor(u + .5) = 2, 4 -> 0-based 1, 3 (MATLAB's [2 4])
    np.testing.assert_array_equal(imresize_nearest(np.arange(4)[None, :], 0.5), [[1, 3]])
    assert imresize_nearest(a, 0.2).shape == (3, 1)


def test_superpixel_centres_floor_of_mean():
    # label 0 is an L: 1-based pixels (1,1) (2,1) (3,1) (3,2) (3,3): mean row 2.4 -> 2, mean col 1.6 -> 1
    # label 1: rows 1-2, cols 2-3: mean (1.5, 2.5) -> (1, 2)
    L = np.array([[0, 1, 1], [0, 1, 1], [0, 0, 0]])
    r, c = superpixel_centres(L)
    np.testing.assert_array_equal(r, [2, 1])
    np.testing.assert_array_equal(c, [1, 2])
    # mapped back with scale .5 (x2): (4, 2) and (2, 4) 1-based -> 0-based (3, 1) and (1, 3)
    p = points_from_labels(L, (6, 6), 0.5, np.random.default_rng(0))
    np.testing.assert_array_equal(p.rows, [3, 1])
    np.testing.assert_array_equal(p.cols, [1, 3])


def test_neighbours_are_bwdist_equal_1():
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(1)
    L = slic_labels(rng.random((24, 30)), 40, compactness=0.1)
    n = L.max() + 1
    expect = []
    for i in range(n):
        d = distance_transform_edt(L != i)       # MATLAB bwdist(L == i): distance to the nearest pixel of i
        expect += [(i, int(j)) for j in np.unique(L[d == 1])]
    got = neighbour_pairs(L)
    assert sorted(map(tuple, got.tolist())) == sorted(expect)
    assert not (got[:, 0] == got[:, 1]).any()


# ---------------------------------------------------------------------------------------------------------
# a whole image by hand: 4x6 pixels in six 2x2 blocks, one superpixel per block


BLOCKS = np.array([[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5], [3, 3, 4, 4, 5, 5]])


def blocks(values) -> np.ndarray:
    return np.asarray(values, np.float64)[BLOCKS]


def test_whole_image_by_hand():
    # GT disparity per block: [1, .5, .25, 0 (no GT), .5, .2] -> mgd = .2
    #   gd = (d - .2)/.8      = [1, .375, .0625, NaN, .375, 0]
    #   gz = rescale(1/d)     = rescale([1, 2, 4, NaN, 2, 5]) = [0, .25, .75, NaN, .25, 1]
    # estimate (raw, 16-bit/65535-like) per block: [1, .0625, .375, .375, .25, 0]
    #   rescale(ed, .2, 1)    = [1, .25, .5, .5, .4, .2];  1/. = [1, 4, 2, 2, 2.5, 5]
    #   ez = rescale(.)       = [0, .75, .25, .25, .375, 1]
    gt = blocks([1.0, 0.5, 0.25, 0.0, 0.5, 0.2])
    ed = blocks([1.0, 0.0625, 0.375, 0.375, 0.25, 0.0])
    g = normalise_gt(gt, "disparity")
    np.testing.assert_allclose(normalise_estimate(ed, g.mgd), blocks([0, 0.75, 0.25, 0.25, 0.375, 1]), atol=1e-15)

    # centres (1-based floor of the block means) = top-left pixel of each block: rows 0/2, cols 0/2/4.
    # Neighbour pairs (each once): 0-1 1-2 3-4 4-5 0-3 1-4 2-5. D3R (f=.1, r=.01) on gz/ez:
    #   0-x and 3-x: GT depth 0 (block 0 is the GT minimum, block 3 has no GT) -> skipped
    #   1-4: equal GT -> skipped;  1-2: gz -1 (.25 vs .75), ez +1 (.75 vs .25) -> 2
    #   2-5: gz -1, ez -1 -> 0;    4-5: gz -1, ez -1 -> 0          => D3R = 2/3
    # Random relations (given here instead of drawn): rel_0 = [0,3,5], rel_1 = [2,5,3], rel_2 = [1,5,0],
    # rel_3 = [1,2,4], rel_4 = [1,2,5], rel_5 = [2,0,1]. Scored (reference loop): (0,3) (0,5) (1,2) (1,5)
    # (1,3) (2,5) (2,0) (3,2) (3,4) (4,1) (4,2) (4,5) -- (2,1) (3,1) (5,2) (5,0) (5,1) were scored from the
    # other side, (0,0) is a self pair. ORD (f=0, r=.03):
    #   (1,2): 2;  (1,5): gz .25/1 -1, ez .75/1 -1 -> 0;  (2,5): 0;  (4,2): gz .25/.75 -1, ez .375/.25 +1 -> 2;
    #   (4,5): 0;  (4,1) equal GT and every pair with block 0 or 3 skipped      => ORD = 4/5
    rel = np.array([[0, 3, 5], [2, 5, 3], [1, 5, 0], [1, 2, 4], [1, 2, 5], [2, 0, 1]])
    p = points_from_labels(BLOCKS, gt.shape, 1.0, np.random.default_rng(0))
    np.testing.assert_array_equal(p.rows, [0, 0, 0, 2, 2, 2])
    np.testing.assert_array_equal(p.cols, [0, 2, 4, 0, 2, 4])
    assert sorted(zip(*(x.tolist() for x in p.neighbour))) == [(0, 1), (0, 3), (1, 2), (1, 4), (2, 5), (3, 4),
                                                              (4, 5)]
    pts = SamplePoints(p.rows, p.cols, p.neighbour, scored_pairs(np.repeat(np.arange(6), 3), rel.ravel()), BLOCKS)
    assert len(pts.random[0]) == 12

    m = evaluate_normalised(g, ed, pts)
    assert m.d3r == pytest.approx(2 / 3, abs=1e-15) and m.d3r_pairs == 3
    assert m.ord == pytest.approx(4 / 5, abs=1e-15) and m.ord_pairs == 5
    # RMSE on disparity: gd - ed per block = [0, .3125, -.3125, masked -> 0, .125, 0], 4 pixels each, 24 pixels:
    # sqrt(4 * (2 * .3125^2 + .125^2) / 24) = sqrt(.84375 / 24) = .1875
    assert m.rmse == pytest.approx(0.1875, abs=1e-15)
    # depth metrics over the 16 pixels of blocks 1, 2, 4, 5 (block 0: gz = 0, block 3: no GT):
    #   t = max(gz/ez, ez/gz) = [3, 3, 1.5, 1] -> > 1.25: 12/16; > 1.5625: 8/16; > 1.953125: 8/16
    #   AbsRel = (2 + 2/3 + .5 + 0)/4 = 19/24;  SqRel = (.25/.25 + .25/.75 + .015625/.25 + 0)/4
    #   log10 = (2 log10 3 + log10 1.5)/4
    assert (m.delta1_err, m.delta2_err, m.delta3_err) == (0.75, 0.5, 0.5)
    assert m.abs_rel == pytest.approx(19 / 24, rel=1e-14)
    assert m.sq_rel == pytest.approx((1 + 1 / 3 + 0.0625) / 4, rel=1e-14)
    assert m.log10 == pytest.approx((2 * math.log10(3) + math.log10(1.5)) / 4, rel=1e-14)


def test_rmse_counts_masked_pixels_as_zero_error():
    # gd = [NaN, .5, 1], ed = [.9, .25, 1]: masked pixel -> 0 - 0; errors [0, .25, 0] -> sqrt(.0625 / 3)
    assert rmse(np.array([np.nan, 0.5, 1.0]), np.array([0.9, 0.25, 1.0])) == pytest.approx(math.sqrt(0.0625 / 3))


def test_depth_errors_masking_and_empty():
    # gd NaN, gz == 0 and ez == 0 pixels are removed; left: (gz, ez) = (.5, .5), (.2, .4) -> t = [1, 2]
    gd = np.array([np.nan, 0.3, 0.3, 0.3, 0.3])
    gz = np.array([0.7, 0.0, 0.5, 0.5, 0.2])
    ez = np.array([0.1, 0.3, 0.0, 0.5, 0.4])
    d = depth_errors(gd, gz, ez)
    assert (d["delta1_err"], d["delta2_err"], d["delta3_err"]) == (0.5, 0.5, 0.5)
    assert d["abs_rel"] == pytest.approx((0 + 1) / 2)
    assert all(math.isnan(v) for v in depth_errors(gd[:1], gz[:1], ez[:1]).values())


def test_mean_omits_nan():
    from hrjax.eval.metrics import ImageMetrics

    a = ImageMetrics(*[0.5] * 9)
    b = ImageMetrics(math.nan, 1.0, *[0.25] * 7)
    m = mean_metrics([a, b])
    assert m["ord"] == 0.5 and m["d3r"] == 0.75 and m["rmse"] == 0.375
    assert math.isnan(mean_metrics([])["ord"])


# ---------------------------------------------------------------------------------------------------------
# invariances and reproducibility on a synthetic scene: floor, back wall, a box and a sphere, 200x300


def scene(h: int = 200, w: int = 300, stepped: bool = False) -> np.ndarray:
    """GT disparity in (0, 1] (max 1, like a full-range PNG), 0 = no GT in a small corner."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if stepped:   # five flat layers: every unequal GT pair differs by far more than 3 %
        d = np.full((h, w), 0.2)
        d[yy > 0.55 * h] = 0.35
        d[(xx > 0.15 * w) & (xx < 0.45 * w) & (yy > 0.2 * h)] = 0.5
        d[(xx - 0.7 * w) ** 2 + (yy - 0.45 * h) ** 2 < (0.18 * h) ** 2] = 0.7
        d[(xx - 0.3 * w) ** 2 + (yy - 0.8 * h) ** 2 < (0.1 * h) ** 2] = 1.0
    else:
        d = 0.25 + 0.1 * xx / w                                           # back wall
        floor = yy > 0.6 * h
        d[floor] = (0.25 + 0.7 * (yy - 0.6 * h) / (0.4 * h))[floor]      # floor, nearer towards the bottom
        box = (xx > 0.1 * w) & (xx < 0.35 * w) & (yy > 0.3 * h) & (yy < 0.75 * h)
        d[box] = (0.45 + 0.05 * xx / w)[box]
        r2 = (xx - 0.65 * w) ** 2 + (yy - 0.45 * h) ** 2
        ball = r2 < (0.25 * h) ** 2
        d[ball] = 0.6 + 0.3 * np.sqrt(1 - r2[ball] / (0.25 * h) ** 2)    # a sphere bulging towards us
    d = d / d.max()
    d[:6, :8] = 0.0
    return d


def perfect(d: np.ndarray) -> np.ndarray:
    """The estimate that normalises back to the GT exactly: the GT disparity min-maxed over its valid pixels
    (the value under no-GT pixels is irrelevant as long as it stays inside the range)."""
    v = d > 0
    lo, hi = d[v].min(), d[v].max()
    return np.where(v, (d - lo) / (hi - lo), 0.5)


@pytest.fixture(scope="module")
def smooth():
    d = scene()
    g = normalise_gt(d, "disparity")
    return d, g, sample_points(g, 1.0, 0)


def test_perfect_estimate_scores_zero(smooth):
    d, g, pts = smooth
    m = evaluate_normalised(g, perfect(d), pts)
    assert m.ord == 0 and m.d3r == 0 and m.rmse == pytest.approx(0, abs=1e-15)
    assert m.delta1_err == m.delta2_err == m.delta3_err == 0
    assert m.abs_rel < 1e-12
    assert m.superpixels > 3000 and m.ord_pairs > 10000 and m.d3r_pairs > 50


def test_reversed_depth_order_is_near_the_maximum_ord(smooth):
    d, g, pts = smooth
    m = evaluate_normalised(g, 1.0 - perfect(d), pts)
    assert 1.9 < m.ord <= 2.0 and 1.9 < m.d3r <= 2.0


def test_monotonic_transform_keeps_ord_zero():
    d = scene(stepped=True)
    g = normalise_gt(d, "disparity")
    pts = sample_points(g, 1.0, 3)
    for f in (np.square, np.sqrt, lambda x: np.log1p(20 * x)):
        m = evaluate_normalised(g, f(perfect(d)), pts)
        assert m.ord == 0 and m.d3r == 0, f
        assert m.ord_pairs > 1000 and m.d3r_pairs > 10
    # the depth error rates are not invariant
    assert evaluate_normalised(g, np.square(perfect(d)), pts).delta1_err > 0.1


def test_seed_reproducibility(smooth):
    d, g, _ = smooth
    yy, xx = np.mgrid[0:d.shape[0], 0:d.shape[1]]
    est = np.clip(perfect(d) + 0.08 * np.sin(xx / 17.0) * np.cos(yy / 11.0), 0, 1)
    a = evaluate_normalised(g, est, sample_points(g, 1.0, 0))
    b = evaluate_normalised(g, est, sample_points(g, 1.0, 0))
    c = evaluate_normalised(g, est, sample_points(g, 1.0, 1))
    assert a == b
    assert 0.02 < a.ord < 1.0
    assert c.ord != a.ord and abs(c.ord - a.ord) < 0.1 * a.ord
    assert c.d3r == a.d3r      # neighbour pairs do not depend on the seed
    # evaluate_pair = normalise + points + scoring
    assert evaluate_pair(d, est, gt_type="disparity", superpixel_scale=1.0, seed=0) == a


def test_superpixel_scale_0_2_maps_centres_back_into_the_image(smooth):
    d, g, _ = smooth
    pts = sample_points(g, 0.2, 0)
    assert pts.labels.shape == (40, 60)
    assert pts.rows.max() < d.shape[0] and pts.cols.max() < d.shape[1]
    # small 1-based centre r maps to 5r (1-based), so every full-resolution row index is 4 mod 5 (0-based)
    assert set(np.unique(pts.rows % 5)) == {4}
    assert evaluate_normalised(g, perfect(d), pts).ord == 0


def test_depth_gt_matches_its_disparity_gt():
    # a depth GT (iBims-1 style) and the disparity GT of the same scene give the same normalised maps
    d = scene(60, 90)
    z = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0) / 7.0
    gd, gz = normalise_gt(d, "disparity"), normalise_gt(z, "depth")
    np.testing.assert_allclose(gz.gd, gd.gd, atol=1e-12)
    np.testing.assert_allclose(gz.gz, gd.gz, atol=1e-12)
    assert gz.mgd == pytest.approx(gd.mgd, rel=1e-12)


# ---------------------------------------------------------------------------------------------------------
# the evaluate command


def write16(path, a):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.round(np.clip(a, 0, 1) * 65535).astype(np.uint16))


@pytest.fixture
def app():
    import typer

    from hrjax.eval.cli import register

    calls = {}

    def fake_factory(weights_dir, *, mode, max_res):
        calls.update(weights_dir=weights_dir, mode=mode, max_res=max_res)
        # the image encodes the GT disparity: "boost" is perfect, "base" reversed
        return {"base": lambda img: 1.0 - img[:, :, 0], f"boost-{mode}": lambda img: img[:, :, 0]}

    a = typer.Typer()
    register(a, estimators_factory=fake_factory)

    @a.command("other")
    def _other():  # a second command, so that typer keeps "evaluate" as a sub-command name
        pass

    return a, calls


def generic_dataset(tmp_path, names=("a", "b")):
    gt, pred, images = tmp_path / "gt", tmp_path / "pred", tmp_path / "img"
    for k, n in enumerate(names):
        d = scene(60, 90, stepped=True)
        d = np.roll(d, 7 * k, axis=1)
        write16(gt / f"{n}.png", d)
        write16(pred / f"{n}.png", perfect(d))
        write16(images / f"{n}.png", d)
    return gt, pred, images


def test_cli_generic_json_matches_the_library(tmp_path, app):
    from typer.testing import CliRunner

    from hrjax.eval.datasets import read_estimate, read_gt
    from hrjax.eval.runner import image_rng

    gt, pred, _ = generic_dataset(tmp_path)
    (pred / "a.png").unlink()
    write16(pred / "a.png", np.square(perfect(read_gt(gt / "a.png"))))
    out = tmp_path / "r.json"
    res = CliRunner(env={"COLUMNS": "200"}).invoke(
        app[0], ["evaluate", "--gt", str(gt), "--pred", str(pred), "--seed", "4", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "mean (2)" in res.output and "ORD" in res.output
    doc = json.loads(out.read_text())
    assert doc["seed"] == 4 and doc["superpixel_scale"] == 1.0 and doc["names"] == ["a", "b"]
    r = doc["methods"]["pred"]
    for n in ("a", "b"):
        expect = evaluate_pair(read_gt(gt / f"{n}.png"), read_estimate(pred / f"{n}.png"), superpixel_scale=1.0,
                               seed=image_rng(4, n))
        assert r["per_image"][n] == pytest.approx(expect.to_dict(), nan_ok=True)
    assert r["per_image"]["b"]["ord"] == 0 and r["per_image"]["a"]["delta1_err"] > 0
    assert r["mean"]["delta1_err"] == pytest.approx(r["per_image"]["a"]["delta1_err"] / 2)


def test_cli_run_scores_both_methods_side_by_side(tmp_path, app):
    from typer.testing import CliRunner

    gt, pred, images = generic_dataset(tmp_path)
    keep = tmp_path / "est"
    out = tmp_path / "r.json"
    res = CliRunner(env={"COLUMNS": "200"}).invoke(
        app[0], ["evaluate", "--gt", str(gt), "--images", str(images), "--run", "--mode", "r20",
                 "--keep-estimates", str(keep), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert app[1]["mode"] == "r20"
    doc = json.loads(out.read_text())
    assert set(doc["methods"]) == {"base", "boost-r20"}
    assert (keep / "boost-r20" / "a.png").is_file() and (keep / "base" / "b.png").is_file()
    assert doc["methods"]["boost-r20"]["mean"]["ord"] == 0
    assert doc["methods"]["base"]["mean"]["ord"] > 1.5
    assert "boost-r20" in res.output and "base" in res.output


def test_cli_reports_missing_and_bad_arguments(tmp_path, app):
    from typer.testing import CliRunner

    gt, pred, _ = generic_dataset(tmp_path)
    (pred / "b.png").unlink()
    r = CliRunner(env={"COLUMNS": "200"}).invoke(app[0], ["evaluate", "--gt", str(gt), "--pred", str(pred)])
    assert r.exit_code == 0 and "no estimate for 1 image" in r.output
    assert CliRunner().invoke(app[0], ["evaluate", "--gt", str(gt)]).exit_code == 2
    assert CliRunner().invoke(app[0], ["evaluate", "--gt", str(gt), "--pred", str(pred),
                                       "--dataset", "nyu"]).exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert CliRunner().invoke(app[0], ["evaluate", "--gt", str(gt), "--pred", str(empty)]).exit_code == 1


@pytest.mark.heavy
def test_cli_run_with_the_real_pipeline_hook(tmp_path, weights_dir):
    """``--run`` through the default hook (``pipeline_estimators``): synthetic weights, so only the plumbing
    (shapes, files, both methods in the report) is checked, not the scores."""
    import typer
    from typer.testing import CliRunner

    from hrjax.eval.cli import register

    a = typer.Typer()
    register(a)

    @a.command("other")
    def _other():
        pass

    gt, images = tmp_path / "gt", tmp_path / "img"
    d = scene(48, 64)
    write16(gt / "s.png", d)
    images.mkdir()
    assert cv2.imwrite(str(images / "s.png"), (np.dstack([d, d[:, ::-1], 1 - d]) * 255).astype(np.uint8))
    out = tmp_path / "r.json"
    res = CliRunner(env={"COLUMNS": "200"}).invoke(
        a, ["evaluate", "--gt", str(gt), "--images", str(images), "--run", "--mode", "r20",
            "--weights-dir", str(weights_dir), "--keep-estimates", str(tmp_path / "est"), "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert set(doc["methods"]) == {"base", "boost-r20"}
    for m in ("base", "boost-r20"):
        assert doc["methods"][m]["images"] == 1
        assert cv2.imread(str(tmp_path / "est" / m / "s.png"), cv2.IMREAD_UNCHANGED).shape == (48, 64)
