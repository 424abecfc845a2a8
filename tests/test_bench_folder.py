"""bench/bench_folder.py's host-only parts: the photo sizes it makes and the whole-image network input shapes it
counts (checked against the shapes the reference called MiDaS with in the R20 goldens, and the bucketed shapes
the pipeline used for them)."""

import math
import shutil

import numpy as np
import pytest

from conftest import load_bench


@pytest.fixture(scope="module")
def bench_folder():
    return load_bench("bench_folder")


def test_photo_sizes(bench_folder):
    rng = np.random.default_rng(0)
    camera = [bench_folder.photo_size(i, 640, "camera", rng) for i in range(len(bench_folder.SENSOR_SIZES))]
    for (w, h), (sw, sh) in zip(camera, bench_folder.SENSOR_SIZES):
        assert max(w, h) == 640 and abs(w / h - sw / sh) < 0.01
    crops = [bench_folder.photo_size(i, 640, "random", rng) for i in range(200)]
    assert all(320 <= max(w, h) <= 640 and 0.49 < w / h < 2.01 for w, h in crops)
    ratios = sorted(math.log(w / h) for w, h in crops)
    assert ratios[0] < math.log(0.6) and ratios[-1] > math.log(1.6)   # spread over the range, not one format
    assert len(set(crops)) > 150


def test_network_shapes_are_the_references_whole_image_calls(bench_folder, golden, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("synthetic_480", "lunch_640"):
        shutil.copy(golden / "images" / f"{name}.png", folder / f"{name}.png")
    shutil.copy(golden / "images" / "lunch_640.png", folder / "lunch_copy.png")   # same size and content
    net = bench_folder.network_shapes(folder, "r20", None)
    for name in ("synthetic_480", "lunch_640"):
        ref = np.load(golden / "pipeline" / f"{name}_R20.npz")
        got = net["photos"][f"{name}.png"]
        assert got["R"] == int(ref["R"])
        assert got["parity"] == [list(s[2:]) for s in ref["midas_call_shapes"][:2].tolist()]
    # the bucketed passes of the R20 cases (docs/benchmarks.md, "Bucketed whole-image passes"): synthetic_480 is
    # 3:4 already, so its exact shapes; lunch_640 (494x640) is stretched to 3:4
    assert net["photos"]["synthetic_480.png"]["buckets"] == net["photos"]["synthetic_480.png"]["parity"]
    assert net["photos"]["lunch_640.png"]["buckets"] == [[288, 384], [1184, 1568]]
    assert net["photos"]["lunch_copy.png"] == net["photos"]["lunch_640.png"]
    assert net["distinct"] == {"parity": 3, "buckets": 3}   # 288x384 is both images' low pass
