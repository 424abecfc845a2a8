"""The HTTP side of ``hrjax serve``: the stdlib's threading server, one page, a small JSON API.

  GET  /                            the page (page.html)
  GET  /api/options                 models offered, modes, precisions, colour maps (256-entry RGB tables), limits
  POST /api/jobs?name=&model=&mode=&max_res=&precision=   the raw image file as the body -> 202 {"id"}
  GET  /api/jobs                    every job kept, oldest first
  GET  /api/jobs/<id>               one job: status, stage, done/total, R, patches, ETA, error, files
  GET  /api/jobs/<id>/<kind>        input (8-bit preview), png16, plain, npy, ply; ?download=1 as an attachment

Each request runs on its own thread and the boosting on the queue's worker, so the page never waits on a job.
Errors are JSON ``{"error": message}`` with a 4xx/5xx status.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qsl, urlsplit

from hrjax.serve.config import ServeConfig, job_options
from hrjax.serve.jobs import JobQueue, UploadRejected

CONTENT_TYPES = {"input": "image/png", "png16": "image/png", "plain": "image/png",
                 "npy": "application/octet-stream", "ply": "application/octet-stream"}
# a body over the limit is read and dropped in chunks up to this much (so the client reads the 413 instead of
# a reset connection), then the connection is closed
DRAIN_BYTES = 1 << 30


def colormap_tables() -> dict[str, list[list[int]]]:
    """name -> 256 RGB triples: OpenCV's maps (those of ``--colormap``) for the page to colour maps with."""
    import cv2
    import numpy as np

    from hrjax.io import COLORMAPS

    ramp = np.arange(256, dtype=np.uint8).reshape(-1, 1)
    tables = {"gray": [[i, i, i] for i in range(256)]}
    for name in COLORMAPS:
        bgr = cv2.applyColorMap(ramp, getattr(cv2, f"COLORMAP_{name.upper()}")).reshape(256, 3)
        tables[name] = bgr[:, ::-1].tolist()
    return tables


def options_document(config: ServeConfig) -> dict:
    from hrjax.bases import get_base
    from hrjax.models.precision import PRECISIONS
    from hrjax.pipeline.config import MODES

    return {"models": [{"name": m, "output": get_base(m).output} for m in config.models],
            "modes": list(MODES), "precisions": list(PRECISIONS), "colormaps": colormap_tables(),
            "max_upload_bytes": config.max_upload_bytes, "max_pixels": config.max_pixels,
            "ply": config.ply.identity()}


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: ServeConfig):
        self.config = config
        self.jobs = JobQueue(config)
        self.page = resources.files("hrjax.serve").joinpath("page.html").read_bytes()
        self.options = json.dumps(options_document(config)).encode()
        super().__init__((config.host, config.port), Handler)

    def server_close(self) -> None:
        super().server_close()
        self.jobs.close()


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the console shows the jobs, not every poll
        pass

    # ---------------------------------------------------------------------------------------------- replies
    def _send(self, status: int, body: bytes | None, ctype: str, extra: dict | None = None,
              length: int | None = None) -> None:
        """Status and headers, then ``body`` (None: the caller writes ``length`` bytes itself)."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if body is not None else length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body is not None and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    # --------------------------------------------------------------------------------------------- routes
    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            return self._send(200, self.server.page, "text/html; charset=utf-8")
        if path == "/api/options":
            return self._send(200, self.server.options, "application/json")
        if path == "/api/jobs":
            return self._json(200, self.server.jobs.list())
        m = re.fullmatch(r"/api/jobs/([0-9a-f]{16})(?:/([a-z0-9]+))?", path)
        if not m:
            return self._error(404, f"no such page: {path}")
        job_id, kind = m.groups()
        if kind is None:
            s = self.server.jobs.snapshot(job_id)
            return self._json(200, s) if s else self._error(404, "no such job (finished jobs are kept a while)")
        found = self.server.jobs.file(job_id, kind)
        if found is None or kind not in CONTENT_TYPES:
            return self._error(404, f"job {job_id} has no file {kind!r} (yet)")
        path_, name = found
        extra = {}
        if dict(parse_qsl(urlsplit(self.path).query)).get("download"):
            extra["Content-Disposition"] = f'attachment; filename="{name}"'
        try:
            f = open(path_, "rb")
        except FileNotFoundError:  # the job was just dropped (keep_jobs)
            return self._error(404, f"job {job_id} has no file {kind!r} any more")
        with f:  # streamed: a 50-megapixel image's PLY is ~750 MB
            self._send(200, None, CONTENT_TYPES[kind], extra, length=os.fstat(f.fileno()).st_size)
            if self.command != "HEAD":
                shutil.copyfileobj(f, self.wfile, 1 << 20)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/api/jobs":
            return self._error(404, f"no such endpoint: {url.path}")
        limit = self.server.config.max_upload_bytes
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            return self._error(411, "the upload needs a Content-Length")
        if length > limit:
            self._drain(length)
            self.close_connection = True
            return self._error(413, f"upload of {length} bytes is over the limit of {limit}")
        data = self.rfile.read(length)
        query = dict(parse_qsl(url.query))
        try:
            options = job_options(query, self.server.config)
            job_id = self.server.jobs.submit(query.get("name", "image"), data, options)
        except UploadRejected as e:
            return self._error(e.status, str(e))
        except ValueError as e:
            return self._error(400, str(e))
        self._json(202, {"id": job_id})

    def _drain(self, length: int) -> None:
        left = min(length, DRAIN_BYTES)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)


def make_server(config: ServeConfig) -> Server:
    """Bind (port 0: any free port; ``server.server_address`` says which) and start the job worker."""
    return Server(config)
