"""Depth Anything V2 (ViT-S, synthetic weights through the converter) as the pipeline's base network.

hrjax's own extension (docs/dav2.md): the reference never boosted DAv2, so there is no golden; these tests
check behaviour. A map of the image's size, finite, deterministic; every network input on DAv2's
multiple-of-14 grid and exactly what its input rule gives for the requests; Final batch-invariant; the CLI
equals the library.
"""

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from hrjax.bases import get_base
from hrjax.io import read_image
from hrjax.models.dav2_input import dav2_input_size
from hrjax.pipeline.boost import boost
from hrjax.pipeline.config import BoostConfig
from hrjax.pipeline.networks import load_models
from test_pipeline_golden import observed_calls  # noqa: F401  (a fixture)

IMAGE = "images/synthetic_480.png"


@pytest.fixture(scope="module")
def dav2_models(dav2_weights_dir, weights_dir):
    return load_models(dav2_weights_dir, base="dav2_vits", merge_weights_dir=weights_dir)


def test_dav2_base_description():
    for size in ("vits", "vitb", "vitl"):
        base = get_base(f"dav2_{size}")
        assert (base.receptive_field, base.patch_netsize, base.min_max, base.output) == (512, 1024, True,
                                                                                         "inverse_depth")
    # the requests on DAv2's grid (lower_bound): square patches 518^2 / 1036^2, the whole image aspect-kept with
    # its short side the official 518 (infer_image's input) at the receptive field
    size = get_base("dav2_vits").input_size
    assert size(300, 300, 512) == (518, 518) and size(700, 700, 1024) == (1036, 1036)
    assert size(360, 480, 512) == (518, 686) == dav2_input_size(360, 480)


def _assert_on_grid(observed, expected):
    shapes = [row[2:] for row in observed["midas"]]
    assert all(h % 14 == 0 and w % 14 == 0 for h, w in shapes), shapes
    assert shapes == expected


@pytest.mark.heavy
def test_dav2_r20_finite_deterministic_on_grid(golden, dav2_models, observed_calls):
    """R20 on synthetic_480. ``max_net_input`` 1036 (a config option, the reference's GPU_threshold) clamps the
    search's R = 1280 so the whole-image high pass stays ~4k tokens on CPU; the clamp is the pipeline's own
    and applies to every base alike."""
    img = read_image(golden / IMAGE)
    cfg = BoostConfig(mode="r20", max_batch=1, max_net_input=1024)
    first = boost(dav2_models, img, cfg)
    assert first.plan.R == 1280 and first.config.receptive_field == 512
    assert first.depth.shape == img.shape[:2] and first.depth.dtype == np.float32
    assert np.isfinite(first.depth).all() and np.ptp(first.depth) > 0
    _assert_on_grid(observed_calls, [dav2_input_size(*img.shape[:2], 512), dav2_input_size(*img.shape[:2], 1024)])
    assert first.net_shapes == [(518, 686), (1036, 1372)]
    second = boost(dav2_models, img, cfg)
    np.testing.assert_array_equal(first.depth, second.depth)


def _half_size(golden, tmp_path):
    """synthetic_480 at half size (180 x 240) as an 8-bit PNG: R20's R is 512 there, so every pass is cheap."""
    img = read_image(golden / IMAGE)
    small = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    src = tmp_path / "small.png"
    cv2.imwrite(str(src), cv2.cvtColor(np.round(small * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    return src


@pytest.mark.heavy
def test_dav2_final_batch_invariant(golden, dav2_models, tmp_path):
    """A small Final (half-size synthetic_480, max_res 2000: 3 patches per the plan) gives the same map with one
    patch per call as with every patch in one call."""
    img = read_image(_half_size(golden, tmp_path))
    one = boost(dav2_models, img, BoostConfig(mode="final", max_res=2000, max_batch=1))
    assert one.plan.boost and len(one.plan.crops) >= 2, len(one.plan.crops)
    assert all(h % 14 == 0 and w % 14 == 0 for h, w in one.net_shapes)
    many = boost(dav2_models, img, BoostConfig(mode="final", max_res=2000, max_batch=len(one.plan.crops)))
    assert np.isfinite(one.depth).all() and one.depth.shape == img.shape[:2]
    assert np.abs(one.depth - many.depth).max() <= 1e-6 * np.ptp(one.depth)


def test_dav2_through_the_cli(golden, dav2_weights_dir, weights_dir, dav2_models, tmp_path):
    """``hrjax boost --model dav2_vits --mode r20 --save npy`` writes the library's result (defaults both, on a
    half-size synthetic_480 so the default run stays cheap)."""
    src = _half_size(golden, tmp_path)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli.app, ["boost", str(src), "--output", str(out), "--model", "dav2_vits",
                                     "--mode", "r20", "--save", "npy", "--weights-dir", str(dav2_weights_dir),
                                     "--merge-weights", str(weights_dir), "--max-batch", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    expected = boost(dav2_models, read_image(src), BoostConfig(mode="r20", max_batch=1)).depth
    np.testing.assert_array_equal(np.load(out / "small.npy"), expected)
