"""Reading images and writing depth maps the way the reference does (SPEC 1.3 step 1, 1.4), atomically."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np

# The image files hrjax reads (OpenCV decodes them all), everywhere a folder is scanned: boost inputs, the
# training and evaluation folders. Compared lower-case.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm")
# ``hrjax boost --max-pixels``: larger inputs fail with a reason (read_image) instead of exhausting memory.
DEFAULT_MAX_PIXELS = 50_000_000


class NonFiniteDepthError(ValueError):
    """A depth map holds NaN or infinite values: writing it would give a black (or garbage) image."""


def check_finite(depth: np.ndarray, what: str = "depth map") -> None:
    d = np.asarray(depth)
    if np.issubdtype(d.dtype, np.floating):
        bad = int(d.size - np.count_nonzero(np.isfinite(d)))
        if bad:
            raise NonFiniteDepthError(f"{what} has {bad} NaN/infinite values of {d.size}; nothing was written")


def _quantize(depth: np.ndarray, top: int, dtype) -> np.ndarray:
    check_finite(depth)  # NaN would fail the range test below and come out as an all-black image
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


# ---------------------------------------------------------------------------------------------------------
# image size from the header, before decoding (a 200 KB PNG can declare a 100000 x 100000 image)


def _png_size(b: bytes):
    # signature, then the IHDR chunk first (PNG spec 5.2/11.2.2): length, "IHDR", width, height (big-endian)
    if len(b) >= 24 and b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR":
        return struct.unpack(">II", b[16:24])
    return None


# JPEG start-of-frame markers (all but DHT C4, JPG C8, DAC CC); the frame header holds the size (T.81 B.2.2)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(b: bytes):
    if b[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(b)
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            i += 2
            continue
        (length,) = struct.unpack(">H", b[i + 2:i + 4])
        if marker in _SOF:
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", b[i + 5:i + 9])
            return (w, h) if h > 0 else None  # height 0: defined later by a DNL marker (not handled)
        if marker in (0xD9, 0xDA) or length < 2:  # end of image / start of scan before any frame
            return None
        i += 2 + length
    return None


def _tiff_size(b: bytes):
    # classic TIFF: byte order, 42, offset of IFD0; ImageWidth (256) and ImageLength (257) are SHORT or LONG
    if b[:4] == b"II*\x00":
        e = "<"
    elif b[:4] == b"MM\x00*":
        e = ">"
    else:
        return None
    (off,) = struct.unpack(e + "I", b[4:8])
    if off + 2 > len(b):
        return None
    (count,) = struct.unpack(e + "H", b[off:off + 2])
    dims = {}
    for k in range(count):
        entry = b[off + 2 + 12 * k: off + 14 + 12 * k]
        if len(entry) < 12:
            return None
        tag, typ, cnt = struct.unpack(e + "HHI", entry[:8])
        if tag in (256, 257) and cnt == 1:
            if typ == 3:
                dims[tag] = struct.unpack(e + "H", entry[8:10])[0]
            elif typ == 4:
                dims[tag] = struct.unpack(e + "I", entry[8:12])[0]
    return (dims[256], dims[257]) if 256 in dims and 257 in dims else None


def _webp_size(b: bytes):
    if len(b) < 30 or b[:4] != b"RIFF" or b[8:12] != b"WEBP":
        return None
    chunk = b[12:16]
    if chunk == b"VP8X":    # extended: 24-bit canvas width-1, height-1 (little-endian)
        return (int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1)
    if chunk == b"VP8L" and b[20] == 0x2F:  # lossless: 14-bit width-1, 14-bit height-1
        bits = int.from_bytes(b[21:25], "little")
        return ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8 " and b[23:26] == b"\x9d\x01\x2a":  # lossy key frame: 14-bit width, height
        w, h = struct.unpack("<HH", b[26:30])
        return (w & 0x3FFF, h & 0x3FFF)
    return None


def _bmp_size(b: bytes):
    if len(b) < 26 or b[:2] != b"BM":
        return None
    (hsize,) = struct.unpack("<I", b[14:18])
    if hsize == 12:  # BITMAPCOREHEADER
        return struct.unpack("<HH", b[18:22])
    w, h = struct.unpack("<ii", b[18:26])
    return (abs(w), abs(h))  # negative height = top-down rows


def _pnm_size(b: bytes):
    # P1-P6 and PFM (PF/Pf): ASCII width and height after the magic, "#" comments allowed (netpbm)
    if len(b) < 3 or b[0:1] != b"P" or b[1:2] not in b"123456Ff":
        return None
    fields, i, n = [], 2, min(len(b), 4096)
    while len(fields) < 2 and i < n:
        c = b[i:i + 1]
        if c == b"#":
            while i < n and b[i:i + 1] not in (b"\n", b"\r"):
                i += 1
        elif c.isspace():
            i += 1
        else:
            j = i
            while j < n and b[j:j + 1].isdigit():
                j += 1
            if j == i:
                return None
            fields.append(int(b[i:j]))
            i = j
    return (fields[0], fields[1]) if len(fields) == 2 else None


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by the header of a PNG, JPEG, TIFF, WebP, BMP or PNM/PFM file, or None for any
    other or an unparseable header. Only reads the first bytes (JPEG: the segments before the frame header)."""
    for parse in (_png_size, _jpeg_size, _tiff_size, _webp_size, _bmp_size, _pnm_size):
        try:
            size = parse(data)
        except (struct.error, IndexError, ValueError):
            size = None
        if size is not None:
            return int(size[0]), int(size[1])
    return None


def _too_large(w: int, h: int, max_pixels: int, path: Path, where: str) -> ImageReadError:
    return ImageReadError(f"image is {w}x{h} = {w * h} pixels ({where}), over the limit of {max_pixels} "
                          f"(raise --max-pixels to process it): {path}")


# The JPEG frame header follows the APPn segments (EXIF, ICC profile: at most 64 KB each); 4 MB is plenty.
HEADER_BYTES = 4 << 20


def read_image(path: Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) RGB float64 in [0, 1], as the reference reads it (SPEC 1.3 step 1).

    8-bit images give exactly the reference's array (``cv2.imread(path)`` -> RGB -> /255), EXIF orientation
    applied. 16-bit images keep their precision (/65535; the reference would truncate them to 8 bits). Gray is
    replicated, alpha dropped (as ``cv2.imread`` does). Float images (e.g. 32-bit TIFF) must lie in [0, 1].
    ``max_pixels`` is checked from the header before decoding for PNG, JPEG, TIFF, WebP, BMP and PNM, and
    after decoding for other formats (where cv2's own limit of 2^30 pixels applies first).
    Raises ImageReadError with the reason for an unreadable, empty, non-image, too large or out-of-range file.
    """
    import cv2

    from hrjax.pipeline.image import to_rgb_float64

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError(f"empty file: {path}")
    data = np.fromfile(path, np.uint8)
    if max_pixels is not None:
        size = header_size(data[:HEADER_BYTES].tobytes())
        if size is not None and size[0] * size[1] > max_pixels:
            raise _too_large(size[0], size[1], max_pixels, path, "from its header")
    # Any depth (16-bit and float kept) and any colour (gray stays gray; the decoder drops alpha, as
    # cv2.imread does). Unlike IMREAD_UNCHANGED, these flags apply the EXIF Orientation tag like the reference's
    # cv2.imread(path) (SPEC 1.3 step 1; checked with cv2 5.0 in tests/test_io_files.py).
    try:
        img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as e:  # e.g. over cv2's own CV_IO_MAX_IMAGE_PIXELS (2^30) in a header hrjax does not parse
        raise ImageReadError(f"not a readable image ({str(e).strip().splitlines()[-1]}): {path}") from None
    if img is None:
        raise ImageReadError(f"not a readable image (corrupt, truncated or unsupported format): {path}")
    if max_pixels is not None and img.shape[0] * img.shape[1] > max_pixels:
        raise _too_large(img.shape[1], img.shape[0], max_pixels, path, "decoded")
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]  # BGR -> RGB
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, [2, 1, 0, 3]]
    if np.issubdtype(img.dtype, np.floating):
        finite = np.isfinite(img)
        if not finite.all():
            raise ImageReadError(f"float image has {int((~finite).sum())} NaN/infinite values: {path}")
        lo, hi = float(img.min()), float(img.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageReadError(f"float image values lie in [{lo:.6g}, {hi:.6g}], outside [0, 1] (hrjax does "
                                 f"not tone-map HDR images; convert it to 8/16-bit or scale it to [0, 1]): {path}")
    try:
        return to_rgb_float64(img)
    except ValueError as e:
        raise ImageReadError(f"{e}: {path}") from None


def current_umask() -> int:
    """The process's umask, read without changing it (Linux >= 4.7 shows it in /proc/self/status; elsewhere
    the set-and-restore dance, which briefly changes it for other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. a platform that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write via a temporary file in the same folder + rename: an interruption leaves no partial output.

    The file gets the permissions of any file the user creates (0666 minus the umask; mkstemp alone makes
    0600). ``durable``: fsync the file before the rename and the folder after it, so that after a power loss
    the name holds either the old or the complete new content, never an empty or truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short prefix: the temporary name must fit the 255-byte name limit whatever the output name
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:32]}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
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
    check_finite(depth)
    buf = io.BytesIO()
    np.save(buf, np.asarray(depth, np.float32))
    atomic_write_bytes(path, buf.getvalue())
