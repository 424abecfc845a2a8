"""The paper's evaluation metrics, exactly as the reference MATLAB code computes them (SPEC 8).

Inputs are in ``im2double`` units: a 16-bit PNG divided by 65535 (see :mod:`hrjax.eval.datasets` for the
other GT formats). A GT value of 0 (or NaN) means "no ground truth".

Normalisation (SPEC 8.1, ``evaluatedataset.m``):

* disparity GT (Middlebury): ``gd`` = GT with 0 -> NaN, ``mgd = min(gd)``, ``gz = 1/gd``, then both rescaled
  to [0, 1] (:func:`matlab_rescale`, NaN ignored);
* depth GT (iBims-1): ``gz`` = GT with 0 -> NaN, ``gd = 1/gz / max``, ``mgd = min(gd)``, both rescaled;
* estimate (disparity, e.g. 16-bit PNG / 65535): ``ez = rescale(1 / rescale(ed, mgd, 1), 0, 1)``.

After the rescale the GT's farthest valid pixel has depth exactly 0, so it is excluded by every "GT depth is
0" rule below, as in the reference.

Metrics: D3R (neighbouring superpixel pairs, f = 0.1, r = 0.01), ORD (random superpixel pairs, f = 0,
r = 0.03) on **depth** (:func:`pair_error`); RMSE on **disparity** over all pixels, masked ones contributing 0
(:func:`rmse`); error rates ``fraction(max(gz/ez, ez/gz) > 1.25^k)``, AbsRel, SqRel and log10 on depth over
the pixels with a GT and non-zero gz and ez (:func:`depth_errors`). Dataset means omit NaN
(:func:`mean_metrics`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from hrjax.eval.superpixels import (
    COMPACTNESS,
    N_SEGMENTS,
    SLIC_ZERO,
    SamplePoints,
    extract_points,
)

EPS = float(np.finfo(np.float64).eps)  # MATLAB eps = 2.220446049250313e-16
D3R_FREQ_RATIO, D3R_RATIO = 0.1, 0.01
ORD_FREQ_RATIO, ORD_RATIO = 0.0, 0.03
GT_TYPES = ("disparity", "depth")


def matlab_rescale(a: np.ndarray, lower: float = 0.0, upper: float = 1.0) -> np.ndarray:
    """MATLAB ``rescale(a, lower, upper)``: ``lower + (a - min)/(max - min) * (upper - lower)`` with min and max
    ignoring NaN (NaN stays NaN). A constant input gives ``lower`` everywhere (MATLAB's rule); an all-NaN input
    stays all NaN."""
    a = np.asarray(a, np.float64)
    finite = a[~np.isnan(a)]
    if finite.size == 0:
        return a.copy()
    lo, hi = finite.min(), finite.max()
    if hi == lo:
        return np.where(np.isnan(a), np.nan, lower)
    return lower + (a - lo) / (hi - lo) * (upper - lower)


@dataclass(frozen=True, eq=False)
class NormalisedGT:
    gd: np.ndarray    # disparity in [0, 1], NaN where there is no GT
    gz: np.ndarray    # depth in [0, 1], NaN where there is no GT
    mgd: float        # min GT disparity before the rescale (maps the estimate, SPEC 8.1)


def normalise_gt(gt: np.ndarray, gt_type: str) -> NormalisedGT:
    """SPEC 8.1 for a GT disparity (``"disparity"``, Middlebury) or depth (``"depth"``, iBims-1) map."""
    if gt_type not in GT_TYPES:
        raise ValueError(f"gt_type must be one of {GT_TYPES}, got {gt_type!r}")
    g = np.array(gt, np.float64)
    if g.ndim != 2:
        raise ValueError(f"GT must be a 2-D map, got shape {g.shape}")
    g[g == 0] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        if gt_type == "disparity":
            gd = g
            mgd = float(np.nanmin(gd)) if np.any(~np.isnan(gd)) else math.nan
            gz = 1.0 / gd
        else:
            gz = g
            gd = 1.0 / gz
            if np.any(~np.isnan(gd)):
                gd = gd / np.nanmax(gd)
            bad = gd > 1            # a no-op in the reference too (gd <= 1 after the division)
            gz[bad] = np.nan
            gd[bad] = np.nan
            mgd = float(np.nanmin(gd)) if np.any(~np.isnan(gd)) else math.nan
    return NormalisedGT(matlab_rescale(gd), matlab_rescale(gz), mgd)


def normalise_estimate(ed: np.ndarray, mgd: float) -> np.ndarray:
    """``ez = rescale(1 ./ rescale(ed, mgd, 1), 0, 1)`` (SPEC 8.1): the estimated disparity is mapped onto the
    GT's disparity range [mgd, 1], inverted to depth and rescaled to [0, 1]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return matlab_rescale(1.0 / matlab_rescale(np.asarray(ed, np.float64), mgd, 1.0), 0.0, 1.0)


def ordinal(a: np.ndarray, b: np.ndarray, delta: float) -> np.ndarray:
    """The reference's ``ord``: with ``q = (a + eps)/(b + eps)``, +1 if q > delta, -1 if q < 1/delta, else 0
    (NaN gives 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (np.asarray(a, np.float64) + EPS) / (np.asarray(b, np.float64) + EPS)
    return np.where(q > delta, 1, np.where(q < 1 / delta, -1, 0)).astype(np.int64)


def pair_error(gz: np.ndarray, ez: np.ndarray, rows: np.ndarray, cols: np.ndarray, src: np.ndarray,
               dst: np.ndarray, freq_ratio: float, ratio: float) -> tuple[int, int]:
    """The reference's ``D3R.m``: ``(error, confidence)`` summed over the pairs ``(src[k], dst[k])`` of points
    ``(rows, cols)``. A pair is skipped when either GT depth is 0 or NaN, or when
    ``ord(gt_i, gt_j, 1 + freq_ratio) == 0``; otherwise it adds
    ``|ord(gt_i, gt_j, 1 + ratio) - ord(est_i, est_j, 1 + ratio)|`` (0, 1 or 2) to the error and 1 to the
    confidence."""
    g = np.nan_to_num(np.asarray(gz, np.float64)[rows, cols], nan=0.0)
    e = np.asarray(ez, np.float64)[rows, cols]
    g1, g2, e1, e2 = g[src], g[dst], e[src], e[dst]
    valid = (g1 != 0) & (g2 != 0) & (ordinal(g1, g2, 1 + freq_ratio) != 0)
    err = np.abs(ordinal(g1, g2, 1 + ratio) - ordinal(e1, e2, 1 + ratio))
    return int(err[valid].sum()), int(valid.sum())


def _ratio(err: int, conf: int) -> float:
    return err / conf if conf else math.nan   # MATLAB 0/0 = NaN


def rmse(gd: np.ndarray, ed: np.ndarray) -> float:
    """SPEC 8.4: where ``gd`` is NaN both ``gd`` and the raw estimate ``ed`` are set to 0, then
    ``sqrt(mean((gd - ed)^2))`` over **all** pixels (masked pixels add 0 error but count)."""
    gd = np.asarray(gd, np.float64)
    mask = np.isnan(gd)
    d = np.where(mask, 0.0, gd) - np.where(mask, 0.0, np.asarray(ed, np.float64))
    return float(np.sqrt(np.mean(d * d)))


def depth_errors(gd: np.ndarray, gz: np.ndarray, ez: np.ndarray) -> dict[str, float]:
    """SPEC 8.4 depth metrics over the pixels where gd is not NaN, gz != 0 and ez != 0: the error rates
    ``fraction(max(gz/ez, ez/gz) > 1.25^k)`` for k = 1, 2, 3 (i.e. 1 - delta_k), log10, AbsRel and SqRel.
    All NaN when no pixel is left (MATLAB's 0/0)."""
    gd, gz, ez = (np.asarray(x, np.float64) for x in (gd, gz, ez))
    keep = ~np.isnan(gd) & (gz != 0) & (ez != 0)
    g, e = gz[keep], ez[keep]
    if g.size == 0:
        return dict(delta1_err=math.nan, delta2_err=math.nan, delta3_err=math.nan, abs_rel=math.nan,
                    sq_rel=math.nan, log10=math.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.maximum(g / e, e / g)
        return dict(
            delta1_err=float(np.count_nonzero(t > 1.25) / t.size),
            delta2_err=float(np.count_nonzero(t > 1.25 ** 2) / t.size),
            delta3_err=float(np.count_nonzero(t > 1.25 ** 3) / t.size),
            abs_rel=float(np.mean(np.abs(g - e) / g)),
            sq_rel=float(np.mean((g - e) ** 2 / g)),
            log10=float(np.mean(np.abs(np.log10(g) - np.log10(e)))),
        )


@dataclass(frozen=True)
class ImageMetrics:
    """One image's metrics (error rates: lower is better for all of them)."""

    ord: float
    d3r: float
    rmse: float
    delta1_err: float
    delta2_err: float
    delta3_err: float
    abs_rel: float
    sq_rel: float
    log10: float
    ord_pairs: int = 0     # confidence (pairs scored) behind ORD
    d3r_pairs: int = 0     # confidence behind D3R
    superpixels: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


METRIC_NAMES = ("ord", "d3r", "rmse", "delta1_err", "delta2_err", "delta3_err", "abs_rel", "sq_rel", "log10")


def sample_points(gt: NormalisedGT, superpixel_scale: float, rng: np.random.Generator | int, *,
                  n_segments: int = N_SEGMENTS, compactness: float = COMPACTNESS,
                  slic_zero: bool = SLIC_ZERO) -> SamplePoints:
    """Superpixel centres and D3R/ORD pairs of a normalised GT (SPEC 8.2). Compute once per GT image and reuse
    for every estimate of it, so that all methods are scored on the same pairs."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    return extract_points(gt.gd, superpixel_scale, rng, n_segments=n_segments, compactness=compactness,
                          slic_zero=slic_zero)


def evaluate_normalised(gt: NormalisedGT, ed: np.ndarray, points: SamplePoints) -> ImageMetrics:
    """All metrics of one raw estimate ``ed`` (disparity in im2double units) against a normalised GT."""
    ed = np.asarray(ed, np.float64)
    if ed.shape != gt.gd.shape:
        raise ValueError(f"estimate shape {ed.shape} differs from the GT shape {gt.gd.shape}")
    ez = normalise_estimate(ed, gt.mgd)
    d3r_err, d3r_conf = pair_error(gt.gz, ez, points.rows, points.cols, *points.neighbour,
                                   D3R_FREQ_RATIO, D3R_RATIO)
    ord_err, ord_conf = pair_error(gt.gz, ez, points.rows, points.cols, *points.random,
                                   ORD_FREQ_RATIO, ORD_RATIO)
    return ImageMetrics(ord=_ratio(ord_err, ord_conf), d3r=_ratio(d3r_err, d3r_conf), rmse=rmse(gt.gd, ed),
                        **depth_errors(gt.gd, gt.gz, ez), ord_pairs=ord_conf, d3r_pairs=d3r_conf,
                        superpixels=points.n)


def evaluate_pair(gt: np.ndarray, estimate: np.ndarray, *, gt_type: str = "disparity",
                  superpixel_scale: float = 1.0, seed: int | np.random.Generator = 0,
                  n_segments: int = N_SEGMENTS, compactness: float = COMPACTNESS,
                  slic_zero: bool = SLIC_ZERO) -> ImageMetrics:
    """Every metric of SPEC 8 for one GT map and one estimate (both in im2double units, GT 0 = invalid)."""
    g = normalise_gt(gt, gt_type)
    pts = sample_points(g, superpixel_scale, seed, n_segments=n_segments, compactness=compactness,
                        slic_zero=slic_zero)
    return evaluate_normalised(g, estimate, pts)


def mean_metrics(per_image: list[ImageMetrics]) -> dict[str, float]:
    """``mean(., 'omitnan')`` of each metric over images (NaN when every image is NaN or there are none)."""
    out = {}
    for name in METRIC_NAMES:
        v = np.array([getattr(m, name) for m in per_image], np.float64)
        v = v[~np.isnan(v)]
        out[name] = float(v.mean()) if v.size else math.nan
    return out


__all__ = [
    "EPS", "GT_TYPES", "ImageMetrics", "METRIC_NAMES", "NormalisedGT", "depth_errors", "evaluate_normalised",
    "evaluate_pair", "matlab_rescale", "mean_metrics", "normalise_estimate", "normalise_gt", "ordinal",
    "pair_error", "rmse", "sample_points",
]
