"""``hrjax merge LOW HIGH``: two depth maps read from files, merged (:mod:`hrjax.pipeline.merge_estimates`),
written in ``hrjax boost``'s --save formats. The files are read and checked before jax and the merge net load,
so a bad file fails at once; nothing is left half-written (atomic files, a failed set removed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hrjax.pipeline.merge_estimates import EstimateError, check_estimate, check_pair
from hrjax.run.exits import UsageError
from hrjax.run.inputs import Job
from hrjax.run.outputs import RunOptions, check_inside, output_paths, write_all_or_none


def read_estimate(path: Path) -> np.ndarray:
    """One depth map from a file, values as stored (the merge min-maxes its inputs itself): ``.npy`` (no
    pickles), ``.pfm`` (one channel, hrjax.eval.pfm), else an image OpenCV decodes, kept at its bit depth (the
    16-bit PNG of ``hrjax boost --save png16``; 8-bit; float TIFF). Raises an :class:`EstimateError`."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".pfm":
            from hrjax.eval.pfm import read_pfm
            return read_pfm(path)
        import cv2
        m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except (OSError, ValueError) as e:
        raise EstimateError(f"{path}: cannot read it: {e}") from None
    if m is None:
        raise EstimateError(f"{path}: not an image OpenCV can read (depth maps: .png .npy .pfm .tif)")
    if m.ndim == 3 and not all(np.array_equal(m[..., 0], m[..., c]) for c in range(1, m.shape[-1])):
        raise EstimateError(f"{path}: a colour image ({m.shape[-1]} channels), not a depth map (a colour "
                            f"preview such as <stem>_color.png cannot be merged; give the gray PNG, .npy or .pfm)")
    return m if m.ndim == 2 else m[..., 0]


@dataclass(frozen=True)
class MergeJob:
    low: Path
    high: Path
    name: str              # the outputs' stem (default: HIGH's)
    depth: bool = False    # the files hold depth (larger = farther): inverted (1/d) before the merge


def output_files(job: MergeJob, opts: RunOptions) -> dict[str, Path]:
    """The --save outputs of the merge; a UsageError when one would land on an input or outside --output."""
    paths = output_paths(opts, Job(job.high, job.name))
    inputs = {os.path.realpath(job.low), os.path.realpath(job.high)}
    for p in paths.values():
        check_inside(opts.output, p)
        if os.path.realpath(p) in inputs:
            raise UsageError(f"the output {p} would overwrite its input; choose another --output or --name")
    return paths


def read_pair(job: MergeJob) -> tuple[np.ndarray, np.ndarray]:
    """Both maps read and checked (finite, not constant, positive with ``depth``, one image's shapes)."""
    low = check_estimate(read_estimate(job.low), f"LOW {job.low}", depth=job.depth)
    high = check_estimate(read_estimate(job.high), f"HIGH {job.high}", depth=job.depth)
    check_pair(low.shape, high.shape)
    return low, high


def merge_files(job: MergeJob, opts: RunOptions, low: np.ndarray, high: np.ndarray, merge_net) -> list[Path]:
    """Merge the checked maps with ``merge_net`` = (graphdef, state) and write the outputs; returns them. A
    failure while writing removes what was written."""
    from hrjax import io
    from hrjax.pipeline.merge_estimates import merge_maps

    paths = output_files(job, opts)
    # the maps were inverted by read_pair already: depth=False here
    depth_map = merge_maps(*merge_net, low, high)
    io.check_finite(depth_map, "merged map")
    return write_all_or_none(paths, depth_map, opts.colormap)
