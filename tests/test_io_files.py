"""Reading real image files like the reference (SPEC 1.3 step 1: ``cv2.imread(path)`` -> RGB -> /255) and
refusing oversized images from their header, before decoding. Files are written in the test (cv2 writers plus
a hand-made EXIF segment); no jax, all fast."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from hrjax import io

ROOT = Path(__file__).resolve().parents[1]


def _picture(h, w, channels=3, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    y, x = np.mgrid[0:h, 0:w]
    base = (x * 7 + y * 3) % (top + 1)
    a = np.stack([(base + 97 * c) % (top + 1) for c in range(channels)], -1) if channels > 1 else base
    return (a + rng.integers(0, max(top // 20, 1), a.shape)).clip(0, top).astype(dtype)


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment holding IFD0 with one entry, Orientation (0x0112, SHORT), after SOI."""
    tiff = (b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
            + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0))
    app1 = b"Exif\x00\x00" + tiff
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def _reference(path: Path) -> np.ndarray:
    """The reference's reader (SPEC 1.3 step 1)."""
    bgr = cv2.imread(str(path))
    assert bgr is not None
    return bgr[:, :, ::-1].astype(np.float64) / 255.0


def test_jpeg_exif_orientation_1_to_8_reads_like_cv2_imread(tmp_path):
    img = _picture(40, 80)  # landscape: orientations 5-8 turn it to portrait
    jpeg = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    gray = cv2.imencode(".jpg", img[:, :, 0])[1].tobytes()
    for o in range(1, 9):
        for kind, data in (("color", jpeg), ("gray", gray)):
            p = tmp_path / f"{kind}_{o}.jpg"
            p.write_bytes(_with_exif_orientation(data, o))
            ref = _reference(p)
            got = io.read_image(p)
            assert got.shape == ref.shape == ((80, 40, 3) if o >= 5 else (40, 80, 3)), (kind, o)
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, ref, err_msg=f"{kind} orientation {o}")
    # the tag really matters: orientation 3 (180 degrees) is not the unrotated image
    p = tmp_path / "color_3.jpg"
    assert not np.array_equal(io.read_image(p), _reference(tmp_path / "color_1.jpg"))


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp", ".webp", ".ppm"])
def test_8bit_color_gray_alpha_read_like_cv2_imread(tmp_path, ext):
    cases = {"rgb": _picture(30, 50, 3), "gray": _picture(30, 50, 1, seed=1)}
    if ext in (".png", ".tif", ".webp"):
        cases["rgba"] = _picture(30, 50, 4, seed=2)  # alpha: dropped like cv2.imread(path)
    for name, a in cases.items():
        p = tmp_path / f"{name}{ext}"
        params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []  # 101 = lossless
        if ext == ".ppm" and a.ndim == 2:
            p = p.with_suffix(".pgm")
        assert cv2.imwrite(str(p), a, params)
        got = io.read_image(p)
        np.testing.assert_array_equal(got, _reference(p), err_msg=f"{name}{ext}")
        assert got.shape == (30, 50, 3)


def test_16bit_png_and_tiff_keep_their_precision(tmp_path):
    """16-bit inputs are read at 16 bits (/65535), a documented deviation: cv2.imread would keep the high byte."""
    for ext in (".png", ".tif"):
        rgb = _picture(20, 24, 3, dtype=np.uint16)
        gray = _picture(20, 24, 1, seed=3, dtype=np.uint16)
        rgba = _picture(20, 24, 4, seed=4, dtype=np.uint16)
        for name, a in (("rgb", rgb), ("gray", gray), ("rgba", rgba)):
            p = tmp_path / f"{name}16{ext}"
            assert cv2.imwrite(str(p), a)
            got = io.read_image(p)
            bgr = a if a.ndim == 2 else a[:, :, :3]
            want = (np.repeat(bgr[:, :, None], 3, 2) if bgr.ndim == 2 else bgr[:, :, ::-1]) / 65535.0
            np.testing.assert_array_equal(got, want, err_msg=f"{name}{ext}")
            # the 8-bit view of it is what the reference reads
            assert np.abs(np.floor(got * 65535 / 257) - _reference(p) * 255).max() <= 1


def test_float_tiff_range_checked(tmp_path):
    rng = np.random.default_rng(0)
    ok = rng.random((10, 12, 3)).astype(np.float32)
    assert cv2.imwrite(str(tmp_path / "ok.tif"), ok)
    np.testing.assert_array_equal(io.read_image(tmp_path / "ok.tif"), ok[:, :, ::-1].astype(np.float64))
    hdr = ok * 40.0
    assert cv2.imwrite(str(tmp_path / "hdr.tif"), hdr)
    with pytest.raises(io.ImageReadError, match=r"outside \[0, 1\]"):
        io.read_image(tmp_path / "hdr.tif")
    nan = ok.copy()
    nan[3, 4, 1] = np.nan
    assert cv2.imwrite(str(tmp_path / "nan.tif"), nan)
    with pytest.raises(io.ImageReadError, match="1 NaN/infinite"):
        io.read_image(tmp_path / "nan.tif")


# ---------------------------------------------------------------------------------------------------------
# header sizes


def test_header_size_agrees_with_the_decoder(tmp_path):
    a = _picture(37, 53, 3)
    files = {
        "a.png": [], "a16.png": None, "a.jpg": [], "p.jpg": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
        "a.tif": [], "a.bmp": [], "lossy.webp": [cv2.IMWRITE_WEBP_QUALITY, 80],
        "lossless.webp": [cv2.IMWRITE_WEBP_QUALITY, 101], "a.ppm": [], "g.pgm": None,
    }
    for name, params in files.items():
        p = tmp_path / name
        img = a.astype(np.uint16) * 257 if name == "a16.png" else (a[:, :, 0] if name == "g.pgm" else a)
        assert cv2.imwrite(str(p), img, params or [])
        assert io.header_size(p.read_bytes()) == (53, 37), name
    # the JPEG frame header after a large APP segment (EXIF) and an orientation tag: the stored size
    jpeg = _with_exif_orientation(cv2.imencode(".jpg", a)[1].tobytes(), 6)
    assert io.header_size(jpeg) == (53, 37)
    # big-endian TIFF with LONG dimensions, BMP core header, top-down BMP, VP8X WebP, PNM with a comment
    tiff = (b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 2) + struct.pack(">HHII", 256, 4, 1, 70000)
            + struct.pack(">HHII", 257, 4, 1, 3) + b"\0\0\0\0")
    assert io.header_size(tiff) == (70000, 3)
    assert io.header_size(b"BM" + b"\0" * 12 + struct.pack("<IHH", 12, 640, 480) + b"\0" * 8) == (640, 480)
    assert io.header_size(b"BM" + b"\0" * 12 + struct.pack("<Iii", 40, 640, -480) + b"\0" * 8) == (640, 480)
    vp8x = b"RIFF\0\0\0\0WEBPVP8X" + struct.pack("<I", 10) + b"\x10\0\0\0" + (99999).to_bytes(3, "little") \
        + (4999).to_bytes(3, "little")
    assert io.header_size(vp8x) == (100000, 5000)
    assert io.header_size(b"P6\n# made by hand\n 1234 567\n255\n") == (1234, 567)
    # not an image, truncated headers: unknown (the decoder then decides)
    for junk in (b"", b"hello world, not an image", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00", b"II*\x00",
                 b"RIFF\0\0\0\0WEBP", b"BM"):
        assert io.header_size(junk) is None, junk


def _png_declaring(w: int, h: int, rows: int | None = None, color_type: int = 0) -> bytes:
    """A PNG whose IHDR declares w x h (8-bit, gray by default); ``rows`` rows of zero pixels in the IDAT
    (streamed through zlib, so a large image costs little memory to write)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + w * (3 if color_type == 2 else 1))
    idat = b"".join(comp.compress(row) for _ in range(rows or 0)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_declared_100000x100000_png_is_refused_from_the_header(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_declaring(100_000, 100_000))
    assert p.stat().st_size < 200
    with pytest.raises(io.ImageReadError) as e:
        io.read_image(p, max_pixels=50_000_000)
    msg = str(e.value)
    assert "100000x100000" in msg and "from its header" in msg and "--max-pixels" in msg and "bomb.png" in msg


_RSS_PROBE = r"""
import sys
from pathlib import Path
from hrjax import io

def hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

path, max_pixels = Path(sys.argv[1]), int(sys.argv[2])
import cv2, numpy  # imports out of the measurement
from hrjax.pipeline import image
before = hwm_kb()
try:
    io.read_image(path, max_pixels=max_pixels)
    print("read", hwm_kb() - before)
except io.ImageReadError as e:
    print("refused", hwm_kb() - before, e)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for the peak RSS")
def test_oversized_png_refused_without_decoding_peak_rss(tmp_path):
    """A real, decodable 12000x10000 gray PNG (~120 KB on disk, 120 MB decoded, 360 MB as BGR): refused with the
    peak RSS of the reading process up by far less than one decoded copy (a fresh process, so its peak is
    that of the read alone)."""
    p = tmp_path / "big.png"
    p.write_bytes(_png_declaring(12_000, 10_000, rows=10_000))
    assert p.stat().st_size < 1_000_000
    r = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(p), "50000000"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    what, delta_kb, *msg = r.stdout.split(maxsplit=2)
    assert what == "refused" and "12000x10000" in msg[0] and "from its header" in msg[0], r.stdout
    assert int(delta_kb) < 30_000, f"peak RSS rose by {int(delta_kb) / 1024:.0f} MB while refusing"


def test_unparsed_header_falls_back_to_the_decoder_and_its_errors(tmp_path):
    """A declared size hrjax does not check (no limit given) reaches cv2, whose own limit raises: that is an
    ImageReadError with a reason, not a cv2.error escaping the per-image isolation."""
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_declaring(100_000, 100_000))
    with pytest.raises(io.ImageReadError, match="not a readable image"):
        io.read_image(p, max_pixels=None)
    t = tmp_path / "trunc.png"
    t.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(io.ImageReadError, match="not a readable image"):
        io.read_image(t, max_pixels=10)


def _png(w, h, color_type, raw_rows: bytes, extra: bytes = b"") -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
            + extra + chunk(b"IDAT", zlib.compress(raw_rows)) + chunk(b"IEND", b""))


def test_gray_alpha_and_palette_transparency_pngs_read_like_cv2_imread(tmp_path):
    """PNG colour types cv2 cannot write: gray + alpha (4) and palette with tRNS (3)."""
    rng = np.random.default_rng(0)
    h, w = 5, 7
    ga = rng.integers(0, 256, (h, w, 2), np.uint8)
    (tmp_path / "ga.png").write_bytes(_png(w, h, 4, b"".join(b"\0" + ga[y].tobytes() for y in range(h))))
    pal = rng.integers(0, 256, (4, 3), np.uint8)
    idx = rng.integers(0, 4, (h, w), np.uint8)
    plte = struct.pack(">I", 12) + b"PLTE" + pal.tobytes() + struct.pack(">I", zlib.crc32(b"PLTE" + pal.tobytes()))
    trns = struct.pack(">I", 4) + b"tRNS" + bytes([0, 128, 255, 255]) \
        + struct.pack(">I", zlib.crc32(b"tRNS" + bytes([0, 128, 255, 255])))
    (tmp_path / "pal.png").write_bytes(_png(w, h, 3, b"".join(b"\0" + idx[y].tobytes() for y in range(h)),
                                            plte + trns))
    for name, want_rgb in (("ga.png", np.repeat(ga[:, :, :1], 3, 2)), ("pal.png", pal[idx])):
        got = io.read_image(tmp_path / name)
        np.testing.assert_array_equal(got, _reference(tmp_path / name), err_msg=name)
        np.testing.assert_array_equal(got, want_rgb / 255.0, err_msg=name)  # alpha dropped, not composited
