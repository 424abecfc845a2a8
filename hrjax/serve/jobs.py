"""The job queue of ``hrjax serve``: uploads are checked and queued by the HTTP threads, one worker thread
boosts them one at a time with the run layer of ``hrjax boost`` (:func:`hrjax.run.folder.process_image`,
:func:`hrjax.run.setup.load_run_models`), so the page gets exactly the files the CLI writes.

State is explicit: every job is a :class:`JobState` in :class:`JobQueue`'s table, changed only under its lock;
HTTP threads read copies (:meth:`JobQueue.snapshot`). The networks of one (base, precision) stay loaded
between jobs; another choice replaces them (one set in memory).
"""

from __future__ import annotations

import contextlib
import math
import queue
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from hrjax.run.outputs import SAVE_SUFFIX
from hrjax.serve.config import JobOptions, ServeConfig

# what every job writes (run layer --save formats), and the names the page downloads them by
SAVE = ("png16", "npy", "ply", "plain")
KEY = "depth"                                   # the output key inside a job's folder
INPUT_PREVIEW = "input.png"                     # 8-bit RGB preview of the decoded input (browsers can't show TIFF)


class UploadRejected(ValueError):
    """An upload the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class JobState:
    id: str
    name: str                      # the uploaded file's name (shown; downloads are named after its stem)
    options: JobOptions
    folder: Path
    status: str = "queued"         # queued | running | done | failed
    stage: str = ""
    done: int = 0
    total: int = 0
    R: int | None = None
    n_patches: int | None = None
    eta_s: float | None = None
    error: str | None = None
    files: dict[str, Path] = field(default_factory=dict)   # kind -> file (see FILE_KINDS)
    created: float = field(default_factory=time.time)
    wall_s: float | None = None
    input_shape: tuple[int, int] | None = None

    def public(self, position: int | None) -> dict:
        return {"id": self.id, "name": self.name, "options": self.options.__dict__, "status": self.status,
                "stage": self.stage, "done": self.done, "total": self.total, "R": self.R,
                "n_patches": self.n_patches, "eta_s": self.eta_s, "error": self.error, "position": position,
                "files": sorted(self.files), "wall_s": self.wall_s,
                "input_shape": list(self.input_shape) if self.input_shape else None}


def safe_stem(name: str) -> str:
    """A download name from an uploaded file name: its stem, letters, digits, ``._-`` only."""
    stem = Path(name.replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem.strip(".") else stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:100]
    return stem or "image"


class JobQueue:
    """Accepts uploads (:meth:`submit`), runs them in order on one worker thread, keeps the last
    ``config.keep_jobs`` finished jobs and their files."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.root = Path(tempfile.mkdtemp(prefix="hrjax-serve-", dir=config.work_dir))
        self._lock = threading.Lock()
        self._jobs: dict[str, JobState] = {}
        self._order: list[str] = []            # submission order
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._check = threading.Semaphore(1)   # one upload decoded at a time (bounds memory)
        self._models_key: tuple | None = None
        self._models = self._device = None
        self._worker = threading.Thread(target=self._work, name="hrjax-serve-worker", daemon=True)
        self._worker.start()

    # --------------------------------------------------------------------------------------------- uploads
    def submit(self, name: str, data: bytes, options: JobOptions) -> str:
        """Check an upload (size, pixel count from the header, then a full decode) and queue it."""
        from hrjax import io

        if len(data) == 0:
            raise UploadRejected("empty upload")
        if len(data) > self.config.max_upload_bytes:
            raise UploadRejected(f"upload of {len(data)} bytes is over the limit of {self.config.max_upload_bytes}",
                                 413)
        size = io.header_size(data[:io.HEADER_BYTES])
        if size is not None and size[0] * size[1] > self.config.max_pixels:
            raise UploadRejected(f"image is {size[0]}x{size[1]} = {size[0] * size[1]} pixels (from its header), "
                                 f"over the limit of {self.config.max_pixels}", 413)
        with self._lock:
            waiting = sum(1 for j in self._jobs.values() if j.status in ("queued", "running"))
        if waiting >= self.config.queue_size:
            raise UploadRejected(f"{waiting} jobs are waiting already (the queue holds {self.config.queue_size}); "
                                 f"try again later", 503)
        job_id = secrets.token_hex(8)
        folder = self.root / job_id
        folder.mkdir()
        ext = Path(name).suffix.lower()
        src = folder / ("input" + (ext if ext in io.IMAGE_EXTENSIONS else ".img"))
        src.write_bytes(data)
        try:
            with self._check:  # the CLI's reader, its limits and its messages (decodes once more in the worker)
                img = io.read_image(src, max_pixels=self.config.max_pixels)
                from hrjax.pointcloud import to_uint8_rgb
                io.atomic_write_bytes(folder / INPUT_PREVIEW, io.encode_png(to_uint8_rgb(img)[:, :, ::-1]),
                                      durable=False)
        except io.ImageReadError as e:
            shutil.rmtree(folder, ignore_errors=True)
            msg = str(e).replace(str(src), name)
            raise UploadRejected(msg.replace("(raise --max-pixels to process it)",
                                             "(hrjax serve --max-pixels raises it)"),
                                 413 if "over the limit" in msg else 400) from None
        state = JobState(job_id, name, options, folder, input_shape=(int(img.shape[0]), int(img.shape[1])))
        state.files["input"] = folder / INPUT_PREVIEW
        state.files["source"] = src
        with self._lock:
            self._jobs[job_id] = state
            self._order.append(job_id)
            self._evict()
        self._queue.put(job_id)
        return job_id

    def _evict(self) -> None:
        """Drop the oldest finished jobs beyond ``keep_jobs`` (under the lock)."""
        finished = [i for i in self._order if self._jobs[i].status in ("done", "failed")]
        for i in finished[:max(0, len(finished) - self.config.keep_jobs)]:
            shutil.rmtree(self._jobs.pop(i).folder, ignore_errors=True)
            self._order.remove(i)

    # ------------------------------------------------------------------------------------------------ reads
    def snapshot(self, job_id: str) -> dict | None:
        with self._lock:
            j = self._jobs.get(job_id)
            if j is None:
                return None
            queued = [i for i in self._order if self._jobs[i].status == "queued"]
            return j.public(queued.index(job_id) if job_id in queued else None)

    def list(self) -> list[dict]:
        with self._lock:
            ids = list(self._order)
        return [s for s in (self.snapshot(i) for i in ids) if s is not None]

    def file(self, job_id: str, kind: str) -> tuple[Path, str] | None:
        """(path, download name) of one of a job's files, or None."""
        with self._lock:
            j = self._jobs.get(job_id)
            if j is None or kind not in j.files or kind == "source":
                return None
            path = j.files[kind]
        stem = safe_stem(j.name)
        names = {"input": f"{stem}_input.png", "png16": stem + SAVE_SUFFIX["png16"],
                 "npy": stem + SAVE_SUFFIX["npy"], "ply": stem + SAVE_SUFFIX["ply"],
                 "plain": stem + SAVE_SUFFIX["plain"]}
        return path, names.get(kind, path.name)

    # ------------------------------------------------------------------------------------------------ work
    def _update(self, job: JobState, **changes) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(job, k, v)

    def _work(self) -> None:
        from hrjax.progress import Estimator
        est = Estimator()  # learns this machine's pass times over the jobs, as the CLI's bars do
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs.get(job_id)
            if job is None:
                continue
            try:
                self._run(job, est)
            except BaseException as e:  # noqa: BLE001 - a job fails, the server goes on
                self._update(job, status="failed", error=f"{type(e).__name__}: {e}", eta_s=None)
            with self._lock:
                self._evict()

    def _models_for(self, job: JobState):
        from hrjax.run.setup import load_run_models
        key = (job.options.model, job.options.precision)
        if key != self._models_key:
            self._models = self._models_key = None  # the old set goes before the new one loads
            self._update(job, stage=f"loading {job.options.model} ({job.options.precision})")
            c = self.config
            self._models, self._device, _ = load_run_models(
                c.weights_dir, model=job.options.model, merge_weights_dir=c.merge_weights_dir, platform=c.device,
                precision=job.options.precision, grouped_impl=c.grouped_impl, cache_dir=c.cache_dir)
            self._models_key = key
        return self._models

    def _run(self, job: JobState, est) -> None:
        from hrjax.bases import get_base
        from hrjax.pipeline.config import BoostConfig
        from hrjax.run.folder import process_image, run_memory_releaser
        from hrjax.run.inputs import Job
        from hrjax.run.outputs import RunOptions, output_paths

        self._update(job, status="running", stage="starting")
        t0 = time.perf_counter()
        o = job.options
        models = self._models_for(job)
        config = BoostConfig(mode=o.mode, max_res=math.inf if o.max_res is None else o.max_res,
                             receptive_field=get_base(o.model).receptive_field)
        opts = RunOptions(output=job.folder / "out", save=SAVE, max_pixels=self.config.max_pixels,
                          ply=self.config.ply)

        def progress(stage: str, done: int, total: int) -> None:
            est.observe(stage, done, total)
            left = est.remaining(stage, done, total)
            self._update(job, stage=stage, done=done, total=total, eta_s=left if math.isfinite(left) else None)

        def on_plan(plan) -> None:
            est.start_image(plan)
            self._update(job, R=int(plan.R), n_patches=int(plan.n_patches), eta_s=est.image_estimate())

        run_job = Job(job.files["source"], KEY)
        with contextlib.ExitStack() as ctx:
            if self._device is not None:
                import jax
                ctx.enter_context(jax.default_device(self._device))
            ctx.enter_context(run_memory_releaser())  # and all at its end
            rec = process_image(models, run_job, config, opts, progress=progress, on_plan=on_plan)
        if rec.status != "done":
            self._update(job, status="failed", error=rec.error, eta_s=None, wall_s=time.perf_counter() - t0)
            return
        files = output_paths(opts, run_job)
        with self._lock:
            job.files.update(files)
            job.status, job.stage, job.eta_s = "done", "done", None
            job.wall_s = time.perf_counter() - t0

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)

