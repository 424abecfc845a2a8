"""Pipeline behaviour beyond the goldens: edge cases the reference crashes on, input formats, batching."""

import math
import warnings
from dataclasses import replace

import cv2
import numpy as np
import pytest

from hrjax.io import read_image
from hrjax.pipeline import batching, kernels
from hrjax.pipeline.boost import boost
from hrjax.pipeline.config import BoostConfig


@pytest.fixture(scope="session")
def small_scene(golden):
    """160x120 downscale of the synthetic golden image."""
    img = read_image(golden / "images" / "synthetic_480.png")
    return cv2.resize(img, (160, 120), interpolation=cv2.INTER_AREA)


# The invariance tests run on a configuration designed for them: receptive field 128 (patch passes at 128^2 and
# 256^2 instead of 384^2 and 768^2), a target of 357x476 that selects exactly 3 patches, so a batch of 3 and a
# 3-device mesh hold every patch chunk without padding, and conftest.small_models' 64^2 merge net (the 1024^2
# merges were ~60 % of each run). The networks' own batched == single checks are in test_midas and test_mergenet;
# the full-size pipeline checks (both real networks, 384/768/1024) are marked heavy.
SMALL = BoostConfig(mode="final", max_res=476, receptive_field=128, max_batch=1)
SMALL_PATCHES = 3
# Batch 1 vs 3 (or 3 devices) differ by float32 rounding: < 2e-6 with the real networks (the heavy tests below),
# ~5e-6 with small_models, whose random merge net has a low-contrast output that the min-max stretches. A batching
# or sharding bug (a wrong item, order or padding) shows as >= 1e-3.
SMALL_ATOL = 1e-5
# The tests sharing small_run go to one worker (pytest-xdist --dist loadgroup): one run, not one per worker.
SMALL_RUN_GROUP = pytest.mark.xdist_group("small_run")


@pytest.fixture(scope="session")
def small_run(small_models, small_scene):
    """One run of SMALL (batch 1, one device) with its progress reports: the reference for the invariances.
    Made once: the group keeps its tests on one worker (under pytest 9 the groups were ignored and both workers
    made it, ~100 s each; tests/test_suite_setup.py), and session scope keeps it however that worker's tests
    are ordered."""
    calls = []
    res = boost(small_models, small_scene, SMALL, progress=lambda *a: calls.append(a))
    assert res.plan.n_patches == SMALL_PATCHES
    assert res.call_log()["merge_call_shapes"].tolist() == [[1, 2, 64, 64]] * (1 + 2 * SMALL_PATCHES)
    _check_depth(res.depth, small_scene.shape[:2], unit_range=False)
    return res, calls


def _check_depth(depth, shape, *, unit_range: bool = True):
    assert depth.shape == shape and depth.dtype == np.float32
    assert np.isfinite(depth).all()
    if unit_range:  # not with small_models: the CUBIC upscale of a random net's noisy 64^2 map overshoots [0, 1]
        assert depth.min() >= -1e-6 and depth.max() <= 1 + 1e-6


@SMALL_RUN_GROUP
def test_progress_reports_every_stage_in_order(small_run):
    _, calls = small_run
    from hrjax.pipeline.boost import STAGES
    assert [c[0] for c in calls if c[1] == 0] == ["search", "whole image", *STAGES]
    assert [c[0] for c in calls if c[1] == c[2]] == ["search", "whole image", *STAGES]
    assert all(c[2] == SMALL_PATCHES for c in calls if c[0] in STAGES)


@SMALL_RUN_GROUP
def test_second_run_compiles_nothing(small_models, small_scene, small_run):
    """A second run of the same image and options hits the jit caches of every stage."""
    import jax
    compiles = []

    def on_event(name, secs, **_):
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(secs)

    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        again = boost(small_models, small_scene, SMALL)
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    assert compiles == []
    np.testing.assert_array_equal(again.depth, small_run[0].depth)


@SMALL_RUN_GROUP
def test_batching_does_not_change_the_result(small_models, small_scene, small_run):
    one = small_run[0]
    many = boost(small_models, small_scene, replace(SMALL, max_batch=SMALL_PATCHES))
    np.testing.assert_allclose(one.depth, many.depth, rtol=0, atol=SMALL_ATOL)
    assert one.merge_calls == many.merge_calls == 1 + 2 * SMALL_PATCHES


@SMALL_RUN_GROUP
def test_sharding_does_not_change_the_result(small_models, small_scene, small_run, monkeypatch):
    """Data parallel over 3 of the host CPU devices (weights replicated, every patch chunk split 1 per device)
    == one device. The whole-image passes (one item) run on the mesh's first device, not once per device."""
    import jax
    one = small_run[0]
    mesh = batching.data_mesh(jax.devices()[:SMALL_PATCHES])
    calls = []  # (batch, devices) of every base-network call, observed at the jitted function
    network = kernels.base_on_rgb

    def spy(graphdef, state, rgb, **kwargs):
        calls.append((int(rgb.shape[0]), len(rgb.sharding.device_set)))
        return network(graphdef, state, rgb, **kwargs)

    monkeypatch.setattr(kernels, "base_on_rgb", spy)
    sharded = boost(small_models.on_mesh(mesh), small_scene, replace(SMALL, max_batch=SMALL_PATCHES))
    assert calls == [(1, 1), (1, 1), (SMALL_PATCHES, SMALL_PATCHES), (SMALL_PATCHES, SMALL_PATCHES)]
    np.testing.assert_array_equal(sharded.plan.rects_scaled, one.plan.rects_scaled)
    np.testing.assert_allclose(one.depth, sharded.depth, rtol=0, atol=SMALL_ATOL)


@pytest.mark.heavy
def test_full_size_batching_does_not_change_the_result(models, small_scene):
    """Receptive field 384 (the real patch sizes), default formulation: batch 1 == batch 16."""
    one = boost(models, small_scene, BoostConfig(mode="final", max_res=1600, max_batch=1))
    many = boost(models, small_scene, BoostConfig(mode="final", max_res=1600, max_batch=16))
    assert one.plan.n_patches == 3
    _check_depth(one.depth, (120, 160))
    np.testing.assert_allclose(one.depth, many.depth, rtol=0, atol=2e-6)


@pytest.mark.heavy
def test_sharding_over_8_devices_does_not_change_the_result(models, small_scene):
    """All 8 host CPU devices (chunks padded to a multiple of 8) == one device."""
    import jax
    assert len(jax.devices()) == 8
    cfg = BoostConfig(mode="final", max_res=800, receptive_field=128, max_batch=8)
    models = models.configured(grouped_impl="packed")
    one = boost(models, small_scene, cfg)
    assert one.plan.n_patches >= 2
    sharded = boost(models.on_mesh(batching.data_mesh()), small_scene, cfg)
    np.testing.assert_array_equal(sharded.plan.rects_scaled, one.plan.rects_scaled)
    np.testing.assert_allclose(one.depth, sharded.depth, rtol=0, atol=2e-6)


def test_tiny_image_does_not_crash(auto_models):
    # The reference's R search has an empty loop for a long side <= 138 (SPEC 2, Q8): R falls back to 384.
    img = np.random.default_rng(0).random((48, 64, 3))
    res = boost(auto_models, img, BoostConfig(mode="final", max_res=600))
    assert res.plan.R == 384 and res.plan.K == 0.0 and math.isclose(res.plan.factor, 0.2)
    _check_depth(res.depth, (48, 64))


def test_extreme_aspect_ratio(auto_models):
    # MiDaS would round the short side to 0 (quirk Q9); hrjax keeps one 32-pixel row.
    img = np.random.default_rng(1).random((40, 2000, 3))
    res = boost(auto_models, img, BoostConfig(mode="r20"))
    assert tuple(res.call_log()["midas_call_shapes"][0]) == (1, 3, 32, 384)
    _check_depth(res.depth, (40, 2000))


def test_constant_image_gives_finite_map(auto_models):
    img = np.full((96, 128, 3), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = boost(auto_models, img, BoostConfig(mode="final"))
    assert res.plan.n_patches == 0
    _check_depth(res.depth, (96, 128))


def test_input_formats_agree(small_models, small_scene):
    models = small_models
    rgb8 = np.round(small_scene * 255).astype(np.uint8)
    gray8 = rgb8[:, :, 1]
    cfg = BoostConfig(mode="r0", receptive_field=128)  # format handling does not depend on the network size
    ref = boost(models, rgb8, cfg).depth
    rgba = np.concatenate([rgb8, np.full(rgb8.shape[:2] + (1,), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(boost(models, rgba, cfg).depth, ref)  # alpha is ignored
    np.testing.assert_array_equal(boost(models, rgb8.astype(np.uint16) * 257, cfg).depth, ref)  # 16-bit
    gray = boost(models, gray8, cfg).depth
    np.testing.assert_array_equal(gray, boost(models, np.repeat(gray8[:, :, None], 3, 2), cfg).depth)
    _check_depth(gray, rgb8.shape[:2], unit_range=False)


@pytest.mark.parametrize("bad", [np.zeros((0, 5, 3)), np.zeros((4, 4, 2)), np.full((8, 8, 3), np.nan),
                                 np.zeros((8, 8, 3), np.int32)])
def test_bad_images_are_rejected(models, bad):
    with pytest.raises(ValueError):
        boost(models, bad)


def test_config_validation():
    with pytest.raises(ValueError, match="mode"):
        BoostConfig(mode="R21")
    with pytest.raises(ValueError, match="max_batch"):
        BoostConfig(max_batch=-1)
    assert BoostConfig().max_batch == 0  # automatic
    with pytest.raises(ValueError, match="output_resolution"):
        BoostConfig(output_resolution="full")


class _FakeDevice:
    def __init__(self, platform, limit=None):
        self.platform, self.limit = platform, limit

    def memory_stats(self):
        return None if self.limit is None else {"bytes_limit": self.limit, "bytes_in_use": 123}


def test_auto_max_batch_follows_device_memory():
    gib = 2 ** 30
    assert batching.auto_max_batch([_FakeDevice("cpu")]) == batching.CPU_MAX_BATCH
    assert batching.auto_max_batch([_FakeDevice("gpu", None)] * 2) == 2 * batching.CPU_MAX_BATCH
    # (limit - 1 GiB reserve) / 2 / 0.4 GiB per item, rounded down to a power of two, per device
    assert batching.auto_max_batch([_FakeDevice("gpu", 16 * gib)]) == 16         # 18.75 -> 16
    assert batching.auto_max_batch([_FakeDevice("gpu", 80 * gib)] * 8) == 32 * 8  # 98.75 -> capped at 32
    assert batching.auto_max_batch([_FakeDevice("tpu", gib + gib // 2)]) == 1    # 0.6 -> never below 1
    assert batching.auto_max_batch([_FakeDevice("gpu", 16 * gib), _FakeDevice("gpu", 8 * gib)]) == 8 * 2


@pytest.mark.parametrize("n", [1, 1024 * 1024])
def test_polyfit_reproduces_numpy_float32(n):
    """Closed form vs np.polyfit on float32 data, in both of numpy's regimes (see polyfit_line_like_numpy)."""
    rng = np.random.default_rng(n)
    for offset, spread in ((0.1, 0.8), (-0.5, 1.0), (5.0, 0.01)):
        x = (offset + spread * rng.random(n)).astype(np.float32)
        y = (0.3 * x + 0.2 + 0.05 * rng.standard_normal(n)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # RankWarning in the truncated regime
            want = np.polyfit(x, y, 1)
        got = np.asarray(kernels.polyfit_line_like_numpy(x[None], y[None])).ravel()
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_batcher_pads_and_trims():
    calls = []

    def fn(a):
        calls.append(a.shape[0])
        return a * 2

    x = np.arange(11, dtype=np.float32)[:, None]
    out = batching.Batcher(4).run(fn, (x,))[0]
    np.testing.assert_array_equal(np.asarray(out), x * 2)
    assert calls == [4, 4, 4]  # the tail of 3 is padded to 4: one compiled shape
    calls.clear()
    out = batching.Batcher(4, batching.data_mesh()).run(fn, (x,))[0]  # 8 CPU devices in tests
    np.testing.assert_array_equal(np.asarray(out), x * 2)
    assert calls == [8, 8, 8] and len(out.sharding.device_set) == 8


def test_merge_stages_donate_their_base_input(models):
    """The merge stages write their (N, 1024, 1024) output into a donated input (no second buffer)."""
    import jax
    import jax.numpy as jnp

    m = jax.ShapeDtypeStruct((2, 1024, 1024), jnp.float32)
    for fn, donated in ((kernels.double_from_estimates, (True, False)), (kernels.merge_into_base, (True, False))):
        args = fn.lower(models.merge_graphdef, models.merge_state, m, m).args_info[0]  # (state, a, b): static
        assert tuple(a.donated for a in args[1:]) == donated, fn                      # graphdef left out
        assert not any(a.donated for a in jax.tree.leaves(args[0])), "weights must never be donated"
