"""Depth Anything V2's own input rule and output resize (official ``DepthAnythingV2.image2tensor`` / ``infer_image``,
``depth_anything_v2/dpt.py`` and ``util/transform.py`` @ a561b84).

Input (host, numpy + cv2 like ``hrjax.pipeline.patches``: the host resize *is* the reference op):
``Resize(width=size, height=size, keep_aspect_ratio=True, ensure_multiple_of=14, resize_method="lower_bound",
image_interpolation_method=cv2.INTER_CUBIC)`` on the RGB image as float64 in [0, 1], then ImageNet normalisation
(float64), then float32. "lower_bound": the image is scaled so that *both* sides reach at least ``size`` (the
shorter side becomes ``size``), then each side is rounded to a multiple of 14 (``np.round``, half to even),
rounded up instead where that falls below ``size``. There is no upper cap: a 1:4 panorama at 518 becomes
518 x 2072.

Output (device): ``F.interpolate(depth[:, None], (h, w), mode="bilinear", align_corners=True)`` back to the image
size (``hrjax.models.upsample``, torch's kernel).
"""

from __future__ import annotations

import cv2
import jax
import numpy as np

from hrjax.models.dav2 import PATCH, predictor
from hrjax.models.upsample import resize_bilinear
from hrjax.pipeline.midas_input import IMAGENET_MEAN, IMAGENET_STD

INPUT_SIZE = 518  # infer_image(raw_image, input_size=518); the official run.py default too


def _constrain(x: float, min_val: int) -> int:
    # Resize.constrain_to_multiple_of (max_val unused for lower_bound): np.round (half to even), ceil below min_val
    y = int(np.round(x / PATCH) * PATCH)
    if y < min_val:
        y = int(np.ceil(x / PATCH) * PATCH)
    return y


def dav2_input_size(h: int, w: int, size: int = INPUT_SIZE) -> tuple[int, int]:
    """(rows, cols) of the network input for an ``h`` x ``w`` image (``Resize.get_size``, lower_bound)."""
    if h < 1 or w < 1 or size < 1:
        raise ValueError(f"image and input sizes must be positive, got {h}x{w} and {size}")
    scale_h, scale_w = size / h, size / w
    # keep_aspect_ratio + lower_bound: "scale such that output size is lower bound" (the larger of the two scales)
    scale = scale_w if scale_w > scale_h else scale_h
    return _constrain(scale * h, size), _constrain(scale * w, size)


def prepare_input(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """(1, rows, cols, 3) float32 network input from an (H, W, 3) RGB image in [0, 1] (``image2tensor``, NHWC).

    ``rgb`` is what the reference holds after ``cv2.cvtColor(raw, BGR2RGB) / 255.0``; it is resized in float64 as
    there (cv2 takes its float64 CUBIC path), normalised in float64 and only then rounded to float32."""
    rgb = np.asarray(rgb, np.float64)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    rows, cols = dav2_input_size(rgb.shape[0], rgb.shape[1], size)
    resized = cv2.resize(rgb, (cols, rows), interpolation=cv2.INTER_CUBIC)
    normalised = (resized - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)  # float64, as NormalizeImage
    return normalised.astype(np.float32)[None]


def resize_output(depth: jax.Array, size: tuple[int, int]) -> jax.Array:
    """(N, h', w') network output -> (N, H, W) at the image size: bilinear, align_corners=True (``infer_image``)."""
    return resize_bilinear(depth[..., None], size, align_corners=True)[..., 0]


_resize_output = jax.jit(resize_output, static_argnums=1)


def infer_image(graphdef, state, rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The official single pass ``DepthAnythingV2.infer_image(raw, input_size=size)``: (H, W, 3) RGB in [0, 1]
    -> (H, W) float32 relative disparity (larger = nearer), raw (arbitrary scale, no min-max), at the image
    size."""
    x = prepare_input(rgb, size)
    depth = predictor(graphdef)(state, x)
    return np.asarray(_resize_output(depth, tuple(np.shape(rgb)[:2]))[0], np.float32)


def single_pass(base, graphdef, state, rgb: np.ndarray) -> np.ndarray:
    """DAv2's ``BaseNetwork.single_pass`` (``hrjax predict``): the official :func:`infer_image` at 518."""
    return infer_image(graphdef, state, rgb)
