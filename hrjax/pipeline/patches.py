"""Target size, patch selection and output-scale bookkeeping (SPEC §1.3 steps 2 and 6–10, §5.1–5.3).

Host-side numpy + cv2; everything here is cheap and data-dependent (it decides *which* network calls run),
so it stays out of jit. :func:`plan` runs the whole per-image host flow up to the merge loop and returns a
frozen :class:`Plan`; the network stages only consume its numbers and its two RGB images.

Rounding follows the reference (SPEC §9.1 Q10): Python/NumPy ``round`` is round-half-to-even, and sizes are
``int()`` of the rounded value.

The host-side resizes call ``cv2.resize`` directly: that *is* the reference behaviour (SPEC §9.3), and the
golden pipeline fixtures were produced with the same OpenCV major version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from hrjax.ops.host import integral, rgb_to_gray, sobel_gradient
from hrjax.pipeline.config import MODES
from hrjax.pipeline.search import R_MAX, SCALE_THRESHOLD, edge_map, search_edge_map

# R_x threshold x per mode (SPEC §1.1): 0 for R0, 0.2 for R20 and Final.
R_THRESHOLD = {"r0": 0.0, "r20": 0.2, "final": 0.2}


# --------------------------------------------------------------------------------------------------------
# regions


@dataclass(frozen=True)
class Crop:
    """Rows y..y+h-1, cols x..x+w-1 of an image (already clipped to it, like NumPy slicing)."""

    y: int
    x: int
    h: int
    w: int

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """``[x, y, w, h]``, the reference's rect order."""
        return self.x, self.y, self.w, self.h


def crops_of(rects: Sequence[Sequence[float]], hw: tuple[int, int]) -> list[Crop]:
    """The crops of reference rects ``[x, y, w, h]`` in an image of ``hw`` = (rows, cols), clipped at its border
    like the reference's NumPy slicing (SPEC 5.4 step 2).

    Args:
      rects: rects in the reference's order, inside the image at their top-left corner.
      hw: the image's (rows, cols).

    Returns:
      One :class:`Crop` per rect, in the same order.
    """
    hs, ws = int(hw[0]), int(hw[1])
    return [Crop(int(y), int(x), int(min(y + h, hs) - y), int(min(x + w, ws) - x)) for x, y, w, h in rects]


# --------------------------------------------------------------------------------------------------------
# SPEC §1.3 steps 6, 8 and 10


def patch_factor(K: float, R: int, r_max: int = R_MAX) -> float:
    """``max(min(1, 4·K·R/3000), 0.2)`` (SPEC §1.3 step 6); evaluated left to right like the reference."""
    return max(min(1, 4 * K * R / r_max), 0.2)


def target_size(h: int, w: int, R: int, factor: float, max_res: float = math.inf) -> tuple[int, int]:
    """Target image size ``(a, b)`` = (rows, cols) (SPEC §1.3 step 8).

    The long side (cols when ``h == w``) is 2R, the short side ``round(2R·short/long)`` (round half to even,
    Q10); both are then divided by ``factor`` and rounded. If the result's long side exceeds ``max_res`` the
    size is recomputed *without* factor: long side ``max_res``, short side ``round(max_res·short/long)``.
    The expressions keep the reference's evaluation order (integer product first, then true division).
    """
    if h > w:
        a = 2 * R
        b = round(2 * R * w / h)
    else:
        a = round(2 * R * h / w)
        b = 2 * R
    b = int(round(b / factor))
    a = int(round(a / factor))
    if max(a, b) > max_res:
        if h > w:
            a = max_res
            b = round(max_res * w / h)
        else:
            a = round(max_res * h / w)
            b = max_res
        b = int(b)
        a = int(a)
    return a, b


def output_scale(input_hw: tuple[int, int], target_hw: tuple[int, int],
                 output_resolution: int = 1) -> tuple[float, tuple[int, int]]:
    """Merged-in scale ``s`` and shape (SPEC §1.3 step 10, Q6, Q12).

    ``s = H_in / a`` when ``output_resolution == 1`` and 1 when it is 0. The merged-in maps (E_base, E_upd and
    the patch RGB image) have shape ``(round(a·s), round(b·s))`` (rows, cols; round half to even), which may
    be 1 px off the input width (Q12). Other ``output_resolution`` values are rejected (the reference treats
    anything but 1 as 0).
    """
    if output_resolution not in (0, 1):
        raise ValueError(f"output_resolution must be 0 or 1, got {output_resolution!r}")
    a, b = target_hw
    s = input_hw[0] / a if output_resolution == 1 else 1.0
    return s, (round(a * s), round(b * s))


def scale_rects(rects: np.ndarray, s: float) -> np.ndarray:
    """``round_half_even(rect·s)`` as int64, element-wise on ``[x, y, w, h]`` (SPEC §5.4 step 1, Q10)."""
    r = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    return np.round(r * s).astype(np.int64)


# --------------------------------------------------------------------------------------------------------
# SPEC §5.1–5.3: gradient map, grid, adaptive selection


@dataclass(frozen=True, eq=False)
class GradientMap:
    """Result of SPEC §5.1 on the target-resolution image."""

    integral: np.ndarray  # cv2.integral of the thresholded gradient, (H_t+1, W_t+1) float64
    gf: float  # whole-image gradient density sum(G)/(H_t·W_t)
    threshold: float  # mean(G[G > 0]); NaN when the image has no positive gradient


def gradient_map(img_t: np.ndarray) -> GradientMap:
    """SPEC §5.1 (reference ``run.generatepatchs``, first half).

    ``G = |Sobel_y| + |Sobel_x|`` of the gray image, ``G[G < mean(G[G > 0])] = 0``, ``gf = sum(G)/(H·W)``,
    ``I = integral(G)``. The numpy reductions (``mean`` of the 1-D selection, ``sum`` of the 2-D map) are the
    reference's own calls, so gf and the threshold are bit-identical.

    A map without any positive gradient (constant image) has an empty selection: the reference's threshold
    is then ``NaN`` (with a RuntimeWarning) and thresholding is a no-op. We return ``threshold = NaN``
    without the warning; :func:`select_patches` then selects no patches (see there).
    """
    g = sobel_gradient(rgb_to_gray(img_t))
    pos = g[g > 0]
    if pos.size == 0:
        thr = math.nan
    else:
        thr = float(pos.mean())
        g[g < thr] = 0
    gf = float(g.sum() / len(g.reshape(-1)))
    return GradientMap(integral=integral(g), gf=gf, threshold=thr)


def grid_rects(height: int, width: int, base_size: int = 768) -> list[list[int]]:
    """Initial grid (SPEC §5.2, reference ``utils.applyGridpatch``), as ``[x, y, w, h]`` lists in grid order.

    Squares of side ``2·blsize`` (``blsize = int(round(base_size/2))``) with stride
    ``int(round(blsize·0.75))``; columns are the **outer** loop, rows the inner one; the exclusive end bounds
    mean no square reaches the right/bottom edge exactly, and an image with a side ``<= 2·blsize`` has none.
    """
    bl = int(round(base_size / 2))
    stride = int(round(bl * 0.75))
    return [[cx - bl, cy - bl, 2 * bl, 2 * bl]
            for cx in range(bl, width - bl, stride)
            for cy in range(bl, height - bl, stride)]


def _density(ii: np.ndarray, rect: list[int]) -> float:
    # Reference getGF_fromintegral(...)/(w*h), same evaluation order (left-to-right) for bit-identical values.
    x, y, w, h = rect
    return (ii[y + h, x + w] - ii[y, x + w] - ii[y + h, x] + ii[y, x]) / (w * h)


def adaptive_selection(gm: GradientMap, grid: list[list[int]], factor: float) -> list[tuple[int, list[int]]]:
    """SPEC §5.3 (reference ``run.adaptiveselection``): ``[(patch_id, rect), …]`` in kept-grid order.

    Keeps a grid square if its gradient density is ``>= gf`` and grows it by ``step = int(32/factor)`` per
    iteration (Q11): the candidate is ``[x−half, y−half, w+step, h+step]`` with ``half = int(step/2)``, so an
    odd step grows 1 px more to the right/bottom. Growth stops when the candidate leaves the image, tested
    against ``(Hb, Wb) = I.shape = (H_t+1, W_t+1)`` with ``>=`` (so a patch may touch the right/bottom edge
    exactly), or when its density drops below gf. The patch id is the kept-grid count.
    """
    ii = gm.integral
    hb, wb = ii.shape
    step = int(32 / factor)
    half = int(step / 2)
    out: list[tuple[int, list[int]]] = []
    for rect in grid:
        if not _density(ii, rect) >= gm.gf:
            continue
        while True:
            x, y, w, h = rect
            cand = [x - half, y - half, w + step, h + step]
            if cand[0] < 0 or cand[1] < 0 or cand[1] + cand[3] >= hb or cand[0] + cand[2] >= wb:
                break
            if _density(ii, cand) < gm.gf:
                break
            rect = cand
        out.append((len(out), list(rect)))
    return out


def select_patches(img_t: np.ndarray, base_size: int = 768, *, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Patches of the target-resolution image in merge order (SPEC §5.1–5.3).

    Returns ``(rects, ids)``: ``rects`` is (N, 4) int64 ``[x, y, w, h]`` in target pixels, ``ids`` (N,) int64
    the kept-grid index of each (the reference's dict key). Order: size (= w; patches stay square)
    descending with a **stable** sort, so ties keep the kept-grid order (column-major).

    Defined behaviour: an image without any positive gradient (constant) selects **no patches**. (The
    reference does not crash at this point — its NaN threshold makes every density 0 >= gf = 0, so it would
    keep and grow every grid square — but such an image crashes later anyway, SPEC Q8, and patches of a flat
    image carry no detail.)
    """
    gm = gradient_map(img_t)
    if math.isnan(gm.threshold):
        return np.zeros((0, 4), np.int64), np.zeros((0,), np.int64)
    grid = grid_rects(img_t.shape[0], img_t.shape[1], base_size)
    kept = adaptive_selection(gm, grid, factor)
    kept = sorted(kept, key=lambda item: item[1][2], reverse=True)  # stable, like the reference's sorted()
    rects = np.array([r for _, r in kept], dtype=np.int64).reshape(-1, 4)
    ids = np.array([i for i, _ in kept], dtype=np.int64)
    return rects, ids


# --------------------------------------------------------------------------------------------------------
# Whole host flow


def _frozen(a: np.ndarray | None) -> np.ndarray | None:
    if a is not None:
        a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Plan:
    """Host-side plan of one image (SPEC §1.3 steps 2, 6–10). Arrays are read-only.

    ``R``/``K`` are the mode's R_x search (``R0`` for mode r0, ``R20`` otherwise) and drive the whole-image
    double estimate ``double_estimate(img, low=receptive_field, high=R)``. ``R0``/``R0_K`` is the conf=0
    search, recorded for every mode. ``boost`` is True only for mode final with ``max_res >= R``; otherwise
    the result is the whole-image double estimate and every Final-only field is ``None`` / empty.
    """

    mode: str  # 'r0' | 'r20' | 'final'
    input_shape: tuple[int, int, int]  # (H_in, W_in, 3)
    receptive_field: int  # 384 (MiDaS) / 448 (LeReS, SGR)
    R: int
    K: float
    R0: int
    R0_K: float
    factor: float | None  # Final only (step 6; computed even when max_res < R)
    boost: bool  # local boosting runs (Final and not max_res < R, step 7)
    target_size: tuple[int, int] | None  # (a, b) = (rows, cols) of img_target
    rects_target: np.ndarray  # (N, 4) int64 [x, y, w, h] in target pixels, merge order
    patch_ids: np.ndarray  # (N,) int64 kept-grid ids, merge order
    rects_scaled: np.ndarray  # (N, 4) int64, round_half_even(rects_target · mergein_scale)
    mergein_scale: float | None  # s of step 10
    mergein_shape: tuple[int, int] | None  # (rows, cols) of E_base / E_upd / img_out
    img_target: np.ndarray | None  # (a, b, 3) float64, CUBIC from the input; may overshoot [0, 1], unclipped
    img_out: np.ndarray | None  # mergein_shape + (3,) float64, CUBIC from img_target: patch RGB is cut here

    @property
    def n_patches(self) -> int:
        return int(self.rects_target.shape[0])

    @property
    def crops(self) -> list[Crop]:
        """The patches' regions of the merged-in maps (``rects_scaled`` clipped at the border, SPEC 5.4 step 2),
        in merge order."""
        return crops_of(self.rects_scaled, self.mergein_shape) if self.mergein_shape else []

    @property
    def patch_netsize(self) -> int:
        """High resolution of the per-patch double estimate (2·RF, SPEC §1.1)."""
        return 2 * self.receptive_field


def plan(img: np.ndarray, mode: str, receptive_field: int = 384, max_res: float = math.inf,
         output_resolution: int = 1) -> Plan:
    """Run the host flow of SPEC §1.3 for an RGB float64 image in [0, 1] of shape (H, W, 3).

    Step 2 (R_x search; both conf=0 and the mode's threshold, sharing the edge map), step 6 (factor),
    step 7 (``max_res < R`` → no boosting), step 8 (target size and the CUBIC resize of the input), step 9
    (patch selection with ``base_size = 2·RF``) and step 10 (output scale, CUBIC resize of the target image
    to the merged-in shape, rect scaling). Grayscale inputs must be promoted to 3 channels by the caller.
    """
    mode = mode.lower()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    output_scale((1, 1), (1, 1), output_resolution)  # rejects a flag other than 0 / 1 before any work
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    h, w = img.shape[:2]

    e = edge_map(img)
    r0, k0 = search_edge_map(e, max(h, w), receptive_field, 0.0, SCALE_THRESHOLD, R_MAX)
    if R_THRESHOLD[mode] == 0.0:
        r, k = r0, k0
    else:
        r, k = search_edge_map(e, max(h, w), receptive_field, R_THRESHOLD[mode], SCALE_THRESHOLD, R_MAX)

    empty4 = np.zeros((0, 4), np.int64)
    common = dict(mode=mode, input_shape=(h, w, 3), receptive_field=int(receptive_field), R=r, K=k, R0=r0, R0_K=k0)
    if mode != "final":
        return Plan(**common, factor=None, boost=False, target_size=None, rects_target=_frozen(empty4),
                    patch_ids=_frozen(np.zeros((0,), np.int64)), rects_scaled=_frozen(empty4.copy()),
                    mergein_scale=None, mergein_shape=None, img_target=None, img_out=None)

    factor = patch_factor(k, r)
    if max_res < r:  # step 7: the whole-image double estimate is the final result
        return Plan(**common, factor=factor, boost=False, target_size=None, rects_target=_frozen(empty4),
                    patch_ids=_frozen(np.zeros((0,), np.int64)), rects_scaled=_frozen(empty4.copy()),
                    mergein_scale=None, mergein_shape=None, img_target=None, img_out=None)

    a, b = target_size(h, w, r, factor, max_res)
    img_t = cv2.resize(img, (b, a), interpolation=cv2.INTER_CUBIC)  # step 8: may overshoot [0,1]; not clipped
    rects, ids = select_patches(img_t, 2 * receptive_field, factor=factor)
    s, (ho, wo) = output_scale((h, w), (a, b), output_resolution)
    img_o = cv2.resize(img_t, (wo, ho), interpolation=cv2.INTER_CUBIC)  # step 10 (a same-size resize copies)
    return Plan(**common, factor=factor, boost=True, target_size=(a, b), rects_target=_frozen(rects),
                patch_ids=_frozen(ids), rects_scaled=_frozen(scale_rects(rects, s)), mergein_scale=s,
                mergein_shape=(ho, wo), img_target=_frozen(img_t), img_out=_frozen(img_o))
