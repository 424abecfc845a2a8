"""Dataset readers for the evaluation: GT maps, their RGB images and the estimates to score.

Every GT map is returned as float64 in **im2double units** with 0 = no ground truth, which is what the
reference's ``im2double(imread(png))`` gives and what :mod:`hrjax.eval.metrics` expects:

* 16-bit PNG -> value / 65535, 8-bit -> value / 255 (MATLAB ``im2double``);
* float maps (PFM, ``.npy``) -> value / max(valid values), with non-finite and non-positive values -> 0.
  This is the 16-bit PNG the reference evaluated, before quantisation; for a disparity GT it matters through
  ``mgd = min(gd)`` (the estimate is mapped onto [mgd, 1]), which becomes min/max of the GT disparity, the
  scale-free choice. For a depth GT every metric is scale-invariant.

Layouts:

``middlebury2014`` (the public "MiddEval / 2014 stereo datasets with ground truth" scenes)
    ``ROOT/<scene>/disp0.pfm`` (the GT disparity: PFM, inf = unknown), ``im0.png`` (the left image, the one
    ``--run`` boosts) and ``calib.txt``; ``ROOT`` may hold the scene folders at any depth, or be a scene
    folder itself. The sample name is the scene folder's name (e.g. ``Adirondack-perfect``). Disparity GT,
    superpixel scale 0.2. The disparity is used as is (no ``doffs`` added), like the reference.

``ibims1`` (the ``ibims1_core_raw`` release)
    ``ROOT/depth/<name>.png``: 16-bit depth, metres = value * 50 / 65535 (the scale does not matter here);
    ``ROOT/mask_invalid/<name>.png`` and ``ROOT/mask_transp/<name>.png``: 0 marks an invalid or a transparent
    pixel (non-zero = usable); ``ROOT/rgb/<name>.png``: the image; ``ROOT/imagelist.txt`` (optional): the
    names, one per line, else every ``depth/*.png``. Masked pixels get GT 0 (turn off with
    ``use_masks=False`` to evaluate the raw depth PNG as the reference's loop would). Depth GT, scale 1.

``generic``
    ``GT_DIR/<stem>.png|.pfm|.npy`` (top level, sorted by name), of a chosen GT type (disparity by default);
    the estimate of ``<stem>`` is ``PRED_DIR/<stem>.png`` (else ``<stem>.npy``), the image for ``--run`` is
    ``IMAGES_DIR/<stem>.png|.jpg|.jpeg|.tif|.tiff``. Several GT files with one stem (e.g. a folder written by
    ``hrjax boost --save png16,npy``) are resolved by ``gt_format``: ``auto`` takes the first of ``.pfm``,
    ``.npy``, ``.png`` (the float maps before the 16-bit PNG's quantisation), or name one format. hrjax's
    previews beside a map (``<stem>_color.png``, ``<stem>_8bit.png``) are not GT maps of their own.

Estimates (every layout): ``PRED_DIR/<name>.png`` (16-bit -> / 65535, 8-bit -> / 255, what hrjax writes),
or ``PRED_DIR/<name>.npy`` (float, used as is: disparity-like, larger = nearer; any range, the metrics rescale it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrjax.eval.pfm import read_pfm
from hrjax.io import IMAGE_EXTENSIONS

DATASETS = ("middlebury2014", "ibims1", "generic")
SUPERPIXEL_SCALE = {"middlebury2014": 0.2, "ibims1": 1.0, "generic": 1.0}
GT_SUFFIXES = (".png", ".pfm", ".npy")
GT_FORMATS = ("auto", "pfm", "npy", "png")
GT_PREFERENCE = (".pfm", ".npy", ".png")  # ``auto``: float maps first, the quantised PNG last
PREVIEW_SUFFIXES = ("_color", "_8bit")    # hrjax boost's previews beside <stem>.png
PRED_SUFFIXES = (".png", ".npy")


class DatasetError(ValueError):
    pass


def _imread_unchanged(path: Path) -> np.ndarray:
    import cv2
    data = np.fromfile(path, np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DatasetError(f"not a readable image: {path}")
    return img


def _single_channel(img: np.ndarray, path: Path) -> np.ndarray:
    if img.ndim == 3:
        if img.shape[2] == 1 or all(np.array_equal(img[:, :, 0], img[:, :, c]) for c in range(1, min(3, img.shape[2]))):
            return img[:, :, 0]
        raise DatasetError(f"expected a single-channel map, got {img.shape[2]} different channels: {path}")
    return img


def im2double(img: np.ndarray) -> np.ndarray:
    """MATLAB ``im2double`` for unsigned integer images; floats pass through."""
    if img.dtype == np.uint16:
        return img.astype(np.float64) / 65535.0
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float64)
    raise DatasetError(f"unsupported image dtype {img.dtype}")


def float_gt(values: np.ndarray) -> np.ndarray:
    """A float GT map in im2double units: non-finite or non-positive -> 0, the rest divided by its max."""
    g = np.array(values, np.float64)
    g[~np.isfinite(g) | (g <= 0)] = 0.0
    m = g.max() if g.size else 0.0
    return g / m if m > 0 else g


def read_gt(path: Path) -> np.ndarray:
    """A GT map (PNG / PFM / NPY) as float64 in im2double units, 0 = invalid (see the module docstring)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pfm":
        return float_gt(_single_channel(read_pfm(path), path))
    if suffix == ".npy":
        a = np.load(path, allow_pickle=False)
        return float_gt(_single_channel(a, path))
    img = _single_channel(_imread_unchanged(path), path)
    if np.issubdtype(img.dtype, np.floating):
        return float_gt(img)
    return im2double(img)


def read_estimate(path: Path) -> np.ndarray:
    """An estimate (16-bit / 8-bit PNG, or float ``.npy``) as float64 disparity-like values (im2double)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        a = np.asarray(np.load(path, allow_pickle=False), np.float64)
        a = _single_channel(a, path)
        if not np.isfinite(a).all():
            raise DatasetError(f"estimate has NaN or infinite values: {path}")
        return a
    return im2double(_single_channel(_imread_unchanged(path), path))


def read_mask(path: Path) -> np.ndarray:
    """A mask PNG as bool, True = usable (non-zero)."""
    return _single_channel(_imread_unchanged(Path(path)), Path(path)) != 0


def find_with_suffix(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for s in suffixes:
        p = Path(folder) / f"{stem}{s}"
        if p.is_file():
            return p
    return None


def find_estimate(pred_dir: Path, name: str) -> Path | None:
    """``PRED_DIR/<name>.png``, else ``PRED_DIR/<name>.npy``, else None."""
    return find_with_suffix(pred_dir, name, PRED_SUFFIXES)


@dataclass(frozen=True)
class Sample:
    """One GT image of a dataset."""

    name: str                                # the estimate is PRED_DIR/<name>.png
    gt_path: Path
    gt_type: str                             # "disparity" or "depth"
    image_path: Path | None = None           # the RGB image (for --run)
    masks: tuple[Path, ...] = ()             # GT is set to 0 where any mask is 0

    def load_gt(self) -> np.ndarray:
        g = read_gt(self.gt_path)
        for m in self.masks:
            valid = read_mask(m)
            if valid.shape != g.shape:
                raise DatasetError(f"mask {m} is {valid.shape}, GT {self.gt_path} is {g.shape}")
            g = np.where(valid, g, 0.0)
        return g


def parse_middlebury_calib(path: Path) -> dict[str, object]:
    """``calib.txt`` of Middlebury 2014 (``key=value`` lines; ``cam0``/``cam1`` as 3x3 matrices
    ``[f 0 cx; 0 f cy; 0 0 1]``, the rest numbers: doffs, baseline, width, height, ndisp, isint, vmin, ...)."""
    out: dict[str, object] = {}
    for line in Path(path).read_text().splitlines():
        if "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if value.startswith("["):
            rows = [r.split() for r in value.strip("[]").split(";")]
            out[key] = np.array([[float(x) for x in r] for r in rows], np.float64)
        else:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def middlebury2014(root: Path) -> list[Sample]:
    """Scenes under ``root`` (any depth, or ``root`` itself) that hold a ``disp0.pfm``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root}")
    gts = sorted(root.rglob("disp0.pfm"))
    if not gts:
        raise DatasetError(f"no <scene>/disp0.pfm under {root} (Middlebury 2014 layout)")
    samples, seen = [], {}
    for g in gts:
        name = g.parent.name
        if name in seen:
            raise DatasetError(f"two scenes named {name!r}: {seen[name]} and {g.parent}")
        seen[name] = g.parent
        img = g.parent / "im0.png"
        samples.append(Sample(name, g, "disparity", img if img.is_file() else None))
    return samples


def ibims1(root: Path, *, use_masks: bool = True) -> list[Sample]:
    """The ``ibims1_core_raw`` layout (see the module docstring)."""
    root = Path(root)
    depth_dir = root / "depth"
    if not depth_dir.is_dir():
        raise DatasetError(f"no depth/ folder in {root} (iBims-1 ibims1_core_raw layout)")
    listing = root / "imagelist.txt"
    if listing.is_file():
        names = [n.strip() for n in listing.read_text().split() if n.strip()]
    else:
        names = sorted(p.stem for p in depth_dir.glob("*.png"))
    if not names:
        raise DatasetError(f"no depth maps in {depth_dir}")
    samples = []
    for n in names:
        gt = depth_dir / f"{n}.png"
        if not gt.is_file():
            raise DatasetError(f"imagelist.txt names {n!r} but {gt} is missing")
        masks = tuple(p for p in (root / "mask_invalid" / f"{n}.png", root / "mask_transp" / f"{n}.png")
                      if use_masks and p.is_file())
        img = find_with_suffix(root / "rgb", n, IMAGE_EXTENSIONS)
        samples.append(Sample(n, gt, "depth", img, masks))
    return samples


def generic(gt_dir: Path, *, gt_type: str = "disparity", images_dir: Path | None = None,
            gt_format: str = "auto") -> list[Sample]:
    """GT files ``GT_DIR/<stem>.png|.pfm|.npy`` paired by stem (see the module docstring)."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise DatasetError(f"not a folder: {gt_dir}")
    if gt_format not in GT_FORMATS:
        raise DatasetError(f"unknown GT format {gt_format!r}; known: {', '.join(GT_FORMATS)}")
    files = sorted(p for p in gt_dir.iterdir() if p.is_file() and p.suffix.lower() in GT_SUFFIXES
                   and not p.name.startswith("."))
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem, []).append(f)
    order = GT_PREFERENCE if gt_format == "auto" else (f".{gt_format}",)
    samples = []
    for stem in sorted(by_stem):
        if any(stem.endswith(p) and stem[: -len(p)] in by_stem for p in PREVIEW_SUFFIXES):
            continue  # <stem>_color.png beside <stem>.png: hrjax's preview, not a GT map
        choice = next((f for suffix in order for f in by_stem[stem] if f.suffix.lower() == suffix), None)
        if choice is None:
            continue  # --gt-format names a format this stem does not have
        img = find_with_suffix(images_dir, stem, IMAGE_EXTENSIONS) if images_dir is not None else None
        samples.append(Sample(stem, choice, gt_type, img))
    if not samples:
        what = ", ".join(GT_SUFFIXES) if gt_format == "auto" else f".{gt_format}"
        raise DatasetError(f"no GT maps ({what}) in {gt_dir}")
    return samples


def load_dataset(dataset: str, gt: Path, *, gt_type: str = "disparity", images_dir: Path | None = None,
                 use_masks: bool = True, gt_format: str = "auto") -> list[Sample]:
    if dataset == "middlebury2014":
        return middlebury2014(gt)
    if dataset == "ibims1":
        return ibims1(gt, use_masks=use_masks)
    if dataset == "generic":
        return generic(gt, gt_type=gt_type, images_dir=images_dir, gt_format=gt_format)
    raise DatasetError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
