"""hrjax.ops.host against the OpenCV / scikit-image calls of the reference (SPEC §2, §5.1, §9.3): bit-exact."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrjax.ops import host

SHAPES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (16, 16), (37, 53), (53, 37), (128, 96), (201, 300)]

shapes = st.tuples(st.integers(1, 80), st.integers(1, 80))
seeds = st.integers(0, 2**32 - 1)


def _ref_gradient(g):
    return np.abs(cv2.Sobel(g, cv2.CV_64F, 0, 1, ksize=3)) + np.abs(cv2.Sobel(g, cv2.CV_64F, 1, 0, ksize=3))


def test_rgb_to_gray_is_reference_dot():
    img = np.random.default_rng(0).random((31, 45, 3))
    ref = np.dot(img[..., :3], [0.2989, 0.5870, 0.1140])
    out = host.rgb_to_gray(img)
    assert out.dtype == np.float64 and out.shape == (31, 45)
    np.testing.assert_array_equal(out, ref)
    # Weights in RGB order (not BGR): a pure-red image is 0.2989.
    red = np.zeros((2, 2, 3))
    red[..., 0] = 1.0
    np.testing.assert_array_equal(host.rgb_to_gray(red), np.full((2, 2), 0.2989))
    with pytest.raises(ValueError):
        host.rgb_to_gray(np.zeros((4, 4)))


@pytest.mark.parametrize("shape", SHAPES)
def test_sobel_gradient_matches_cv2_exactly(shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    for g in (rng.random(shape), rng.standard_normal(shape) * 1e3, np.round(rng.random(shape) * 4) / 4):
        np.testing.assert_array_equal(host.sobel_gradient(g), _ref_gradient(g))


@settings(max_examples=40, deadline=None)
@given(shapes, seeds)
def test_sobel_gradient_matches_cv2_random(shape, seed):
    g = np.random.default_rng(seed).random(shape)
    np.testing.assert_array_equal(host.sobel_gradient(g), _ref_gradient(g))


def test_sobel_gradient_direction_and_border():
    # A unit-slope horizontal ramp: |d/dx| = (x+1 - (x-1)) * (1 + 2 + 1) = 8 inside, d/dy = 0, and 0 in the
    # first/last column (REFLECT_101 mirrors the neighbour, so the central difference vanishes there).
    g = np.tile(np.arange(6, dtype=np.float64), (4, 1))
    out = host.sobel_gradient(g)
    np.testing.assert_array_equal(out[:, 1:-1], 8.0)
    np.testing.assert_array_equal(out[:, [0, -1]], 0.0)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 12, 13, 14])
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (12, 12), (13, 17), (40, 29)])
def test_dilate_matches_cv2(shape, k):
    rng = np.random.default_rng(k * 100 + shape[0])
    binary = (rng.random(shape) > 0.93).astype(np.float64)
    np.testing.assert_array_equal(host.dilate(binary, k), cv2.dilate(binary, np.ones((k, k)), iterations=1))
    real = rng.standard_normal(shape)  # not only 0/1: max over the window, out-of-image ignored
    np.testing.assert_array_equal(host.dilate(real, k), cv2.dilate(real, np.ones((k, k)), iterations=1))


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(1, 16), seeds)
def test_dilate_matches_cv2_random(shape, k, seed):
    img = (np.random.default_rng(seed).random(shape) > 0.9).astype(np.float64)
    np.testing.assert_array_equal(host.dilate(img, k), cv2.dilate(img, np.ones((k, k)), iterations=1))


def test_dilate_even_kernel_anchor():
    # k = 12: D[y, x] = max over rows y-6 .. y+5, so a single pixel at 20 lights rows 15 .. 26.
    img = np.zeros((40, 40))
    img[20, 20] = 1.0
    out = host.dilate(img, 12)
    rows = np.flatnonzero(out[:, 20])
    cols = np.flatnonzero(out[20, :])
    np.testing.assert_array_equal(rows, np.arange(15, 27))
    np.testing.assert_array_equal(cols, np.arange(15, 27))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 12, 41])
@pytest.mark.parametrize("shape", [(1, 1), (12, 12), (13, 13), (41, 40), (100, 37), (494, 494)])
def test_block_max_matches_skimage(shape, n):
    measure = pytest.importorskip("skimage.measure")
    rng = np.random.default_rng(n * 7 + shape[1])
    img = rng.standard_normal(shape)  # negatives show the zero (not edge) padding
    ref = measure.block_reduce(img, (n, n), np.max)
    out = host.block_max(img, n)
    assert out.shape == (-(-shape[0] // n), -(-shape[1] // n))
    np.testing.assert_array_equal(out, ref)


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(1, 20), seeds)
def test_block_max_matches_skimage_random(shape, n, seed):
    measure = pytest.importorskip("skimage.measure")
    img = np.random.default_rng(seed).standard_normal(shape)
    np.testing.assert_array_equal(host.block_max(img, n), measure.block_reduce(img, (n, n), np.max))


def test_block_max_zero_block_raises():
    with pytest.raises(ValueError):
        host.block_max(np.ones((5, 5)), 0)


@pytest.mark.parametrize("shape", SHAPES)
def test_integral_matches_cv2(shape):
    rng = np.random.default_rng(shape[0] + 7 * shape[1])
    g = rng.random(shape) * np.where(rng.random(shape) > 0.5, 1.0, 0.0)
    ref = cv2.integral(g)
    out = host.integral(g)
    assert out.dtype == np.float64 and out.shape == (shape[0] + 1, shape[1] + 1)
    np.testing.assert_array_equal(out, ref)


@settings(max_examples=30, deadline=None)
@given(shapes, seeds)
def test_integral_matches_cv2_random(shape, seed):
    g = np.random.default_rng(seed).standard_normal(shape) * 100
    np.testing.assert_array_equal(host.integral(g), cv2.integral(g))
