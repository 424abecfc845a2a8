"""Host (numpy) operators that resize into and out of fixed-size canvases.

A resize to a size that differs per patch is written into a fixed canvas with zero rows beyond the patch, so
patches of different sizes stack into one batched einsum (:func:`hrjax.pipeline.kernels.resize_maps`).
"""

from __future__ import annotations

import numpy as np

from hrjax.ops.resize import Variant, cv2_variant, resize_matrix


# Which of cv2's two CUBIC code paths the reference's call took (see hrjax.ops.resize): float64 images always
# run OpenCV's generic code (float32 positions/weights), float32 maps of both sides >= 4 run IPP (double).
def variant(dtype, src_hw: tuple[int, int], channels: int = 1) -> Variant:
    return cv2_variant("cubic", dtype, src_hw, channels)


def resize_into_canvas(n_in: int, n_out: int, canvas: int, var: Variant) -> np.ndarray:
    """(canvas, n_in): CUBIC resize n_in -> n_out written to the first n_out rows; the rest is zero."""
    m = np.zeros((canvas, n_in), np.float32)
    m[:n_out] = resize_matrix(n_in, n_out, "cubic", var)
    return m


def resize_from_canvas(n_in: int, n_out: int, canvas: int, var: Variant) -> np.ndarray:
    """(n_out, canvas): CUBIC resize of the first n_in entries of a canvas to n_out; the rest is ignored."""
    m = np.zeros((n_out, canvas), np.float32)
    m[:, :n_in] = resize_matrix(n_in, n_out, "cubic", var)
    return m


def canvas_size(n: int, quantum: int = 64) -> int:
    """Round a per-patch size up so nearby sizes share one compiled shape."""
    return -(-n // quantum) * quantum
