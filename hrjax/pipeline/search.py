"""R_x resolution search (SPEC §2, reference ``utils.calculateprocessingres``). Host-side numpy + cv2.

The search picks the largest processing resolution R at which (almost) every pixel still has an edge within
one receptive field, and returns the patch scale K used by the patch-selection factor (SPEC §1.3 step 6).

Two behaviours are *defined here* where the reference crashes (SPEC §9.1 Q8):

* **Empty loop** (``3·max(H, W) < 416`` for B = 384, i.e. long side ≤ 138; ≤ 159 for B = 448): the reference
  raises ``UnboundLocalError``. We return ``(B, 0.0)``, so R = B and the patch factor clamps to 0.2.
* **Block size 0** (``floor(min(H, W) / p) == 0`` for a p the loop reaches, i.e. short side < p): skimage's
  ``block_reduce`` raises ``ValueError``. We stop the search there as if that iteration had broken, keeping the
  last accepted ``best`` and computing K from the P of the last iteration that ran. If it happens on the very
  first iteration (short side < B/32) there is no P at all and we return ``(B, 0.0)`` as for the empty loop.
"""

from __future__ import annotations

import cv2
import numpy as np

from hrjax.ops.host import block_max, dilate, rgb_to_gray, sobel_gradient

SPEED = 32  # reference `speed_scale`
R_MAX = 3000  # reference `whole_size_threshold`
SCALE_THRESHOLD = 3  # reference `scale_threshold`


def edge_map(img: np.ndarray) -> np.ndarray:
    """Square d×d 0/1 edge map of SPEC §2 steps 1–5 (d = min(H, W)); independent of ``conf``.

    Quirk Q4 (SPEC §9.1): the reference passes ``cv2.INTER_AREA`` as the third *positional* argument of
    ``cv2.resize``, which is ``dst``; the interpolation actually used is the default **INTER_LINEAR**. We call
    cv2 with the default on purpose.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {img.shape}")
    d = int(min(img.shape[:2]))
    grad = sobel_gradient(rgb_to_gray(img))
    grad = cv2.resize(grad, (d, d))  # Q4: INTER_LINEAR, not INTER_AREA; aspect ratio deliberately distorted
    lo, hi = grad.min(), grad.max()
    mid = lo + 0.4 * (hi - lo)
    # The reference does `grad[grad < mid] = 0; grad[grad >= mid] = 1`, which equals (grad >= mid) as 0/1.
    return (grad >= mid).astype(np.float64)


def search_edge_map(
    e: np.ndarray,
    long_side: int,
    receptive_field: int = 384,
    conf: float = 0.2,
    scale_thr: int = SCALE_THRESHOLD,
    r_max: int = R_MAX,
) -> tuple[int, float]:
    """SPEC §2 steps 6–10 on a precomputed :func:`edge_map` ``e`` (d×d) of an image whose long side is
    ``long_side``. Lets callers share the edge map between the conf=0 (R0) and conf=0.2 (R20) searches."""
    b = receptive_field
    d = e.shape[0]
    k1 = int(b / SPEED)  # 12 (MiDaS) / 14 (LeReS)
    k2 = int(b / (4 * SPEED))  # 3
    t = min(r_max, scale_thr * long_side)
    best = b / SPEED
    p_last = None
    for p in range(int(b / SPEED), int(t / SPEED), int(b / (2 * SPEED))):
        n = d // p  # == floor(d/p) for non-negative ints
        if n == 0:
            # Reference crash Q8 (block_reduce with block size 0): defined as a break, see module docstring.
            break
        pooled = block_max(e, n)
        # Q4 again: the positional cv2.INTER_NEAREST is `dst`; the resize is INTER_LINEAR.
        pooled = cv2.resize(pooled, (p, p))
        pooled = (pooled >= 0.5).astype(np.float64)
        p_last = pooled
        miss = (1.0 - dilate(pooled, k1)).mean()
        if miss > conf:
            break
        best = p
    if p_last is None:
        # Reference crash Q8 (empty loop -> UnboundLocalError): defined as (B, 0.0), i.e. factor 0.2.
        return int(b), 0.0
    k = float(dilate(p_last, k2).mean())
    return int(best * SPEED), k


def processing_res(
    img: np.ndarray,
    receptive_field: int = 384,
    conf: float = 0.2,
    scale_thr: int = SCALE_THRESHOLD,
    r_max: int = R_MAX,
) -> tuple[int, float]:
    """``(R, K)`` of the R_x search (SPEC §2), for an RGB float64 image in [0, 1] of shape (H, W, 3).

    ``conf`` is the R_x threshold x: 0 for R0, 0.2 for R20 / Final (SPEC §1.1). R is ``B + j·32·int(B/64)``
    (steps of 192 for MiDaS, 224 for LeReS), so ``R >= B``. K is the paper's patch scale: the mean of the
    last executed iteration's P dilated with a (B/128)² kernel. See the module docstring for the two cases
    where the reference crashes (Q8) and what is returned instead.
    """
    e = edge_map(img)
    return search_edge_map(e, int(max(img.shape[:2])), receptive_field, conf, scale_thr, r_max)
