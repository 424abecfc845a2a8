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
from hrjax.pipeline.buckets import ASPECTS, bucket_aspect, bucket_size, bucketed_input_size, ladder
from hrjax.pipeline.config import BoostConfig
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


def test_size_ladder():
    assert ladder(384, 1568) == (384, 448, 544, 640, 768, 928, 1088, 1280, 1568)
    assert ladder(512, 1568)[0] == 512 and ladder(512, 1568)[-1] == 1568
    assert all(s % 32 == 0 for s in ladder(448, 1568))
    assert bucket_size(384, 384, 1568) == 384          # the receptive-field pass keeps its size
    assert bucket_size(1728, 384, 1568) == 1568        # above the cap: the cap (the pipeline clamps first anyway)
    assert bucket_size(960, 384, 1568) == 928 and bucket_size(1100, 384, 1568) == 1088
    for m in range(384, 1569, 32):  # never more than ~11 % (half the widest step) from the request
        assert abs(math.log(bucket_size(m, 384, 1568) / m)) < math.log(1.11)


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
    assert len(shapes) <= len(ASPECTS) * len(ladder(rf, 1568))
    # the base's own rule on the bucket: MiDaS's long side is the rung, DAv2's short side at least the rung
    rows, cols = size(3024, 4032, 384 if model != "dav2_vits" else 512)
    assert {"midas_v21": (288, 384), "dav2_vits": (518, 686), "leres_res101": (448, 448)}[model] == (rows, cols)


def test_buckets_join_the_resume_identity_only_when_on(tmp_path):
    off = result_identity(BoostConfig(), weights_dir=tmp_path)
    on = result_identity(BoostConfig(buckets=True), weights_dir=tmp_path)
    assert "buckets" not in off and on["buckets"] is True
    assert {k: v for k, v in on.items() if k != "buckets"} == off


def test_bucketed_run_compiles_no_network_program_for_a_new_size_in_its_bucket(native, golden):
    """r20 on two sizes of one image: in parity mode their high passes take two network shapes (448x576 and
    416x576, R = 576 for both); bucketed, both take 416x544 (3:4, rung 544), so the second image compiles no
    network program. (How far the result lands from parity: bench/precision.py --buckets, README.)"""
    img = cv2.imread(str(golden / "images" / "synthetic_480.png"))[:, :, ::-1] / 255.0
    first = cv2.resize(img, (208, 156), interpolation=cv2.INTER_AREA)
    second = cv2.resize(img, (240, 176), interpolation=cv2.INTER_AREA)
    cfg = BoostConfig(mode="r20", buckets=True)
    a = boost(native, first, cfg)
    n_programs = kernels.base_on_rgb._cache_size()
    b = boost(native, second, cfg)
    assert kernels.base_on_rgb._cache_size() == n_programs
    assert a.plan.R == b.plan.R == 576
    assert a.net_shapes == b.net_shapes == [(288, 384), (416, 544)]
    # parity mode's high passes (the reference's rule), without running them: two shapes
    midas = get_base("midas_v21")
    assert midas.input_size(156, 208, 576) == (448, 576) and midas.input_size(176, 240, 576) == (416, 576)
    assert b.depth.shape == (176, 240) and np.isfinite(b.depth).all() and b.depth.std() > 0
