"""Input images: any common array layout -> the reference's RGB float64 in [0, 1] (SPEC 1.3 step 1)."""

from __future__ import annotations

import numpy as np


def to_rgb_float64(image) -> np.ndarray:
    """(H, W, 3) float64 RGB in [0, 1] from an (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA array.

    uint8 is divided by 255 (the reference's reading), uint16 by 65535, floats are taken as already in
    [0, 1]. Gray is replicated to three channels (what ``cv2.imread(IMREAD_COLOR)`` does); alpha is dropped.
    Raises ValueError for anything else, including non-finite values and empty images.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"empty image of shape {a.shape}")
    a = a[:, :, :3]
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    if np.issubdtype(a.dtype, np.floating):
        out = a.astype(np.float64)
        if not np.isfinite(out).all():
            raise ValueError("image contains NaN or infinite values")
        return out
    raise ValueError(f"unsupported image dtype {a.dtype} (use uint8, uint16 or float)")
