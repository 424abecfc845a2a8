"""Bring your own estimates: the double-estimation merge (SPEC 3.1) on any two depth maps of one image.

The pipeline's whole-image double estimate, from its step after the two single estimates on: each map at its
own size is CUBIC-resized to the merge net's 1024^2 with the pipeline's bands (``canvas`` and
``kernels.resize_maps``, SPEC 3.1 steps 1-2), merged with low = outer and high = inner, ``(y + 1) / 2`` and
min-maxed (``kernels.double_from_estimates``, steps 3-4), then CUBIC-resized to the output size like boost's
r0/r20 result (``boost.resize_map``). Given the pipeline's own single estimates (``whole_single_low`` /
``whole_single_high``) the result is boost's r0/r20 map (tests/test_merge_predict.py).

Normalisation: none beyond the pipeline's. The merge net min-maxes each 1024^2 input itself (SPEC 4.3), so any
scale and shift of a map gives the same result; MiDaS's and DAv2's single estimates reach it min-maxed, LeReS's
raw. Polarity is not normalised away: the merge net was trained on MiDaS estimates, **inverse depth** (larger =
nearer, bright = near). Pass a depth map (larger = farther) with ``depth=True``: it becomes ``1 / d`` (its
values must then be > 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import jax

# jax, the kernels and the merge net are imported by the functions that run them: ``hrjax merge`` reads and
# checks its two files (check_estimate, check_pair) before anything heavy loads, so a bad file fails at once.

# Two maps "of one image" may come at different sizes (e.g. a low-resolution network output and a map at the
# image size), but their aspect ratios must agree: network inputs on a 32- or 14-pixel grid shift it by a few
# percent (MiDaS at 384 gives 288 rows for a 494 x 640 image: 3 %), another image's map usually by more.
ASPECT_TOLERANCE = 0.05


class EstimateError(ValueError):
    """A map that cannot be merged: not 2-D, non-finite, constant, not positive with ``depth=True``, or the two
    maps' shapes disagree."""


def check_estimate(m, name: str, *, depth: bool = False) -> np.ndarray:
    """``m`` as an (H, W) float32 inverse-depth map ready to merge, or an :class:`EstimateError` naming ``name``.

    Constant maps are refused: the pipeline turns a flat estimate into zeros rather than crash as the reference
    does (SPEC Q8, a flat image), but a map brought to the merge that holds one value carries no depth (an
    empty or wrong file) and would silently give a meaningless result."""
    a = np.asarray(m)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2 or min(a.shape) < 1:
        raise EstimateError(f"{name}: a depth map is one (H, W) channel, got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        raise EstimateError(f"{name}: not a numeric map (dtype {a.dtype})")
    a = a.astype(np.float32)
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    if bad:
        raise EstimateError(f"{name}: {bad} NaN/infinite values of {a.size}; mask or fill them first")
    lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        raise EstimateError(f"{name}: constant map (every value {lo:g}): it holds no depth to merge")
    if depth:
        if lo <= 0:
            raise EstimateError(f"{name}: depth=True takes depth > 0 to invert (1/d), found minimum {lo:g}; "
                                f"convert it to inverse depth yourself and pass it without depth")
        a = np.float32(1) / a
    return a


def check_pair(low_hw: tuple[int, int], high_hw: tuple[int, int]) -> None:
    """Both shapes of one image: equal, or aspect ratios within :data:`ASPECT_TOLERANCE`."""
    (hl, wl), (hh, wh) = low_hw, high_hw
    if abs((hl / wl) / (hh / wh) - 1) > ASPECT_TOLERANCE:
        raise EstimateError(f"low is {wl}x{hl} and high {wh}x{hh} (width x height): aspect ratios "
                            f"{wl / hl:.3f} and {wh / hh:.3f} differ by more than {ASPECT_TOLERANCE:.0%}, so "
                            f"they are not estimates of one image")


def to_merge_size(m: np.ndarray, size: int) -> jax.Array:
    """(H, W) float32 -> (1, size, size): the pipeline's CUBIC resize of a single estimate at its region's size
    to the merge net's input, 1024^2 for the official one (SPEC 3.1 steps 1-2; cv2's code path for a float32
    map of that size)."""
    import jax.numpy as jnp

    from hrjax.pipeline import canvas, kernels

    h, w = m.shape
    v = canvas.variant(np.float32, (h, w))
    iy, wy = canvas.stack_bands([canvas.band_from_canvas(h, size, v)])
    ix, wx = canvas.stack_bands([canvas.band_from_canvas(w, size, v)])
    return kernels.resize_maps(iy, wy, jnp.asarray(m)[None], ix, wx)


def merge_maps(merge_graphdef, merge_state, low, high, *, depth: bool = False,
               size: tuple[int, int] | None = None) -> np.ndarray:
    """The double-estimation merge of ``low`` and ``high`` with the merge network ``(merge_graphdef,
    merge_state)`` (``hrjax.weights.load.load_model("mergenet")``); see :func:`merge_estimates`."""
    from hrjax.models import mergenet
    from hrjax.pipeline import kernels
    from hrjax.pipeline.boost import resize_map

    lo = check_estimate(low, "low", depth=depth)
    hi = check_estimate(high, "high", depth=depth)
    check_pair(lo.shape, hi.shape)
    msize = mergenet.input_size(merge_graphdef, merge_state)
    w = kernels.double_from_estimates(merge_graphdef, merge_state, to_merge_size(lo, msize),
                                      to_merge_size(hi, msize))[0]
    return np.asarray(resize_map(w, tuple(size) if size is not None else hi.shape), np.float32)


def merge_estimates(models, low, high, *, depth: bool = False, size: tuple[int, int] | None = None) -> np.ndarray:
    """Merge a low- and a high-resolution depth estimate of one image (the paper's double estimate, SPEC 3.1).

    Args:
      models: :func:`hrjax.load_models`'s result; only its merge network is used.
      low: the estimate with the consistent structure (e.g. the base network at its native resolution), an
        (H, W) array (numpy or JAX); any scale and shift, **inverse depth** (larger = nearer) unless ``depth``.
      high: the estimate with the detail (e.g. the same network at a higher input resolution), same polarity,
        the same size or at least the same aspect ratio (within 5 %).
      depth: the maps are depth (larger = farther, values > 0): each is inverted (1/d) first, since the merge
        net expects inverse depth. The result is inverse depth either way.
      size: (rows, cols) of the result; default ``high``'s size.

    Returns:
      (rows, cols) float32 relative inverse depth, nominally [0, 1] and not rescaled after the final CUBIC
      resize (like ``boost(...).depth`` in r0/r20 mode).

    Raises:
      EstimateError (a ValueError): a map is not 2-D, has NaN/inf values, is constant, is not positive with
      ``depth``, or the two aspect ratios differ.
    """
    return merge_maps(models.merge_graphdef, models.merge_state, low, high, depth=depth, size=size)
