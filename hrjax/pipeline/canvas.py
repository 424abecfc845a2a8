"""Host (numpy) bands that resize into and out of fixed-size canvases.

A resize to a size that differs per patch is written into a fixed canvas with zero rows beyond the patch, so
patches of different sizes stack into one batched call (:func:`hrjax.pipeline.kernels.resize_maps`). Bands
(:mod:`hrjax.ops.banded`): ``(idx (n, k) int32, w (n, k) float32)`` per axis.
"""

from __future__ import annotations

import numpy as np

from hrjax.ops.banded import shifted
from hrjax.ops.resize import Variant, cv2_variant, resize_band


# Which of cv2's two CUBIC code paths the reference's call took (see hrjax.ops.resize): float64 images always
# run OpenCV's generic code (float32 positions/weights), float32 maps of both sides >= 4 run IPP (double).
def variant(dtype, src_hw: tuple[int, int], channels: int = 1) -> Variant:
    return cv2_variant("cubic", dtype, src_hw, channels)


def band_into_canvas(n_in: int, n_out: int, canvas: int, var: Variant) -> tuple[np.ndarray, np.ndarray]:
    """(canvas, k): CUBIC resize n_in -> n_out in the first n_out outputs; the rest have weight 0."""
    idx, w = shifted(resize_band(n_in, n_out, "cubic", var), 0, rows=canvas)
    return idx, w.astype(np.float32)


def band_from_canvas(n_in: int, n_out: int, var: Variant) -> tuple[np.ndarray, np.ndarray]:
    """(n_out, k): CUBIC resize of the first n_in entries of a canvas to n_out; taps never read beyond n_in,
    so the canvas's size and the rest of it do not matter."""
    idx, w = resize_band(n_in, n_out, "cubic", var)
    return np.array(idx), w.astype(np.float32)


def stack_bands(bands: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """N bands of one shape -> ``(idx (N, n, k), w (N, n, k))``."""
    return np.stack([b[0] for b in bands]), np.stack([b[1] for b in bands])


def canvas_size(n: int, quantum: int = 64) -> int:
    """Round a per-patch size up so nearby sizes share one compiled shape."""
    return -(-n // quantum) * quantum
