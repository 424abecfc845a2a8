"""The per-image records that make a folder run resumable: ``<output>/.hrjax/<key>.json`` says what produced
an image's outputs (the result identity, the input's identity) and whether they are complete."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

from hrjax.run.inputs import Job
from hrjax.run.outputs import RunOptions, output_paths, patches_index_path
from hrjax.weights.store import sha256_of

# Per-image records of what produced the outputs (the resume rule), hidden so that folder scans and listings
# of the outputs leave them out: <output>/.hrjax/<key>.json.
RECORDS_DIR, RECORD_FORMAT = ".hrjax", 1


def record_path(opts: RunOptions, job: Job) -> Path:
    return Path(opts.output) / RECORDS_DIR / (job.key + ".json")


def _jsonable(x):
    return json.loads(json.dumps(x))


def weights_identity(weights_dir: Path, model: str) -> dict | None:
    """A converted model's identity (from its store's hrjax.json); None when it is missing (the run stops at
    loading anyway)."""
    from hrjax.weights.store import WeightsError, read_info

    try:
        info = read_info(weights_dir, model)
    except WeightsError:
        return None
    return {"source_sha256": info.source_sha256, "arrays_sha256": getattr(info, "arrays_sha256", None)}


def predict_identity(*, weights_dir: Path, model: str) -> dict:
    """:func:`result_identity` of ``hrjax predict``: the command, the base network, its weights, hrjax's
    version (a boost record never matches it, so neither command skips the other's outputs)."""
    from hrjax import __version__

    return _jsonable({"hrjax": __version__, "command": "predict", "model": model,
                      "weights": {model: weights_identity(weights_dir, model)}})


def result_identity(config, *, weights_dir: Path, model: str = "midas_v21", merge_weights_dir: Path | None = None,
                    precision: str = "float32", ply: dict | None = None) -> dict:
    """What an image's outputs depend on besides the input: the options that change the result, the weights'
    identity (from each store's hrjax.json) and the hrjax version. ``max_batch`` and the device layout are
    left out: results do not depend on them. ``ply``: the point cloud's options when one is written
    (``PlyOptions.identity``; absent otherwise, so records of runs without one keep matching)."""
    from hrjax import __version__

    # options added after results were first recorded join the identity only when they are on (or a PLY is
    # written), so the records of earlier runs without them still match
    extra = {"buckets": True} if config.buckets else {}
    if ply is not None:
        extra["ply"] = ply
    return _jsonable({
        **extra, "hrjax": __version__, "mode": config.mode,
        "max_res": None if math.isinf(config.max_res) else float(config.max_res),
        "output_resolution": config.output_resolution, "receptive_field": config.receptive_field,
        "max_net_input": config.max_net_input, "precision": precision, "model": model,
        "weights": {model: weights_identity(weights_dir, model),
                    "mergenet": weights_identity(merge_weights_dir if merge_weights_dir is not None
                                                 else weights_dir, "mergenet")},
    })


def input_identity(path: Path) -> dict:
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_of(path)}


def _same_input(path: Path, recorded) -> bool:
    """Same size, and the same modification time or (a copy) the same sha256."""
    try:
        st = Path(path).stat()
        if st.st_size != recorded["size"]:
            return False
        return st.st_mtime_ns == recorded["mtime_ns"] or sha256_of(path) == recorded["sha256"]
    except (OSError, KeyError, TypeError):
        return False


def write_record(opts: RunOptions, job: Job, identity: dict, outputs: Iterable[Path], *, status: str,
                 input_id: dict | None = None, error: str | None = None) -> Path:
    """Write ``job``'s record atomically: status ("writing" before the outputs, "done" after them, "failed"),
    the result identity, the input's identity and every output with its size (None while writing)."""
    root = Path(opts.output)
    outs = {}
    for o in outputs:
        o = Path(o)
        outs[o.relative_to(root).as_posix()] = o.stat().st_size if status == "done" else None
    doc = {"format": RECORD_FORMAT, "status": status, "input": str(job.source), "input_id": input_id,
           "identity": identity, "save": list(opts.save), "save_whole": opts.save_whole,
           "save_patches": opts.save_patches, "outputs": outs, "error": error}
    from hrjax import io
    path = record_path(opts, job)
    io.atomic_write_bytes(path, (json.dumps(doc, indent=1) + "\n").encode())
    return path


def read_record(opts: RunOptions, job: Job) -> dict | None:
    try:
        doc = json.loads(record_path(opts, job).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == RECORD_FORMAT else None


def recorded_outputs(output: Path) -> set[Path]:
    """Every file the records under ``output`` list as an output (also of unfinished or failed images)."""
    root = Path(output)
    rec_dir = root / RECORDS_DIR
    found: set[Path] = set()
    if not rec_dir.is_dir():
        return found
    for f in rec_dir.rglob("*.json"):
        try:
            outs = json.loads(f.read_text()).get("outputs") or {}
        except (OSError, ValueError, AttributeError):
            continue
        found.update((root / rel).resolve() for rel in outs if isinstance(rel, str))
    return found


def is_complete(opts: RunOptions, job: Job, identity: dict) -> bool:
    """The resume rule: ``job`` is skipped when its record says "done" for the same ``identity``
    (:func:`result_identity`) and the same input, covers every requested output, and every output it lists
    is there with its recorded, non-zero size (an empty or truncated file is not done)."""
    rec = read_record(opts, job)
    if rec is None or rec.get("status") != "done" or rec.get("identity") != _jsonable(identity):
        return False
    if not (set(opts.save) <= set(rec.get("save") or ()) and (rec.get("save_whole") or not opts.save_whole)
            and (rec.get("save_patches") or not opts.save_patches)):
        return False
    root = Path(opts.output)
    outs = rec.get("outputs")
    if not isinstance(outs, dict):
        return False
    want = {q.relative_to(root).as_posix() for q in output_paths(opts, job).values()}
    if opts.save_patches:
        want.add(patches_index_path(opts, job).relative_to(root).as_posix())
    if not want <= outs.keys():
        return False
    for rel, size in outs.items():
        try:
            st = (root / rel).stat()
        except OSError:
            return False
        if not isinstance(size, int) or size <= 0 or st.st_size != size:
            return False
    return _same_input(job.source, rec.get("input_id"))
