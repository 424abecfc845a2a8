"""``hrjax predict``: the plain single pass of a base network (:mod:`hrjax.pipeline.single_pass`) over files and
folders, with ``hrjax boost``'s inputs (hrjax.run.inputs: keys, sub-folders, inputs never outputs), --save
writers, records and resume rule (hrjax.run.records, with their own identity), and per-image error isolation.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from hrjax.run.folder import ImageRecord, run_memory_releaser
from hrjax.run.inputs import Job, read_job_image
from hrjax.run.outputs import RunOptions, check_inside, output_paths, write_all_or_none
from hrjax.run.records import input_identity, is_complete, write_record

Predict = Callable[[np.ndarray], np.ndarray]   # image -> (H, W) float32 map


def predict_image(predict: Predict, job: Job, opts: RunOptions, identity: dict) -> ImageRecord:
    """Read, predict and write one image; any failure is caught and returned as a ``failed`` record, and a
    failure while writing removes what this attempt wrote (as :func:`hrjax.run.folder.process_image`)."""
    from hrjax import io

    rec = ImageRecord(input=str(job.source), key=job.key, status="failed")
    t0 = time.perf_counter()
    try:
        img = read_job_image(job, opts.max_pixels)
        rec.input_shape = [int(img.shape[0]), int(img.shape[1])]
        depth = predict(img)
        rec.timings["predict"] = time.perf_counter() - t0
        io.check_finite(depth, "depth map")  # before anything is written
        paths = output_paths(opts, job)
        for q in paths.values():
            check_inside(opts.output, q)
        input_id = input_identity(job.source)
        write_record(opts, job, identity, list(paths.values()), status="writing", input_id=input_id)
        written = write_all_or_none(paths, depth, opts.colormap)
        write_record(opts, job, identity, written, status="done", input_id=input_id)
        rec.outputs = [str(w) for w in written]
        rec.status = "done"
    except (KeyboardInterrupt, SystemExit):
        raise
    except io.ImageReadError as e:
        rec.error = str(e)
    except Exception as e:  # noqa: BLE001 - one bad image must not stop a folder run
        rec.error = f"{type(e).__name__}: {e}"
    rec.timings["wall"] = time.perf_counter() - t0
    return rec


def run_predict(jobs: list[Job], opts: RunOptions, identity: dict, load: Callable[[], Predict],
                log: Callable[[ImageRecord], None]) -> list[ImageRecord]:
    """Each job predicted and written in order, or skipped when its record says it is done with the same
    ``identity`` (unless ``opts.overwrite``); ``load()`` (the weights, once) runs only if an image is to do.
    Free heap pages go back to the OS while it runs and after each image predicted, as in the folder run
    (hrjax.run.folder.run_memory_releaser)."""
    from hrjax.host_memory import release_free_memory

    predict = None
    records = []
    with run_memory_releaser():
        for job in jobs:
            if not opts.overwrite and is_complete(opts, job, identity):
                rec = ImageRecord(input=str(job.source), key=job.key, status="skipped",
                                  outputs=[str(p) for p in output_paths(opts, job).values()])
            else:
                predict = predict or load()
                rec = predict_image(predict, job, opts, identity)
                release_free_memory()
            records.append(rec)
            log(rec)
    return records
