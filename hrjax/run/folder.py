"""Folder runs of ``hrjax boost``: each image read, boosted and written, with per-image error isolation.

Nothing here imports jax/flax at module import: the cheap checks (options, weights present, inputs) run first
so that a misconfigured call fails at once; jax is imported only when an image actually has to be processed.
Exit codes: :mod:`hrjax.run.exits`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hrjax.run.inputs import Job, read_job_image
from hrjax.run.outputs import (NEEDS_PLAIN, RunOptions, check_inside, output_paths, patch_path,
                               patches_index_path, write_formats)
from hrjax.run.records import input_identity, is_complete, result_identity, write_record
from hrjax.run.report import Reporter
from hrjax.run.setup import load_run_models

@dataclass
class ImageRecord:
    input: str
    key: str
    status: str                              # "done" | "skipped" | "failed"
    R: int | None = None
    K: float | None = None
    n_patches: int | None = None
    factor: float | None = None
    input_shape: list[int] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> str:
        d = dict(self.__dict__)
        d["timings"] = {k: round(float(v), 4) for k, v in self.timings.items()}
        return json.dumps(d)


def summarize(records: list[ImageRecord]) -> dict[str, int]:
    c = {"done": 0, "skipped": 0, "failed": 0}
    for r in records:
        c[r.status] += 1
    return c


Progress = Callable[[str, int, int], None]
# How often the run looks at the free heap (hrjax.host_memory): beyond KEEP_FREE_BYTES free, those pages go back
# to the OS; below, they stay for the next call's buffers (every image gives them back at its end).
RELEASE_INTERVAL_S = 2.0


def run_memory_releaser():
    """The heap releaser an application keeps while it processes images (the folder run, hrjax serve's jobs, the
    benchmark): looks every RELEASE_INTERVAL_S, gives pages back beyond KEEP_FREE_BYTES free (hrjax.host_memory)."""
    from hrjax.host_memory import KEEP_FREE_BYTES, FreeMemoryReleaser

    return FreeMemoryReleaser(RELEASE_INTERVAL_S, KEEP_FREE_BYTES)


def process_image(models, job: Job, config, opts: RunOptions, progress: Progress | None = None,
                  identity: dict | None = None, on_plan: Callable | None = None) -> ImageRecord:
    """Read, boost and write one image. Any failure is caught and returned as a ``failed`` record.

    With ``identity`` (:func:`result_identity`) the image's record is kept in ``<output>/.hrjax/<key>.json``:
    "writing" (listing the outputs) just before the first output is written, "done" with their sizes after
    the last. A failure while writing removes what this attempt wrote and marks the record "failed"."""
    from hrjax import io
    from hrjax.pipeline.boost import boost

    rec = ImageRecord(input=str(job.source), key=job.key, status="failed")
    t0 = time.perf_counter()
    try:
        img = read_job_image(job, opts.max_pixels)
        rec.input_shape = [int(img.shape[0]), int(img.shape[1])]
        rec.timings["read"] = time.perf_counter() - t0
        patch_maps: list[tuple[int, np.ndarray]] = []  # each patch's double estimate, kept for --save-patches
        result = boost(models, img, config, keep_intermediates=opts.save_whole, progress=progress, on_plan=on_plan,
                       on_patch=(lambda pid, m: patch_maps.append((pid, m))) if opts.save_patches else None,
                       keep_plain=any(f in opts.save for f in NEEDS_PLAIN))
        p = result.plan
        rec.R, rec.K, rec.n_patches = int(p.R), float(p.K), int(p.n_patches)
        rec.factor = float(p.factor) if p.factor is not None else None
        rec.timings.update({k: float(v) for k, v in result.timings.items()})
        paths = output_paths(opts, job)
        # checked before anything is written: a NaN map would be quantised to an all-black "done" image
        io.check_finite(result.depth, "depth map")
        whole = result.whole if "whole" in paths else None
        if whole is not None:
            io.check_finite(whole, "whole-image estimate")
        if result.plain is not None:
            io.check_finite(result.plain, "plain estimate")
        planned = list(paths.values()) + ([patches_index_path(opts, job)] if opts.save_patches else [])
        for q in planned:
            check_inside(opts.output, q)
        input_id = input_identity(job.source) if identity is not None else None
        if identity is not None:
            write_record(opts, job, identity, planned, status="writing", input_id=input_id)
        t = time.perf_counter()
        written: list[Path] = []
        try:
            if whole is not None:
                io.write_png16(paths["whole"], whole)
                written.append(paths["whole"])
            if opts.save_patches:
                tp = time.perf_counter()
                if progress:
                    progress("saving patches", 0, p.n_patches)
                files = []
                for i, (pid, m) in enumerate(patch_maps):
                    path = patch_path(opts, job, pid)
                    io.write_png16(path, m)  # raises on a non-finite patch map
                    written.append(path)
                    files.append(path.name)
                    if progress:
                        progress("saving patches", i + 1, p.n_patches)
                idx = patches_index_path(opts, job)
                index = {"input": str(job.source), "files": files, "patch_ids": [int(i) for i in p.patch_ids],
                         "rects_target": p.rects_target.tolist(), "rects_scaled": p.rects_scaled.tolist(),
                         "mergein_shape": list(p.mergein_shape) if p.mergein_shape else None}
                io.atomic_write_bytes(idx, (json.dumps(index) + "\n").encode())
                written.append(idx)
                rec.timings["save_patches"] = time.perf_counter() - tp
            extra = {"plain": lambda path, d: io.write_png16(path, result.plain),
                     "ply": lambda path, d: _write_ply(path, img, d, models.base.output, opts),
                     "compare": lambda path, d: _write_compare(path, img, result.plain, d, opts)}
            write_formats(paths, result.depth, opts.colormap, written, extra)  # the main result last
        except BaseException as e:
            for w in written:  # no partial set of outputs is left behind
                w.unlink(missing_ok=True)
            if identity is not None:
                try:
                    write_record(opts, job, identity, dict.fromkeys(planned + written), status="failed",
                                 input_id=input_id, error=f"{type(e).__name__}: {e}")
                except Exception:  # noqa: BLE001 - the original failure is the one to report
                    pass
            raise
        if identity is not None:  # last: only now is the image done
            write_record(opts, job, identity, written, status="done", input_id=input_id)
        rec.timings["write"] = time.perf_counter() - t
        rec.outputs = [str(w) for w in written]
        rec.status = "done"
    except io.ImageReadError as e:
        rec.error = str(e)
    except (KeyboardInterrupt, SystemExit):
        raise
    except MemoryError:
        rec.error = "out of memory (try a smaller --max-res or --max-batch)"
    except io.NonFiniteDepthError as e:
        rec.error = f"the pipeline produced a non-finite result: {e}"
    except Exception as e:  # noqa: BLE001 - one bad image must not stop a folder run
        rec.error = f"{type(e).__name__}: {e}"
    rec.timings["wall"] = time.perf_counter() - t0
    return rec


def _write_ply(path: Path, img: np.ndarray, depth: np.ndarray, output: str, opts: RunOptions) -> None:
    from hrjax import io
    from hrjax.pointcloud import ply_bytes, to_uint8_rgb
    io.atomic_write_bytes(path, ply_bytes(to_uint8_rgb(img), depth, output, opts.ply))


def _write_compare(path: Path, img: np.ndarray, plain: np.ndarray, depth: np.ndarray, opts: RunOptions) -> None:
    from hrjax import io
    from hrjax.pointcloud import to_uint8_rgb
    from hrjax.run.compare import compare_image
    io.atomic_write_bytes(path, io.encode_png(compare_image(to_uint8_rgb(img), plain, depth, opts.colormap)))


def _quiet_opencv() -> None:
    """OpenCV logs decoder warnings (e.g. "PNG input buffer is incomplete") on stderr; the failure is reported
    with its reason anyway."""
    try:
        import cv2
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):  # pragma: no cover
        pass


def run(jobs: list[Job], opts: RunOptions, config, *, weights_dir: Path, model: str = "midas_v21",
        merge_weights_dir: Path | None = None, platform: str | None = None, precision: str = "float32",
        grouped_impl: str = "auto", local_devices: int = 0, cache_dir: Path | None | bool = None,
        reporter: Reporter,
        emit: Callable[[ImageRecord], None] | None = None) -> list[ImageRecord]:
    """Process ``jobs`` in order; returns one record per job. Raises hrjax.run.exits.UsageError (before any image is
    processed) when the device or the weights are unusable. ``cache_dir``: None = the default persistent
    compilation cache, False = none, a path = that folder. ``local_devices``: shard patch batches over the
    first N local devices of the platform (0 = all accelerators, one CPU; see mesh_for). ``precision``,
    ``grouped_impl``: see hrjax.models.precision (the results do not depend on ``grouped_impl``)."""
    _quiet_opencv()
    records: list[ImageRecord] = []
    identity = result_identity(config, weights_dir=weights_dir, model=model, merge_weights_dir=merge_weights_dir,
                               precision=precision, ply=opts.ply.identity() if "ply" in opts.save else None)
    pending = [opts.overwrite or not is_complete(opts, j, identity) for j in jobs]
    models = dev = None
    if any(pending):
        models, dev, mesh = load_run_models(weights_dir, model=model, merge_weights_dir=merge_weights_dir,
                                            platform=platform, precision=precision, grouped_impl=grouped_impl,
                                            local_devices=local_devices, cache_dir=cache_dir)
        if mesh is not None:
            reporter.message(f"patch batches sharded over {mesh.devices.size} devices")

    import contextlib

    from hrjax.host_memory import release_free_memory

    ctx = contextlib.ExitStack()
    if dev is not None:
        import jax
        ctx.enter_context(jax.default_device(dev))
    # free heap pages go back to the OS while images are processed (XLA:CPU's buffer churn fragments glibc's
    # heap, hrjax.host_memory) once more than KEEP_FREE_BYTES are free, and all of them after each image: a
    # policy of the application, so it is the run's, not the library call's
    ctx.enter_context(run_memory_releaser())
    with ctx:
        for i, (job, todo) in enumerate(zip(jobs, pending)):
            reporter.start(i, job)
            if todo:
                rec = process_image(models, job, config, opts, progress=reporter.stage, identity=identity,
                                    on_plan=reporter.plan)
            else:
                rec = ImageRecord(input=str(job.source), key=job.key, status="skipped",
                                  outputs=[str(p) for p in output_paths(opts, job).values()])
            if todo:
                release_free_memory()
            records.append(rec)
            reporter.finish(rec)
            if emit is not None:
                emit(rec)
    return records
