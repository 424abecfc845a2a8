"""Superpixel sample points for the D3R and ORD metrics (SPEC 8.2; reference ``extractD3Rpoints.m``).

Steps, as in the reference:

1. ``gts = imresize(gd, superpixel_scale, 'nearest')`` (MATLAB's nearest rule, :func:`imresize_nearest`), NaN -> 0.
2. SLIC superpixels of ``gts``, about 5000 of them (:func:`slic_labels`).
3. Centre of each superpixel = ``(floor(mean row), floor(mean col))`` in 1-based MATLAB coordinates, **not**
   snapped into the superpixel, mapped back to full resolution by dividing by ``superpixel_scale``.
4. Neighbour relation of a superpixel = the labels of the pixels at Euclidean distance exactly 1 from its mask
   (``bwdist(mask) == 1``), i.e. the labels across its 4-connected boundary; computed for all superpixels at
   once from horizontally and vertically shifted label arrays.
5. Random relation = 3 labels drawn uniformly (with replacement, possibly the label itself) per superpixel. The
   reference draws them unseeded; here they come from a ``numpy.random.Generator`` so results reproduce.

The pairs actually scored follow the reference's ``D3R.m`` loop exactly (:func:`scored_pairs`).

SLIC and MATLAB: MATLAB's ``superpixels(A, N, 'Compactness', m)`` uses the distance
``sqrt((d_intensity/m)^2 + (d_xy/S)^2)`` with ``S`` the grid step, on the L*a*b* scale (L* in [0, 100]) for
which its "typical [1, 20]" range of m is stated, and its default method is ``'slic0'`` (SLIC-zero: m is used
in the first iteration only; afterwards each cluster is normalised by its own largest intensity distance).
scikit-image's ``slic`` has the same distance, but rescales a gray image to [0, 1] and uses it as is (only
RGB input is converted to L*a*b*). An intensity range of 1 instead of 100 makes a given compactness 100x
stronger, so the reference's m = 20 on the L* scale is **m = 0.2 here** (:data:`COMPACTNESS`), and
``slic_zero=True`` matches MATLAB's default method. Both are parameters. The segmentation is not bit-identical
to MATLAB's (different seeding, iteration and connectivity enforcement), which only changes which pixel pairs
are sampled; the metric definitions are unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_SEGMENTS = 5000
COMPACTNESS = 0.2          # MATLAB's Compactness 20 on the L* [0, 100] scale, for a gray image in [0, 1]
SLIC_ZERO = True           # MATLAB's default method 'slic0'
N_RANDOM = 3               # random relations per superpixel


def imresize_nearest(a: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(a, scale, 'nearest')`` (no antialiasing, which 'nearest' turns off).

    Output size ``ceil(scale * size)``; output pixel x (1-based) samples input ``floor(u + 0.5)`` with
    ``u = x/scale + 0.5*(1 - 1/scale)``; out-of-range indices are mirrored like MATLAB's ``aux`` table. For
    ``scale = 0.2`` this is input row ``5x - 2`` (0-based: ``5i + 2``), not OpenCV's ``5i``.
    """
    a = np.asarray(a)
    if scale == 1:
        return a.copy()
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")

    def index(n_in: int) -> np.ndarray:
        n_out = int(np.ceil(scale * n_in))
        x = np.arange(1, n_out + 1, dtype=np.float64)
        u = x / scale + 0.5 * (1 - 1 / scale)
        j = np.floor(u + 0.5).astype(np.int64) - 1          # 0-based
        j = np.mod(j, 2 * n_in)
        return np.where(j >= n_in, 2 * n_in - 1 - j, j)

    return a[np.ix_(index(a.shape[0]), index(a.shape[1]))]


def slic_labels(gray: np.ndarray, n_segments: int = N_SEGMENTS, *, compactness: float = COMPACTNESS,
                slic_zero: bool = SLIC_ZERO) -> np.ndarray:
    """SLIC superpixels of a gray image (NaN -> 0), as consecutive labels 0..N-1 (int64)."""
    try:
        from skimage.segmentation import slic
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the D3R/ORD metrics need scikit-image for SLIC superpixels: "
                          "pip install 'hrjax[eval]' (or scikit-image>=0.24)") from e
    g = np.nan_to_num(np.asarray(gray, np.float64), nan=0.0)
    labels = slic(g, n_segments=n_segments, compactness=compactness, channel_axis=None, start_label=1,
                  slic_zero=slic_zero)
    _, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape).astype(np.int64)


def neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """All directed pairs (i, j), i != j, where a pixel of j is a 4-neighbour of a pixel of i; (M, 2), sorted
    and unique. Row i's partners are exactly ``unique(L(bwdist(L == i) == 1))`` of the reference."""
    L = np.asarray(labels)
    a = np.concatenate([L[:, :-1].ravel(), L[:-1, :].ravel()])
    b = np.concatenate([L[:, 1:].ravel(), L[1:, :].ravel()])
    d = a != b
    a, b = a[d], b[d]
    if a.size == 0:
        return np.zeros((0, 2), np.int64)
    n = int(L.max()) + 1
    a, b = a.astype(np.int64), b.astype(np.int64)
    keys = np.unique(np.concatenate([a * n + b, b * n + a]))   # sorted by (i, j)
    return np.stack([keys // n, keys % n], 1)


def superpixel_centres(labels: np.ndarray, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """1-based ``(floor(mean row), floor(mean col))`` of each label 0..n-1 (the reference's computeCenter)."""
    L = np.asarray(labels)
    n = int(L.max()) + 1 if n is None else n
    h, w = L.shape
    flat = L.ravel()
    count = np.bincount(flat, minlength=n).astype(np.float64)
    rows = np.broadcast_to(np.arange(1, h + 1, dtype=np.float64)[:, None], (h, w)).ravel()
    cols = np.broadcast_to(np.arange(1, w + 1, dtype=np.float64)[None, :], (h, w)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.floor(np.bincount(flat, rows, n) / count)
        c = np.floor(np.bincount(flat, cols, n) / count)
    return r, c


def scored_pairs(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (i, j) pairs the reference's ``D3R.m`` loop scores, from a relation given as directed entries
    ``src[k] -> dst[k]`` (repeats allowed: each one is scored).

    The loop visits i = 1..N and scores every j still in i's list, deleting i from j's list as it goes, so:
    an entry (i, j) is scored if j > i, or if j < i and i is not in j's (original) list; self pairs are never
    scored (their GT ratio is exactly 1, so ``ord`` is 0 and the pair is skipped). For a symmetric relation
    (neighbours) each unordered pair therefore counts once.
    """
    src = np.asarray(src, np.int64).ravel()
    dst = np.asarray(dst, np.int64).ravel()
    if src.size == 0:
        return src, dst
    n = int(max(src.max(), dst.max())) + 1
    key = src * n + dst
    rev = dst * n + src
    keep = (dst > src) | ((dst < src) & ~np.isin(rev, key))
    return src[keep], dst[keep]


@dataclass(frozen=True, eq=False)
class SamplePoints:
    """Superpixel centres at full resolution and the pairs to score (indices into ``rows``/``cols``)."""

    rows: np.ndarray          # (N,) 0-based full-resolution row of each centre
    cols: np.ndarray          # (N,) 0-based column
    neighbour: tuple[np.ndarray, np.ndarray]   # pairs scored for D3R
    random: tuple[np.ndarray, np.ndarray]      # pairs scored for ORD
    labels: np.ndarray        # (h, w) superpixel labels of the resized GT

    @property
    def n(self) -> int:
        return int(self.rows.shape[0])


def points_from_labels(labels: np.ndarray, full_shape: tuple[int, int], superpixel_scale: float,
                       rng: np.random.Generator, n_random: int = N_RANDOM) -> SamplePoints:
    """Centres, neighbour pairs and random pairs from a label map of the resized GT. Labels are renumbered
    0..N-1 in increasing order (a no-op for consecutive labels 0..N-1)."""
    uniq, inv = np.unique(np.asarray(labels), return_inverse=True)
    L = inv.reshape(np.shape(labels)).astype(np.int64)
    n = int(uniq.size)
    r1, c1 = superpixel_centres(L, n)
    H, W = full_shape
    # sub/superpixel_scale is an integer for the reference's scales (1, 0.2); round for any other scale, and
    # clip: ceil() in the resize can put a centre of the last small row just past the full image.
    rows = np.clip(np.round(r1 / superpixel_scale), 1, H).astype(np.int64) - 1
    cols = np.clip(np.round(c1 / superpixel_scale), 1, W).astype(np.int64) - 1
    nb = neighbour_pairs(L)
    rand = rng.integers(0, n, size=(n, n_random))
    rand_src = np.repeat(np.arange(n, dtype=np.int64), n_random)
    return SamplePoints(rows, cols, scored_pairs(nb[:, 0], nb[:, 1]), scored_pairs(rand_src, rand.ravel()), L)


def extract_points(gd: np.ndarray, superpixel_scale: float, rng: np.random.Generator, *,
                   n_segments: int = N_SEGMENTS, compactness: float = COMPACTNESS,
                   slic_zero: bool = SLIC_ZERO) -> SamplePoints:
    """SPEC 8.2 on the normalised GT disparity ``gd`` (NaN = invalid)."""
    gts = np.nan_to_num(imresize_nearest(np.asarray(gd, np.float64), superpixel_scale), nan=0.0)
    labels = slic_labels(gts, n_segments, compactness=compactness, slic_zero=slic_zero)
    return points_from_labels(labels, gd.shape, superpixel_scale, rng)
