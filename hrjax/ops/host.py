"""Host-side (numpy, float64) image ops used by the data-dependent control flow of the pipeline.

These run on the CPU between device calls: the R_x resolution search (SPEC §2) and the patch selection
(SPEC §5.1–5.3). They reproduce the OpenCV / scikit-image calls of the reference (SPEC §9.3) **bit for bit**
in float64 — the reference thresholds these maps (``grad >= mid``, ``G < thr``, ``cgf >= gf``), so a single
ulp could in principle flip a decision; matching the exact operation order removes that risk. The tests in
``tests/test_ops_host.py`` compare every function with cv2/skimage on random inputs with ``array_equal``.

No OpenCV call is made here, so the module also documents what those calls compute.
"""

from __future__ import annotations

import numpy as np

# The reference's rgb2gray weights (utils.rgb2gray), SPEC §2 step 2 / §5.1 step 1.
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """``np.dot(img[..., :3], [0.2989, 0.5870, 0.1140])`` as float64 (SPEC §2 step 2).

    Uses the very same ``np.dot`` call as the reference so that the summation order (and thus every bit)
    is identical.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    return np.dot(img[..., :3].astype(np.float64, copy=False), list(GRAY_WEIGHTS))


def sobel_gradient(gray: np.ndarray) -> np.ndarray:
    """``|Sobel_y(g)| + |Sobel_x(g)|``: ``cv2.Sobel(g, CV_64F, dx, dy, ksize=3)``, border REFLECT_101 (SPEC §2 step 3).

    cv2 runs Sobel as a separable filter (row pass, then column pass) on a REFLECT_101-padded image. For
    CV_64F it uses the generic ``RowFilter`` (sum in kernel order: ``k0*S0 + k1*S1 + k2*S2``) and the
    ``SymmColumnFilter`` (symmetric: ``k_c*S_c + delta + k_1*(S_+1 + S_-1)``; antisymmetric:
    ``delta + (S_+1 - S_-1)``). The expressions below follow that order so the result is bit-identical.
    Correlation semantics: ``Sobel_x[y, x]`` is positive when the image increases with ``x``.
    """
    g = np.asarray(gray, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {g.shape}")
    # numpy's 'reflect' is OpenCV's BORDER_REFLECT_101 (edge pixel not repeated); a length-1 axis repeats it,
    # as cv2 does.
    p = np.pad(g, 1, mode="reflect")

    # d/dx: row kernel [-1, 0, 1] -> ((-a) + 0*b) + c == c - a exactly; column kernel [1, 2, 1] (symmetric).
    r = p[:, 2:] - p[:, :-2]  # (H+2, W)
    gx = (2.0 * r[1:-1] + 0.0) + (r[2:] + r[:-2])

    # d/dy: row kernel [1, 2, 1] -> (a + 2b) + c; column kernel [-1, 0, 1] (antisymmetric) -> 0 + (S+1 - S-1).
    r = (p[:, :-2] + 2.0 * p[:, 1:-1]) + p[:, 2:]  # (H+2, W)
    gy = r[2:] - r[:-2]

    return np.abs(gy) + np.abs(gx)


def dilate(img: np.ndarray, k: int) -> np.ndarray:
    """``cv2.dilate(img, np.ones((k, k)), iterations=1)`` (SPEC §2 step 8c).

    OpenCV's default anchor is ``k // 2``, so for an even ``k`` the window is asymmetric:
    ``D[y, x] = max(img[y - k//2 : y - k//2 + k, x - k//2 : x - k//2 + k])`` (for k = 12 the offsets are
    −6 … +5). Out-of-image pixels are ignored (cv2's dilate border value is −inf). ``max`` is exact, so
    this is bit-identical for any float input.
    """
    a = np.asarray(img)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {a.shape}")
    if k < 1:
        raise ValueError(f"kernel size must be >= 1, got {k}")
    if k == 1:
        return a.copy()
    lo, hi = k // 2, k - 1 - k // 2  # pixels before / after the anchor
    out = a
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (lo, hi)
        if np.issubdtype(out.dtype, np.floating):
            fill = -np.inf
        elif out.dtype == np.bool_:
            fill = False
        else:
            fill = np.iinfo(out.dtype).min
        padded = np.pad(out, pad, mode="constant", constant_values=fill)
        out = np.lib.stride_tricks.sliding_window_view(padded, k, axis=axis).max(axis=-1)
    return out


def block_max(img: np.ndarray, n: int) -> np.ndarray:
    """``skimage.measure.block_reduce(img, (n, n), np.max)`` (SPEC §2 step 8a).

    The map is zero-padded at the bottom/right up to a multiple of ``n`` (skimage's ``cval=0``; zeros, not
    edge values, so a negative map would be affected — the reference only pools 0/1 maps), then max-pooled:
    the result has shape ``(ceil(H/n), ceil(W/n))``. ``n == 0`` raises ``ValueError`` like skimage
    (reference crash Q8; the search handles it before calling this).
    """
    a = np.asarray(img)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {a.shape}")
    if n < 1:
        raise ValueError(f"block size must be >= 1, got {n}")
    h, w = a.shape
    ph, pw = -h % n, -w % n
    if ph or pw:
        a = np.pad(a, ((0, ph), (0, pw)), mode="constant", constant_values=0)
    hb, wb = a.shape[0] // n, a.shape[1] // n
    return a.reshape(hb, n, wb, n).max(axis=(1, 3))


def integral(g: np.ndarray) -> np.ndarray:
    """``cv2.integral(g)`` for a float64 map: shape (H+1, W+1), zero first row and column (SPEC §5.1 step 5).

    cv2 accumulates a running row sum ``s += src[x]`` and stores ``sum[y+1][x+1] = sum[y][x+1] + s``; the
    two sequential ``cumsum`` calls below perform exactly those additions in that order (bit-identical).
    """
    a = np.asarray(g, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {a.shape}")
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(a, axis=1), axis=0, out=out[1:, 1:])
    return out
