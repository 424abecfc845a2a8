"""MiDaS input geometry (SPEC 3.2 step 1): the reference's ``Resize`` rule with keep_aspect_ratio,
ensure_multiple_of=32 and resize_method="upper_bound"."""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MULTIPLE = 32


def _constrain(v: float, max_val: int) -> int:
    # np.round is round-half-to-even (quirk Q10); fall back to floor when rounding up exceeds the bound.
    y = int(np.round(v / MULTIPLE) * MULTIPLE)
    if y > max_val:
        y = int(np.floor(v / MULTIPLE) * MULTIPLE)
    return y


def midas_input_size(h: int, w: int, msize: int) -> tuple[int, int]:
    """(rows, cols) of the network input for an ``h`` x ``w`` image and a requested size ``msize``.

    The long side becomes ``msize``; the short side the nearest multiple of 32 of its scaled length.
    Quirk Q9: for aspect ratios beyond ~msize/16 the reference rounds the short side to 0 and crashes; hrjax
    keeps at least one block of 32 pixels instead.
    """
    scale = min(msize / h, msize / w)
    return max(_constrain(scale * h, msize), MULTIPLE), max(_constrain(scale * w, msize), MULTIPLE)
