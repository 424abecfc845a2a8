"""Generation of the merge-net training set (SPEC-TRAINING 1), with any hrjax base model in place of MiDaS v2.

For a folder of RGB images, into ``out``:

1. ``whole_low_est/<scene>.png`` and ``whole_high_est/<scene>.png``: whole-image single estimates at
   ``low_res`` (384) and ``high_res`` (672), each resized back to the image size and written as 16-bit PNG
   ``uint16(65535*(d-min)/(max-min))`` (truncating). The single estimate is hrjax's own (SPEC 3.2:
   keep-aspect x32 resize, network, CUBIC back, min-max), which is what the reference's dataset script does
   up to its torch-bicubic resize back (same kernel as cv2's CUBIC, A = -0.75).
2. crops at every scale ``(blsize, stride)``: column centres ``k = blsize, blsize+stride, ... <= W-blsize``
   (outer loop, counter1), row centres likewise (inner loop, counter2), both counters starting at the scale's
   offset (0, 100, 200, ...); the crop ``[j-b, j+b) x [k-b, k+b)`` of the RGB (as uint16, 8-bit x 257) and of
   both whole estimates is resized to ``crop_size`` (672) with MATLAB's bicubic ``imresize``
   (:mod:`hrjax.train.matlab_resize`) and written to ``<subset>/{rgb,gtfake,outer}/<scene>_&<c1>_<c2>&.png``:
   **gtfake = the high-res estimate** (the ground-truth proxy), **outer = the low-res estimate**.
3. ``<subset>/inner/``: the single estimate at ``high_res`` of each RGB crop alone, min-maxed per crop. As in
   the reference the 16-bit crop is read back as 8-bit (``cv2.imread``'s default, the high byte).

The last ``test_last`` images (in name order) go to ``test/``, the others to ``train/`` (Middlebury: 2;
iBims-1: 0). ``gt_dir``, when given, replaces the high-res estimate as the gtfake source by a real ground
truth map of the same size and name stem (relative inverse depth: larger = nearer; non-finite pixels get the
smallest finite value); the reference never reads ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from hrjax.io import IMAGE_EXTENSIONS
from hrjax.train.matlab_resize import imresize

PRESETS: dict[str, tuple[tuple[int, int], ...]] = {
    # (blsize, stride); crop side = 2*blsize; counter offsets 0, 100, 200 (create_crops.m)
    "middlebury": ((900, 100), (700, 150), (500, 250)),
    "ibims1": ((240, 70), (180, 80), (140, 50)),
}

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DatasetConfig:
    scales: tuple[tuple[int, int], ...] = PRESETS["middlebury"]
    low_res: int = 384
    high_res: int = 672
    crop_size: int = 672
    test_last: int = 0
    max_batch: int = 4

    def __post_init__(self):
        if not self.scales or any(b < 1 or s < 1 for b, s in self.scales):
            raise ValueError(f"scales must be (blsize, stride) pairs of positive ints, got {self.scales}")
        if self.low_res % 32 or self.high_res % 32:
            raise ValueError("low_res and high_res must be multiples of 32")
        if self.test_last < 0:
            raise ValueError("test_last must be >= 0")


def parse_scales(text: str) -> tuple[tuple[int, int], ...]:
    """A preset name (``middlebury``, ``ibims1``) or ``"blsize:stride,blsize:stride,..."``."""
    if text in PRESETS:
        return PRESETS[text]
    try:
        out = tuple(tuple(int(v) for v in part.split(":")) for part in text.split(","))
    except ValueError:
        out = ()
    if not out or any(len(p) != 2 for p in out):
        raise ValueError(f"scales must be a preset ({', '.join(PRESETS)}) or 'blsize:stride,...', got {text!r}")
    return out  # type: ignore[return-value]


def crop_grid(h: int, w: int, blsize: int, stride: int, offset: int) -> list[tuple[int, int, int, int]]:
    """(counter1, counter2, row0, col0) of every crop of one scale, in the reference's order."""
    out = []
    for c1, k in enumerate(range(blsize, w - blsize + 1, stride)):
        for c2, j in enumerate(range(blsize, h - blsize + 1, stride)):
            out.append((offset + c1, offset + c2, j - blsize, k - blsize))
    return out


def im2uint16(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint16:
        return a
    if a.dtype == np.uint8:
        return a.astype(np.uint16) * np.uint16(257)
    raise ValueError(f"expected an 8- or 16-bit image, got {a.dtype}")


def _read_rgb_uint(path: Path) -> np.ndarray:
    import cv2

    a = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise ValueError(f"cannot read image {path}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, [2, 1, 0]]
    else:
        a = a[:, :, ::-1]
    return np.ascontiguousarray(a)


def _write_png(path: Path, a: np.ndarray) -> None:
    import cv2

    from hrjax.io import atomic_write_bytes

    if a.ndim == 3:
        a = a[:, :, ::-1]  # RGB -> cv2's BGR, so the file holds RGB
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a))
    if not ok:
        raise RuntimeError(f"cannot encode {path}")
    atomic_write_bytes(path, buf.tobytes())


def _read_gt(gt_dir: Path, stem: str, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    from hrjax.io import quantize_16bit

    cands = sorted(p for p in Path(gt_dir).glob(stem + ".*") if p.is_file())
    if not cands:
        raise FileNotFoundError(f"no ground truth for {stem} in {gt_dir}")
    p = cands[0]
    a = np.load(p) if p.suffix == ".npy" else cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise ValueError(f"cannot read ground truth {p}")
    a = np.asarray(a, np.float64)
    if a.ndim == 3:
        a = a[:, :, 0]
    if a.shape != hw:
        raise ValueError(f"ground truth {p} is {a.shape[1]}x{a.shape[0]}, the image is {hw[1]}x{hw[0]}")
    finite = np.isfinite(a)
    if not finite.any():
        raise ValueError(f"ground truth {p} has no finite value")
    a = np.where(finite, a, a[finite].min())
    return quantize_16bit(a)


def _estimates(base: str, graphdef, state, images: np.ndarray, msize: int, cfg: DatasetConfig) -> list[np.ndarray]:
    """Single estimates (at the image size; min-maxed for MiDaS) of each (H, W, 3) float image in ``images``."""
    from hrjax.bases import get_base
    from hrjax.pipeline.batching import Batcher
    from hrjax.pipeline.config import BoostConfig
    from hrjax.pipeline.estimates import image_estimates

    return image_estimates(get_base(base), graphdef, state, images, msize, batcher=Batcher(cfg.max_batch),
                           max_net_input=BoostConfig().max_net_input)


def make_merge_dataset(images_dir: Path, out: Path, graphdef, state, cfg: DatasetConfig = DatasetConfig(), *,
                       gt_dir: Path | None = None, progress: Progress | None = None,
                       base: str = "midas_v21") -> dict[str, int]:
    """Build the dataset from every image in ``images_dir`` (:data:`hrjax.io.IMAGE_EXTENSIONS`) with the base network (graphdef, state),
    the base named ``base`` (:data:`hrjax.bases.BASES`).

    Returns the number of crops written per subset.
    """
    import cv2

    from hrjax.io import quantize_16bit, read_image

    report = progress or (lambda *_: None)
    out = Path(out)
    files = sorted(p for p in Path(images_dir).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images ({' '.join(IMAGE_EXTENSIONS)}) in {images_dir}")
    n_test = min(cfg.test_last, len(files))
    counts = {"train": 0, "test": 0}
    for i, path in enumerate(files):
        scene = path.stem
        subset = "test" if i >= len(files) - n_test else "train"
        report("whole-image estimates", i, len(files))
        img = read_image(path)
        h, w = img.shape[:2]
        low = quantize_16bit(_estimates(base, graphdef, state, img[None], cfg.low_res, cfg)[0])
        high = quantize_16bit(_estimates(base, graphdef, state, img[None], cfg.high_res, cfg)[0])
        _write_png(out / "whole_low_est" / f"{scene}.png", low)
        _write_png(out / "whole_high_est" / f"{scene}.png", high)
        target = _read_gt(Path(gt_dir), scene, (h, w)) if gt_dir is not None else high
        rgb16 = im2uint16(_read_rgb_uint(path))

        names, rgb_crops = [], []
        for s_idx, (b, stride) in enumerate(cfg.scales):
            for c1, c2, y, x in crop_grid(h, w, b, stride, 100 * s_idx):
                name = f"{scene}_&{c1}_{c2}&.png"
                sl = np.s_[y:y + 2 * b, x:x + 2 * b]
                size = (cfg.crop_size, cfg.crop_size)
                rgb_c = imresize(rgb16[sl], size)
                _write_png(out / subset / "rgb" / name, rgb_c)
                _write_png(out / subset / "gtfake" / name, imresize(target[sl], size))
                _write_png(out / subset / "outer" / name, imresize(low[sl], size))
                names.append(name)
                rgb_crops.append(rgb_c)
        report("whole-image estimates", i + 1, len(files))
        # Patch ("inner") estimates: the reference's run.py reads each 16-bit RGB crop with cv2.imread
        # (8-bit, BGR) and runs the network at high_res on it.
        for s in range(0, len(names), cfg.max_batch):
            report(f"crop estimates ({scene})", s, len(names))
            batch = []
            for name in names[s:s + cfg.max_batch]:
                bgr8 = cv2.imread(str(out / subset / "rgb" / name))
                batch.append(bgr8[:, :, ::-1].astype(np.float64) / 255.0)
            for name, est in zip(names[s:s + cfg.max_batch], _estimates(base, graphdef, state, np.stack(batch), cfg.high_res, cfg)):
                _write_png(out / subset / "inner" / name, quantize_16bit(est))
        report(f"crop estimates ({scene})", len(names), len(names))
        counts[subset] += len(names)
    return counts
