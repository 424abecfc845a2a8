"""PFM (Portable Float Map) reading and writing, as used by Middlebury 2014 (``disp0.pfm``).

Layout: a text header of three whitespace-separated fields, then raw float32 samples.

  1. ``Pf`` (one channel) or ``PF`` (three channels, interleaved RGB);
  2. ``<width> <height>``;
  3. a scale whose **sign is the byte order**: negative = little endian, positive = big endian (its magnitude
     is informational and ignored here);

followed by a single whitespace byte (normally ``\\n``) and ``width * height * channels`` float32 values,
**rows bottom to top**. Middlebury marks unknown disparities with ``inf``; this module returns them as they
are (the dataset readers turn them into 0 = invalid).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class PFMError(ValueError):
    pass


def _next_token(data: bytes, pos: int) -> tuple[str, int]:
    n = len(data)
    while pos < n and data[pos:pos + 1].isspace():
        pos += 1
    start = pos
    while pos < n and not data[pos:pos + 1].isspace():
        pos += 1
    if start == pos:
        raise PFMError("truncated PFM header")
    return data[start:pos].decode("ascii", errors="replace"), pos


def decode_pfm(data: bytes) -> np.ndarray:
    """Decode PFM bytes into a top-to-bottom float32 array: (H, W) for ``Pf``, (H, W, 3) for ``PF``."""
    magic, pos = _next_token(data, 0)
    if magic not in ("Pf", "PF"):
        raise PFMError(f"not a PFM file (magic {magic!r}, expected 'Pf' or 'PF')")
    channels = 1 if magic == "Pf" else 3
    try:
        w_tok, pos = _next_token(data, pos)
        h_tok, pos = _next_token(data, pos)
        s_tok, pos = _next_token(data, pos)
        width, height, scale = int(w_tok), int(h_tok), float(s_tok)
    except ValueError as e:
        raise PFMError(f"bad PFM header: {e}") from None
    if width <= 0 or height <= 0:
        raise PFMError(f"bad PFM size {width}x{height}")
    if scale == 0 or not np.isfinite(scale):
        raise PFMError(f"bad PFM scale {s_tok!r} (its sign gives the byte order; 0 is not allowed)")
    pos += 1  # exactly one whitespace byte ends the header
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    count = width * height * channels
    if len(data) - pos < count * 4:
        raise PFMError(f"truncated PFM data: {len(data) - pos} bytes for {count} float32 values")
    arr = np.frombuffer(data, dtype, count, pos).astype(np.float32)
    shape = (height, width) if channels == 1 else (height, width, 3)
    return np.ascontiguousarray(arr.reshape(shape)[::-1])


def read_pfm(path: Path) -> np.ndarray:
    """Read a PFM file (see :func:`decode_pfm`)."""
    path = Path(path)
    try:
        return decode_pfm(path.read_bytes())
    except PFMError as e:
        raise PFMError(f"{path}: {e}") from None


def encode_pfm(array: np.ndarray, *, little_endian: bool = True) -> bytes:
    """Encode an (H, W) or (H, W, 3) float array as PFM (scale -1 or 1, rows written bottom to top)."""
    a = np.asarray(array, np.float32)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        magic = b"Pf"
    elif a.ndim == 3 and a.shape[2] == 3:
        magic = b"PF"
    else:
        raise ValueError(f"PFM holds (H, W) or (H, W, 3) arrays, got shape {a.shape}")
    h, w = a.shape[:2]
    dtype = "<f4" if little_endian else ">f4"
    header = b"%s\n%d %d\n%s\n" % (magic, w, h, b"-1.0" if little_endian else b"1.0")
    return header + np.ascontiguousarray(a[::-1], dtype).tobytes()


def write_pfm(path: Path, array: np.ndarray, *, little_endian: bool = True) -> None:
    from hrjax.io import atomic_write_bytes
    atomic_write_bytes(Path(path), encode_pfm(array, little_endian=little_endian))
