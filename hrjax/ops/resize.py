"""OpenCV-exact ``cv2.resize`` (INTER_CUBIC and INTER_LINEAR, float images) as dense interpolation matrices.

cv2's resize is separable: ``out = Ry @ img @ Rx^T`` per channel, where ``Ry`` (out_h, H) and ``Rx``
(out_w, W) hold the interpolation weights of one axis each (SPEC §9.2). ``jax.image.resize`` cannot be used:
its cubic kernel is A = -0.5 and it antialiases on downscale, cv2 uses A = -0.75 and never antialiases.
The matrices are built on the host in float64 (:func:`resize_matrix`, cached) and applied either with
numpy (:func:`resize_np`, float64) or, on the device, as bands of the same weights (:func:`resize_band`,
:mod:`hrjax.ops.banded`: k = 4 or 2 taps per output pixel and axis, gathered and summed; :func:`resize`).

**Two code paths inside cv2 (measured on opencv-python-headless 5.0.0.93, the version of the fixtures).**
``cv2.resize`` first offers the call to its Intel IPP HAL (``hal/ipp/src/resize_ipp.cpp``); only when IPP
declines does OpenCV's own C++ code run. The two compute the source position differently:

- ``"generic"`` (OpenCV's ``resizeGeneric_``, the behaviour SPEC §9.2 documents): the source position
  ``(d + 0.5)·(1/(out/in)) − 0.5`` is computed in double and **rounded to float32**; the cubic weights are
  computed in float32 with the 4th = 1 − (sum of the other 3); linear weights are (1 − f, f) in float32.
- ``"ipp"``: the source position and the weights are double precision (Keys A = −0.75 is IPP's cubic with
  B = 0, C = 0.75); same taps, same replicate border.

Which one runs (probed on random images with both hypotheses, see ``tests/test_ops_resize.py``):

- CUBIC: IPP only for **float32** images with both source sides ≥ 4; float64 is always generic
  (``resize_ipp.cpp`` rejects non-linear 64f).
- LINEAR: IPP for float32 **and** float64 images with both source sides ≥ 2.
- In both cases IPP only takes 1, 3 or 4 channels; 2 or ≥5 channels always run generic.

The paths differ by up to ~1e-4 on [0, 1] noise at source sizes in the thousands (the float32 rounding of
the position is ~1e-4 px there), so :func:`cv2_variant` picks the path the reference's cv2 call took.
A same-size resize is an exact copy (``cv::resize`` returns ``src.copyTo(dst)``); along a single unchanged
axis both paths give the identity matrix anyway.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from hrjax.ops.banded import TAPS, band_of, resize_2d

Method = Literal["cubic", "linear"]
Variant = Literal["generic", "ipp"]

_METHODS = ("cubic", "linear")
_VARIANTS = ("generic", "ipp")


def cv2_variant(method: Method, dtype, in_hw: tuple[int, int], channels: int = 1) -> Variant:
    """The cv2 code path (``"generic"`` or ``"ipp"``) that ``cv2.resize`` takes for this call (SPEC §9.2).

    ``dtype`` is the dtype cv2 saw in the reference (not necessarily the dtype we compute in), ``in_hw`` the
    *source* size and ``channels`` the channel count (1 for a 2-D array). The rule mirrors the IPP HAL's
    acceptance test in opencv 5.0 (see the module docstring); it was established by comparing cv2 with both
    matrix variants on random images whose sizes make the two distinguishable.
    """
    _check_method(method)
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"only float32/float64 cv2 resizes are modelled, got {dt}")
    if channels not in (1, 3, 4):  # the IPP wrapper has no 2-channel or >4-channel resize
        return "generic"
    if method == "cubic":
        # resize_ipp.cpp: "if(ippInter != ippLinear && ippDataType == ipp64f) return NOT_IMPLEMENTED";
        # IPP's cubic also refuses sources narrower than its 4-tap kernel.
        return "ipp" if dt == np.float32 and min(in_hw) >= 4 else "generic"
    return "ipp" if min(in_hw) >= 2 else "generic"


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")


def _cubic_weights_f32(x: np.ndarray) -> np.ndarray:
    """OpenCV's ``interpolateCubic`` in float32 (SPEC §9.2): 4 weights per fraction ``x``, 4th = 1 − others."""
    x = x.astype(np.float32)
    a = np.float32(-0.75)
    one = np.float32(1.0)
    x1 = x + one
    y = one - x
    c0 = ((a * x1 - np.float32(5.0) * a) * x1 + np.float32(8.0) * a) * x1 - np.float32(4.0) * a
    c1 = ((a + np.float32(2.0)) * x - (a + np.float32(3.0))) * x * x + one
    c2 = ((a + np.float32(2.0)) * y - (a + np.float32(3.0))) * y * y + one
    c3 = one - c0 - c1 - c2  # evaluated left to right, in float32, as in the C++ source
    return np.stack([c0, c1, c2, c3], axis=-1)


def _cubic_weights_f64(x: np.ndarray) -> np.ndarray:
    """Keys cubic (A = −0.75) weights in double precision for taps at distances 1+x, x, 1−x, 2−x (IPP path)."""
    a = -0.75
    def near(t):  # |t| <= 1
        return ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    def far(t):  # 1 < |t| < 2
        return ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    return np.stack([far(1.0 + x), near(x), near(1.0 - x), far(2.0 - x)], axis=-1)


# A few dozen entries: the pipeline asks for the same sizes again and again (the network sizes, 1024, the
# whole image), but every patch of a photo also has its own (1024 x 3000 float64 = 24 MB): an unbounded or
# 512-entry cache held GBs of them after one 65-patch image.
@functools.lru_cache(maxsize=24)
def resize_matrix(n_in: int, n_out: int, method: Method = "cubic", variant: Variant = "generic",
                  vertical: bool = False) -> np.ndarray:
    """(n_out, n_in) float64 matrix ``R`` with ``resize_1d(v) = R @ v``, exactly as cv2 (SPEC §9.2).

    - Pixel centres: ``src = (d + 0.5)·scale − 0.5`` with ``scale = 1/(n_out/n_in)`` (cv2 stores the inverse
      of ``inv_scale = n_out/n_in``; this can differ from ``n_in/n_out`` in the last bit). No antialiasing on
      downscale.
    - CUBIC: taps ``floor(src) − 1 … floor(src) + 2`` clamped to the edge (replicate border); weights from the
      Keys kernel A = −0.75. ``variant="generic"`` rounds ``src`` to float32 and computes the weights in
      float32 (4th = 1 − sum of the others); ``"ipp"`` keeps both in double (see the module docstring and
      :func:`cv2_variant` for which one cv2 runs).
    - LINEAR: weights (1 − f, f) on ``floor(src)`` and the next pixel; ``src < 0`` → pixel 0 with f = 0,
      ``src ≥ n_in − 1`` → the last pixel (equivalently, ``src`` clamped to [0, n_in − 1]). ``"generic"``
      rounds ``src`` to float32, ``"ipp"`` keeps it in double.
    - ``vertical`` only matters for generic LINEAR: OpenCV's *vertical* pass does not apply the edge rule
      above; it keeps ``(1.f − f, f)`` on rows ``clamp(floor(src))`` and ``clamp(floor(src) + 1)``. Both land
      on the same edge row, but ``(1.f − f) + f`` is not exactly 1 in float32 (~3e-8 off). Pass
      ``vertical=True`` for the row matrix ``Ry``.
    - ``n_in == n_out`` is the identity (cv2 copies; the kernels give exactly weight 1 at f = 0 too).

    Replicated taps are summed into one entry. The result is cached and read-only: copy before editing.
    """
    _check_method(method)
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
    n_in, n_out = int(n_in), int(n_out)
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got n_in={n_in}, n_out={n_out}")
    if n_in == n_out:
        r = np.eye(n_in)
        r.flags.writeable = False
        return r

    scale = 1.0 / (n_out / n_in)  # cv2: scale_x = 1./inv_scale_x with inv_scale_x = (double)dst/src
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5  # double, as in cv2
    rows = np.arange(n_out)
    r = np.zeros((n_out, n_in))

    if variant == "generic":
        fsrc = src.astype(np.float32)  # cv2: fx = (float)((dx+0.5)*scale_x - 0.5)
        base = np.floor(fsrc).astype(np.int64)  # cvFloor
        frac = fsrc - base.astype(np.float32)  # fx -= sx, in float32 (exact)
    else:
        base = np.floor(src).astype(np.int64)
        frac = src - base

    if method == "cubic":
        w = _cubic_weights_f32(frac) if variant == "generic" else _cubic_weights_f64(frac)
        for k in range(4):
            cols = np.clip(base - 1 + k, 0, n_in - 1)  # replicate border
            np.add.at(r, (rows, cols), w[:, k].astype(np.float64))
    elif variant == "generic" and vertical:
        # resizeGeneric_'s row weights: cbuf = {1.f - fy, fy} on rows clip(sy), clip(sy + 1), no edge reset
        f = frac.astype(np.float32)
        np.add.at(r, (rows, np.clip(base, 0, n_in - 1)), (np.float32(1.0) - f).astype(np.float64))
        np.add.at(r, (rows, np.clip(base + 1, 0, n_in - 1)), f.astype(np.float64))
    else:
        # cv2 LINEAR columns: sx < 0 -> (sx, fx) = (0, 0); sx >= n_in - 1 -> (n_in - 1, 0)
        low = base < 0
        high = base >= n_in - 1
        frac = np.where(low | high, 0.0, frac)
        base = np.where(low, 0, np.where(high, n_in - 1, base))
        if variant == "generic":
            f = frac.astype(np.float32)
            w0 = (np.float32(1.0) - f).astype(np.float64)  # cbuf[0] = 1.f - fx, float32
            w1 = f.astype(np.float64)
        else:
            w0 = 1.0 - frac
            w1 = frac
        np.add.at(r, (rows, base), w0)
        np.add.at(r, (rows, np.minimum(base + 1, n_in - 1)), w1)  # w1 == 0 whenever base + 1 is out of range

    r.flags.writeable = False
    return r


@functools.lru_cache(maxsize=24)
def resize_band(n_in: int, n_out: int, method: Method = "cubic", variant: Variant = "generic",
                vertical: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """:func:`resize_matrix` as a band (:func:`hrjax.ops.banded.band_of`): ``(idx (n_out, k) int32,
    w (n_out, k) float64)`` with k = 4 (CUBIC) or 2 (LINEAR), at most ``n_in``. The same weights: replicated
    border taps are the dense matrix's summed entries. Cached and read-only."""
    idx, w = band_of(resize_matrix(n_in, n_out, method, variant, vertical), TAPS[method])
    idx.flags.writeable = False
    w.flags.writeable = False
    return idx, w


def _split_shape(shape: tuple[int, ...], batched: bool) -> tuple[tuple[int, ...], int, int, int | None]:
    """(batch dims, H, W, channels or None) of an (H,W), (H,W,C), (N,H,W) or (N,H,W,C) array."""
    lead = 1 if batched else 0
    nd = len(shape) - lead
    if nd not in (2, 3):
        kind = "(N, H, W) or (N, H, W, C)" if batched else "(H, W) or (H, W, C)"
        raise ValueError(f"expected an image of shape {kind}, got {shape}")
    batch = tuple(shape[:lead])
    h, w = shape[lead], shape[lead + 1]
    c = shape[lead + 2] if nd == 3 else None
    return batch, h, w, c


def _resolve_variant(method, variant, cv_dtype, dtype, hw, channels) -> Variant:
    if variant is not None:
        return variant
    return cv2_variant(method, dtype if cv_dtype is None else cv_dtype, hw, 1 if channels is None else channels)


def _check_size(size) -> tuple[int, int]:
    out_h, out_w = (int(s) for s in size)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive, got {size}")  # cv2 asserts !dsize.empty()
    return out_h, out_w


def resize(img: jax.Array, size: tuple[int, int], method: Method = "cubic", *, batched: bool = False,
           cv_dtype=None, variant: Variant | None = None) -> jax.Array:
    """``cv2.resize(img, (out_w, out_h), interpolation=CUBIC|LINEAR)`` in JAX (SPEC §9.2); jittable.

    ``img`` is (H, W) or (H, W, C), or with ``batched=True`` (N, H, W) or (N, H, W, C) (every image is
    resized independently; the channel axis is never mixed). ``size = (out_h, out_w)`` — note the order is
    (height, width), unlike cv2's ``dsize`` — and must be static under ``jit``.

    The cv2 code path (:func:`cv2_variant`) is chosen from ``cv_dtype`` (the dtype the reference passed to
    cv2; defaults to ``img.dtype``), the source size and the channel count, unless ``variant`` forces one.
    E.g. a reference float64 host resize computed here in float32 should pass ``cv_dtype=np.float64``.

    The weights are cast to ``img.dtype`` and applied as bands (:func:`resize_band`): k gathered taps per
    output pixel and axis, summed in ``img.dtype`` (no matmul, so no TF32 on GPUs either). The axis that
    shrinks the data most goes first. A same-size resize returns ``img`` unchanged (cv2 copies).
    """
    _check_method(method)
    out_h, out_w = _check_size(size)
    img = jnp.asarray(img)
    if not jnp.issubdtype(img.dtype, jnp.floating):
        raise TypeError(f"resize expects a floating image, got {img.dtype}")
    batch, h, w, c = _split_shape(img.shape, batched)
    if (h, w) == (out_h, out_w):
        return img  # cv::resize: dsize == ssize -> exact copy
    var = _resolve_variant(method, variant, cv_dtype, img.dtype, (h, w), c)
    iy, wy = resize_band(h, out_h, method, var, vertical=True)
    ix, wx = resize_band(w, out_w, method, var)
    x = img.reshape((-1, h, w, 1 if c is None else c))  # (B, H, W, C): one code path for all layouts
    y = resize_2d(x, jnp.asarray(iy), jnp.asarray(wy), jnp.asarray(ix), jnp.asarray(wx), axes=(1, 2))
    return y.reshape(batch + (out_h, out_w) + (() if c is None else (c,)))


def resize_np(img: np.ndarray, size: tuple[int, int], method: Method = "cubic", *, batched: bool = False,
              cv_dtype=None, variant: Variant | None = None) -> np.ndarray:
    """Host (numpy) twin of :func:`resize` (SPEC §9.2): same matrices, accumulated in float64.

    Returns ``img.dtype`` like cv2 does (float64 in → float64 out, agreeing with cv2 to ~1e-15; float32 in →
    computed in float64 and rounded once, so within float32 round-off of cv2, which accumulates in float32).
    Shapes, ``size = (out_h, out_w)``, ``cv_dtype`` and ``variant`` as in :func:`resize`. A same-size resize
    returns a copy.
    """
    _check_method(method)
    out_h, out_w = _check_size(size)
    img = np.asarray(img)
    if img.dtype not in (np.float32, np.float64):
        raise TypeError(f"resize_np expects a float32/float64 image, got {img.dtype}")
    batch, h, w, c = _split_shape(img.shape, batched)
    if (h, w) == (out_h, out_w):
        return img.copy()
    var = _resolve_variant(method, variant, cv_dtype, img.dtype, (h, w), c)
    ry = resize_matrix(h, out_h, method, var, vertical=True)
    rx = resize_matrix(w, out_w, method, var)
    x = img.astype(np.float64, copy=False).reshape((-1, h, w, 1 if c is None else c))
    y = np.einsum("oh,bhwc,pw->bopc", ry, x, rx, optimize=True)
    return y.reshape(batch + (out_h, out_w) + (() if c is None else (c,))).astype(img.dtype, copy=False)
