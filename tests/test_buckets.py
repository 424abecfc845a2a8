"""Bucketed whole-image passes (hrjax.pipeline.buckets): a fixed set of network input shapes for any image, each
base network's own input rule kept, and a pipeline run that compiles no new network program for a new image
size in the same bucket."""

import math

import cv2
import numpy as np
import pytest

from hrjax.bases import get_base
from hrjax.pipeline import kernels
from hrjax.pipeline.boost import boost
from hrjax.pipeline.buckets import ASPECTS, bucket_aspect, bucket_size, bucketed_input_size, size_grid
from hrjax.pipeline.config import BoostConfig
from hrjax.pipeline.search import processing_res
from hrjax.run.records import result_identity


def test_aspect_buckets_are_the_nearest_in_log_scale():
    assert bucket_aspect(3024, 4032) == (3, 4) and bucket_aspect(4032, 3024) == (4, 3)
    assert bucket_aspect(1080, 1920) == (9, 16) and bucket_aspect(640, 640) == (1, 1)
    assert bucket_aspect(494, 640) == (3, 4) and bucket_aspect(100, 1000) == (1, 2)   # beyond the last: the last
    rng = np.random.default_rng(0)
    for h, w in rng.integers(16, 5000, (300, 2)):
        got = bucket_aspect(int(h), int(w))
        best = min(abs(math.log(a[0] / a[1]) - math.log(h / w)) for a in ASPECTS)
        assert abs(math.log(got[0] / got[1]) - math.log(h / w)) == pytest.approx(best, abs=1e-12)


def test_sizes_are_the_searchs_grid():
    assert size_grid(384, 1568) == (384, 576, 768, 960, 1152, 1344, 1536, 1568)   # MiDaS: R = 384 + 192 j
    assert size_grid(448, 1568) == (448, 672, 896, 1120, 1344, 1568)              # LeReS: 448 + 224 j
    assert size_grid(512, 1568)[:3] == (512, 768, 1024)                           # DAv2: 512 + 256 j
    assert size_grid(384, 384) == (384,)
    # every request the pipeline makes keeps its size: the receptive field and R, clamped, from the search
    # itself (edge maps of random sizes and contents; R from 384 up to past the cap)
    rng = np.random.default_rng(2)
    seen = set()
    for k in range(40):
        h, w = (int(v) for v in rng.integers(60, 900, 2))
        img = cv2.GaussianBlur(rng.random((h, w, 3)), (0, 0), float(rng.uniform(0.5, 8)))
        for conf in (0.0, 0.2):
            r, _ = processing_res(img, 384, conf)
            seen.add(r)
            assert bucket_size(min(r, 1568), 384, 1568) == min(r, 1568)
    assert len(seen) >= 4 and max(seen) > 1568
    assert bucket_size(384, 384, 1568) == 384 and bucket_size(1728, 384, 1568) == 1568
    assert bucket_size(900, 384, 1568) == 960 and bucket_size(1100, 384, 1568) == 1152   # off-grid: nearest


@pytest.mark.parametrize("model, grid", [("midas_v21", 32), ("dav2_vits", 14), ("leres_res101", 32)])
def test_any_image_maps_to_a_fixed_set_of_network_inputs(model, grid):
    base = get_base(model)
    rf = base.receptive_field
    size = bucketed_input_size(base, rf, 1568)
    rng = np.random.default_rng(1)
    shapes = set()
    for h, w in rng.integers(200, 4500, (400, 2)):
        for msize in (rf, int(rng.integers(rf, 2200))):
            rows, cols = size(int(h), int(w), min(msize, 1568))
            assert rows % grid == 0 and cols % grid == 0
            shapes.add((rows, cols))
    assert len(shapes) <= len(ASPECTS) * len(size_grid(rf, 1568))
    # the base's own rule on the bucket: MiDaS's long side is the size, DAv2's short side at least the size
    rows, cols = size(3024, 4032, 384 if model != "dav2_vits" else 512)
    assert {"midas_v21": (288, 384), "dav2_vits": (518, 686), "leres_res101": (448, 448)}[model] == (rows, cols)


def test_buckets_join_the_resume_identity_only_when_on(tmp_path):
    off = result_identity(BoostConfig(), weights_dir=tmp_path)
    on = result_identity(BoostConfig(buckets=True), weights_dir=tmp_path)
    assert "buckets" not in off and on["buckets"] is True
    assert {k: v for k, v in on.items() if k != "buckets"} == off


def test_bucketed_run_compiles_no_network_program_for_a_new_size_in_its_bucket(small_models, golden):
    """r20 on two sizes of one image: in parity mode their high passes take two network shapes (448x576 and
    416x576, R = 576 for both); bucketed, both take 448x576 (3:4 at 576, the first one's exact shape), so the
    second image compiles no network program. (How far the result lands from parity: bench/precision.py
    --buckets, README.)"""
    img = cv2.imread(str(golden / "images" / "synthetic_480.png"))[:, :, ::-1] / 255.0
    first = cv2.resize(img, (208, 156), interpolation=cv2.INTER_AREA)
    second = cv2.resize(img, (240, 176), interpolation=cv2.INTER_AREA)
    cfg = BoostConfig(mode="r20", buckets=True)
    a = boost(small_models, first, cfg)
    n_programs = kernels.base_on_rgb._cache_size()
    b = boost(small_models, second, cfg)
    assert kernels.base_on_rgb._cache_size() == n_programs
    assert a.plan.R == b.plan.R == 576
    assert a.net_shapes == b.net_shapes == [(288, 384), (448, 576)]
    # parity mode's high passes (the reference's rule), without running them: two shapes
    midas = get_base("midas_v21")
    assert midas.input_size(156, 208, 576) == (448, 576) and midas.input_size(176, 240, 576) == (416, 576)
    assert b.depth.shape == (176, 240) and np.isfinite(b.depth).all() and b.depth.std() > 0
    # the first image's shapes are its exact (parity) ones, so its bucketed result is its parity result
    np.testing.assert_array_equal(a.depth, boost(small_models, first, BoostConfig(mode="r20")).depth)
