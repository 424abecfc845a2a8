"""Where the outputs of one input go: the ``--save`` formats, their file names, ``whole/`` and ``patches/``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from hrjax.io import DEFAULT_MAX_PIXELS
from hrjax.pointcloud import PlyOptions
from hrjax.run.exits import UsageError

if TYPE_CHECKING:
    from hrjax.run.inputs import Job

SAVE_FORMATS = ("png16", "npy", "color", "png8", "pfm", "ply", "compare", "plain")


# format -> file name suffix after the stem (png16 is the main result: its presence marks a finished image)
SAVE_SUFFIX = {"png16": ".png", "npy": ".npy", "color": "_color.png", "png8": "_8bit.png", "pfm": ".pfm",
               "ply": ".ply", "compare": "_compare.png", "plain": "_plain.png"}

# formats that need the plain estimate (the base network's single pass on the whole image, BoostResult.plain)
NEEDS_PLAIN = ("compare", "plain")


OUTPUT_EXTENSIONS = tuple(sorted({s[s.rindex("."):] for s in SAVE_SUFFIX.values()}))  # ".npy", ".pfm", ".png"


WHOLE_DIR, PATCHES_DIR = "whole", "patches"


def parse_save(values: Iterable[str]) -> tuple[str, ...]:
    """``--save png16,npy`` (repeatable, comma separated) -> ordered unique formats."""
    out: list[str] = []
    for v in values:
        for f in v.split(","):
            f = f.strip().lower()
            if not f:
                continue
            if f not in SAVE_FORMATS:
                raise UsageError(f"unknown --save format '{f}'; choose from {', '.join(SAVE_FORMATS)}")
            if f not in out:
                out.append(f)
    if not out:
        raise UsageError(f"--save needs at least one of {', '.join(SAVE_FORMATS)}")
    return tuple(out)


@dataclass(frozen=True)
class RunOptions:
    output: Path
    save: tuple[str, ...] = ("png16",)
    save_whole: bool = False
    save_patches: bool = False
    overwrite: bool = False
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    colormap: str = "inferno"     # of the ``color`` and ``compare`` previews (hrjax.io.COLORMAPS)
    ply: PlyOptions = PlyOptions()  # camera and depth range of ``--save ply`` (hrjax.pointcloud)


def output_paths(opts: RunOptions, job: Job) -> dict[str, Path]:
    """The requested single-file outputs of a job (the --save formats, :data:`SAVE_SUFFIX`) and ``whole``."""
    base = Path(opts.output) / job.key
    names = {f: base.with_name(base.name + suffix) for f, suffix in SAVE_SUFFIX.items()}
    out = {f: names[f] for f in opts.save}
    if opts.save_whole:
        out["whole"] = Path(opts.output) / WHOLE_DIR / (job.key + ".png")
    return out


# the order the --save formats are written in: the main result (png16, whose presence marks a finished image) last
# the main result (png16) last: a run that stops half-way leaves no main file for an unfinished set
WRITE_ORDER = ("npy", "pfm", "png8", "color", "plain", "compare", "ply", "png16")


def write_formats(paths: dict[str, Path], depth, colormap: str, written: list[Path],
                  extra: dict[str, Callable[[Path, Any], None]] | None = None) -> None:
    """Write ``depth`` in each --save format of ``paths`` (:func:`output_paths`; other keys are left to the
    caller), each file atomically, the main result last; every file is appended to ``written`` once it is
    there, so that a caller that fails later can remove the set it wrote (shared by boost, predict, merge).
    ``extra``: writers ``(path, depth)`` of the formats that need more than the map (boost's plain, compare,
    ply); a format of ``paths`` with no writer is an error."""
    from hrjax import io

    writers = {"npy": io.write_npy, "color": lambda path, d: io.write_color(path, d, colormap),
               "png16": io.write_png16, "png8": io.write_png8, "pfm": io.write_pfm, **(extra or {})}
    for f in WRITE_ORDER:
        if f in paths:
            writers[f](paths[f], depth)
            written.append(paths[f])


def write_all_or_none(paths: dict[str, Path], depth, colormap: str) -> list[Path]:
    """:func:`write_formats` of one map; on a failure the files already written are removed before the error
    goes on (nothing half-written). Returns the files written (predict, merge)."""
    written: list[Path] = []
    try:
        write_formats(paths, depth, colormap, written)
    except BaseException:
        for w in written:
            w.unlink(missing_ok=True)
        raise
    return written


def patches_index_path(opts: RunOptions, job: Job) -> Path:
    return Path(opts.output) / PATCHES_DIR / (job.key + ".json")


def patch_path(opts: RunOptions, job: Job, patch_id: int) -> Path:
    return Path(opts.output) / PATCHES_DIR / f"{job.key}_{patch_id:04d}.png"


def check_inside(root: Path, path: Path) -> None:
    """Defence in depth behind the key rules: an output path must lie lexically inside ``--output``."""
    r, q = os.path.normpath(os.path.abspath(root)), os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([r, q]) != r or q == r:
        raise RuntimeError(f"refusing to write {path}: outside the output folder {root}")
