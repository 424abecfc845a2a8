"""Merge-net training data (SPEC-TRAINING 1-3): guided filter, MATLAB resize, crop grid, loader, upsampling."""

import cv2
import numpy as np
import pytest

from hrjax.train.data import (DatasetError, batch_indices, epoch_order, iterate_batches, load_sample,
                              normalize_to_pm1, open_dataset, preprocess, read_depth16)
from hrjax.train.guided_filter import box_sum, guided_filter
from hrjax.train.make_dataset import PRESETS, crop_grid, im2uint16, parse_scales
from hrjax.train.matlab_resize import imresize, matlab_resize_matrix
from hrjax.train.synthetic import write_synthetic_dataset


# --- guided filter -----------------------------------------------------------------------------------------

def brute_force_gf(I, p, r, eps):
    """The SPEC-TRAINING 3 formulas with an explicit clipped-window mean, all float64."""
    I, p = I.astype(np.float64), p.astype(np.float64)
    h, w = I.shape

    def mean(x):
        out = np.empty_like(x)
        for i in range(h):
            for j in range(w):
                out[i, j] = x[max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].mean()
        return out

    mu_i, mu_p = mean(I), mean(p)
    a = (mean(I * p) - mu_i * mu_p) / (mean(I * I) - mu_i * mu_i + eps)
    b = mu_p - a * mu_i
    return mean(a) * I + mean(b)


@pytest.mark.parametrize("eps", [1e-8, 1e-2])
def test_guided_filter_matches_brute_force(eps):
    rng = np.random.default_rng(0)
    I = rng.random((23, 31)).astype(np.float32)
    p = (0.5 * I + 0.5 * rng.random((23, 31))).astype(np.float32)
    ref = brute_force_gf(I, p, 4, eps)
    q64 = guided_filter(I, p, 4, eps, box_dtype=np.float64)
    np.testing.assert_allclose(q64, ref, rtol=0, atol=2e-6)     # float32 output rounding only
    q32 = guided_filter(I, p, 4, eps)                          # the reference's float32 box sums
    np.testing.assert_allclose(q32, ref, rtol=0, atol=5e-4)
    assert not np.allclose(guided_filter(p, I, 4, eps, box_dtype=np.float64), ref, atol=1e-3)  # roles matter


def test_box_sum_is_the_clipped_window_sum():
    x = np.arange(12 * 13, dtype=np.float64).reshape(12, 13)
    got = box_sum(x, 3)
    want = np.array([[x[max(0, i - 3):i + 4, max(0, j - 3):j + 4].sum() for j in range(13)] for i in range(12)])
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="at least"):
        box_sum(np.zeros((9, 20)), 4)


# --- MATLAB imresize -----------------------------------------------------------------------------------

def test_matlab_resize_weights():
    for n_in, n_out in [(40, 16), (16, 40), (1800, 672), (280, 672)]:
        m = matlab_resize_matrix(n_in, n_out)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(matlab_resize_matrix(9, 9), np.eye(9))
    # enlarging by 2: MATLAB's bicubic (a = -0.5) at offsets 1/4, 3/4 -> taps -0.0234 0.2266 0.8672 -0.0703
    m = matlab_resize_matrix(8, 16)
    np.testing.assert_allclose(m[8, 2:6], [-0.0234375, 0.2265625, 0.8671875, -0.0703125], atol=1e-12)


def test_matlab_imresize_matches_pil_in_the_interior():
    """PIL's antialiased bicubic uses the same kernel (a = -0.5) and support; only the borders differ."""
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    a = rng.random((60, 60)).astype(np.float32)
    for n_out in (24, 150):
        m = matlab_resize_matrix(60, n_out)
        ours = m @ a.astype(np.float64) @ m.T
        pil = np.asarray(Image.fromarray(a, mode="F").resize((n_out, n_out), Image.BICUBIC))
        k = int(np.ceil(3 * max(1, 60 / n_out) * n_out / 60)) + 2
        np.testing.assert_allclose(ours[k:-k, k:-k], pil[k:-k, k:-k], atol=2e-5)


def test_matlab_imresize_uint16():
    rng = np.random.default_rng(2)
    img = (rng.random((50, 50, 3)) * 65535).astype(np.uint16)
    out = imresize(img, (20, 20))
    assert out.dtype == np.uint16 and out.shape == (20, 20, 3)
    # per channel: rows first, rounded, then columns, rounded
    m = matlab_resize_matrix(50, 20)
    rows = np.clip(np.floor(np.einsum("oh,hwc->owc", m, img.astype(np.float64)) + 0.5), 0, 65535)
    want = np.clip(np.floor(np.einsum("pw,owc->opc", m, rows) + 0.5), 0, 65535).astype(np.uint16)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(imresize(np.full((30, 30), 7, np.uint16), (64, 64)), 7)
    assert im2uint16(np.array([0, 1, 255], np.uint8)).tolist() == [0, 257, 65535]


# --- crop grid ---------------------------------------------------------------------------------------------

def test_crop_grid_counts_and_names():
    # iBims-1 (640x480): 3 + 8 + 40 = 51 crops per image (SPEC-TRAINING 1.3)
    counts = [len(crop_grid(480, 640, b, s, 100 * i)) for i, (b, s) in enumerate(PRESETS["ibims1"])]
    assert counts == [3, 8, 40]
    g = crop_grid(480, 640, 240, 70, 100)
    assert g[0] == (100, 100, 0, 0) and g[1] == (101, 100, 0, 70)   # outer loop: columns (counter1)
    # Middlebury-sized image 2880x1988: 22 + 40 + 32 = 94
    assert sum(len(crop_grid(1988, 2880, b, s, 0)) for b, s in PRESETS["middlebury"]) == 94
    assert parse_scales("20:10,8:4") == ((20, 10), (8, 4))
    with pytest.raises(ValueError):
        parse_scales("20-10")


# --- loader ------------------------------------------------------------------------------------------------

def test_loader_pairs_by_sorted_name_and_normalises(tmp_path):
    write_synthetic_dataset(tmp_path, n=5, size=24)
    ds = open_dataset(tmp_path)
    assert len(ds) == 5 and ds.size == (24, 24)
    assert list(ds.names) == sorted(ds.names) and ds.names[0].endswith("&.png")
    x = load_sample(ds, 2, radius=4)
    assert x.shape == (24, 24, 3) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    for c in range(3):
        assert x[..., c].min() == -1.0 and x[..., c].max() == 1.0
    o, i, t = (read_depth16(p) for p in ds.paths(2))
    np.testing.assert_array_equal(x[..., 2], normalize_to_pm1(t))                      # target unfiltered
    np.testing.assert_array_equal(x[..., 0], normalize_to_pm1(guided_filter(o, t, 4, 1e-8)))   # guide=outer
    np.testing.assert_array_equal(x[..., 1], normalize_to_pm1(guided_filter(t, i, 4, 1e-8)))   # guide=gtfake
    np.testing.assert_array_equal(preprocess(o, i, t, radius=4), x)
    assert np.all(normalize_to_pm1(np.full((4, 4), 0.3)) == 0)
    # a missing file is an error, not a silent misalignment
    (tmp_path / "train" / "inner" / ds.names[1]).unlink()
    with pytest.raises(DatasetError, match="same files"):
        open_dataset(tmp_path)


def test_batch_order_is_a_function_of_the_step(tmp_path):
    write_synthetic_dataset(tmp_path, n=5, size=24)
    ds = open_dataset(tmp_path)
    o1 = epoch_order(0, 1, 5)
    assert sorted(o1.tolist()) == list(range(5)) and not np.array_equal(o1, epoch_order(0, 2, 5))
    idx, w = batch_indices(o1, 1, 3)          # last, partial batch: 2 real + 1 padding
    assert w.tolist() == [1, 1, 0] and idx[2] == idx[0]
    full = list(iterate_batches(ds, batch=3, seed=0, start_step=0, end_step=4, radius=4, workers=2))
    part = list(iterate_batches(ds, batch=3, seed=0, start_step=2, end_step=4, radius=4, workers=0))
    assert [b.epoch for b in full] == [1, 1, 2, 2]
    for a, b in zip(full[2:], part):
        assert a.step == b.step
        np.testing.assert_array_equal(a.maps, b.maps)
        np.testing.assert_array_equal(a.indices, b.indices)


def test_read_depth16_rejects_8bit(tmp_path):
    p = tmp_path / "x.png"
    cv2.imwrite(str(p), np.zeros((4, 4), np.uint8))
    with pytest.raises(DatasetError, match="16-bit"):
        read_depth16(p)
