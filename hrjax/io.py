"""Reading images and writing depth maps the way the reference does (SPEC 1.3 step 1, 1.4), atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def _quantize(depth: np.ndarray, top: int, dtype) -> np.ndarray:
    d = np.asarray(depth, np.float32)
    lo, hi = d.min(), d.max()
    if not float(hi) - float(lo) > 2.22e-16:
        return np.zeros(d.shape, dtype)
    return (np.float32(top) * (d - lo) / (hi - lo)).astype(dtype)


def quantize_16bit(depth: np.ndarray) -> np.ndarray:
    """The reference's 16-bit quantisation (SPEC 1.4): ``uint16(65535 * (d - min) / (max - min))`` computed in
    float32 and **truncated**. A constant map (which crashes the reference) becomes all zeros."""
    return _quantize(depth, 65535, np.uint16)


def quantize_8bit(depth: np.ndarray) -> np.ndarray:
    """The 8-bit version (``write_depth`` with bits=1, used for the colour preview)."""
    return _quantize(depth, 255, np.uint8)


# --colormap choices: OpenCV's perceptually uniform maps, and turbo/jet for those used to them
COLORMAPS = ("inferno", "magma", "plasma", "viridis", "cividis", "turbo", "jet")


def colorize(depth: np.ndarray, colormap: str = "inferno") -> np.ndarray:
    """8-bit colour preview, BGR; INFERNO is what the reference writes with ``--colorize_results``."""
    import cv2
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colour map {colormap!r}; choose from {', '.join(COLORMAPS)}")
    return cv2.applyColorMap(quantize_8bit(depth), getattr(cv2, f"COLORMAP_{colormap.upper()}"))


class ImageReadError(ValueError):
    pass


def read_image(path: Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) RGB float64 in [0, 1].

    8-bit images read exactly like the reference (``cv2.imread`` -> RGB -> /255). 16-bit images keep their
    precision (/65535; the reference would truncate them to 8 bits). Gray is replicated, alpha dropped.
    Raises ImageReadError with the reason for an unreadable, empty, non-image or too large file.
    """
    import cv2

    from hrjax.pipeline.image import to_rgb_float64

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError(f"empty file: {path}")
    data = np.fromfile(path, np.uint8)
    # IMREAD_UNCHANGED keeps 16-bit and alpha; IMREAD_ANYCOLOR would drop alpha. Header first for the size.
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f"not a readable image (corrupt, truncated or unsupported format): {path}")
    if max_pixels is not None and img.shape[0] * img.shape[1] > max_pixels:
        raise ImageReadError(f"image is {img.shape[1]}x{img.shape[0]} = {img.shape[0] * img.shape[1]} pixels, "
                             f"over the limit of {max_pixels} (raise --max-pixels)")
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]  # BGR -> RGB
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, [2, 1, 0, 3]]
    return to_rgb_float64(img)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder + rename: an interruption leaves no partial output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encode_png(array: np.ndarray) -> bytes:
    import cv2
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def write_png16(path: Path, depth: np.ndarray) -> None:
    atomic_write_bytes(path, encode_png(quantize_16bit(depth)))


def write_color(path: Path, depth: np.ndarray, colormap: str = "inferno") -> None:
    atomic_write_bytes(path, encode_png(colorize(depth, colormap)))


def write_png8(path: Path, depth: np.ndarray) -> None:
    """8-bit grayscale PNG, min-max scaled and truncated like the 16-bit one (bright = near)."""
    atomic_write_bytes(path, encode_png(quantize_8bit(depth)))


def write_pfm(path: Path, depth: np.ndarray) -> None:
    """PFM the way MiDaS's ``write_pfm`` writes its depth: ``Pf``, scale -1 (little endian), rows bottom to
    top, the float32 map itself (not rescaled, like the ``.npy``)."""
    from hrjax.eval.pfm import encode_pfm
    atomic_write_bytes(path, encode_pfm(np.asarray(depth, np.float32), little_endian=True))


def write_npy(path: Path, depth: np.ndarray) -> None:
    """The float32 map itself: the merged estimate the PNGs quantise, not rescaled (see README "What the
    output means": nominally [0, 1], in practice a little outside it, e.g. -0.018..0.976)."""
    import io
    buf = io.BytesIO()
    np.save(buf, np.asarray(depth, np.float32))
    atomic_write_bytes(path, buf.getvalue())
