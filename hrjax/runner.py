"""Folder runs of ``hrjax boost``: input discovery, output naming, resume, per-image error isolation.

Nothing here imports jax/flax at module import: the cheap checks (options, weights present, inputs) run first
so that a misconfigured call fails at once; jax is imported only when an image actually has to be processed.

Exit codes of a run: :data:`EXIT_OK` (0) every image done or skipped, :data:`EXIT_FAILED` (1) at least one
image failed (the others were still processed), :data:`EXIT_USAGE` (2) usage or setup error, nothing was
processed (bad option, no images found, missing/corrupt weights, unavailable device). 130 on Ctrl-C.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator

import numpy as np

from hrjax.io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

SAVE_FORMATS = ("png16", "npy", "color", "png8", "pfm")
# format -> file name suffix after the stem (png16 is the main result: its presence marks a finished image)
SAVE_SUFFIX = {"png16": ".png", "npy": ".npy", "color": "_color.png", "png8": "_8bit.png", "pfm": ".pfm"}
OUTPUT_EXTENSIONS = tuple(sorted({s[s.rindex("."):] for s in SAVE_SUFFIX.values()}))  # ".npy", ".pfm", ".png"
WHOLE_DIR, PATCHES_DIR = "whole", "patches"
# Per-image records of what produced the outputs (the resume rule), hidden so that folder scans and listings
# of the outputs leave them out: <output>/.hrjax/<key>.json.
RECORDS_DIR, RECORD_FORMAT = ".hrjax", 1
# Longest output name component (bytes): leaves room under the 255-byte name limit for "_color.png", ".json"
# and the temporary names of atomic writes.
MAX_KEY_BYTES = 200


class UsageError(Exception):
    """A problem with the command line or the setup: reported with exit code 2 before any image is processed."""


# ---------------------------------------------------------------------------------------------------------
# options


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
    colormap: str = "inferno"     # of the ``color`` preview (hrjax.io.COLORMAPS)


# ---------------------------------------------------------------------------------------------------------
# missing weights (no flax/jax import on this path)


def missing_weights_message(weights_dir: Path, explicit_dir: Path | None, models: Iterable[str]) -> str | None:
    """None when every model in ``models`` is installed in ``weights_dir``, else the error with fix-it commands."""
    from hrjax.weights.catalog import fix_it_commands
    from hrjax.weights.store import list_installed

    installed = {i.model for i in list_installed(weights_dir)}
    missing = [m for m in models if m not in installed]
    if not missing:
        return None
    lines = [f"missing model weights in {weights_dir}: {', '.join(missing)}"]
    for m in missing:
        lines.append(f"To install {m}:\n{fix_it_commands(m, explicit_dir)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# inputs and output names


@dataclass(frozen=True)
class Job:
    source: Path
    key: str                      # output name without extension, POSIX-relative to --output ("sub/name")
    error: str | None = None      # set for inputs that are known bad before reading (missing path, ...)
    note: str | None = None       # why the output name is not the plain stem (a clash was resolved)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _scan_folder(folder: Path, recursive: bool, exclude: Path | None,
                 errors: list[tuple[Path, str]]) -> list[tuple[Path, PurePosixPath]]:
    """Image files of ``folder`` (hidden files/folders and anything under ``exclude`` left out), with their
    path relative to ``folder``."""
    found: list[tuple[Path, PurePosixPath]] = []

    def onerror(e: OSError):
        errors.append((Path(e.filename) if e.filename else folder, f"cannot list folder: {e.strerror or e}"))

    for root, dirs, files in os.walk(folder, onerror=onerror, followlinks=False):
        rootp = Path(root)
        if _inside(rootp, exclude):
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for f in files:
            if f.startswith(".") or not is_image_name(f):
                continue
            p = rootp / f
            if _inside(p, exclude):
                continue
            found.append((p, PurePosixPath(p.relative_to(folder).as_posix())))
    return found


def _safe_component(name: str) -> str:
    """An output name component that stays inside --output and fits the 255-byte name limit with hrjax's
    suffixes: an all-dot name (the stem of ``..png`` is ``.``) becomes underscores; a name over
    :data:`MAX_KEY_BYTES` is cut and gets 8 hex digits of its sha1, so long names that share a prefix stay
    apart (deterministic)."""
    if not name.strip("."):
        name = "_" * max(len(name), 1)
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_KEY_BYTES:
        name = raw[:MAX_KEY_BYTES - 9].decode("utf-8", "ignore") + "~" + hashlib.sha1(raw).hexdigest()[:8]
    return name


def _main_files(key_cf: str) -> set[str]:
    return {key_cf + suffix for suffix in SAVE_SUFFIX.values()}


def collect_inputs(inputs: Iterable[Path], recursive: bool = False, output: Path | None = None,
                   notes: list[str] | None = None) -> list[Job]:
    """Expand files and folders into jobs with unique, deterministic output keys.

    Folder inputs keep their sub-folders (relative to the folder given) under ``--output``; files named
    explicitly use their stem. Folders are scanned for the extensions in :data:`IMAGE_EXTENSIONS`
    (case-insensitive), in sorted order; explicitly named files are taken whatever their extension.

    Inputs are never outputs: an output folder inside a scanned folder is left out of the scan; when the
    scanned folder is the output folder (or inside it), the outputs recorded there by earlier runs are left
    out (also when named explicitly, e.g. by a shell glob), and no output may land on an input file.

    Keys: the stem, made safe (:func:`_safe_component`). Names that differ only by extension get it appended
    (``a.png``, ``a.jpg`` -> ``a_png``, ``a_jpg``). Then, in input order, a key whose outputs would collide
    with an earlier key's outputs (``a_color.png`` is both the colour preview of ``a`` and the main output of
    an input named ``a_color``; the same name twice; names differing only in case) or land on an input file
    gets a counter (``a_color_2``); each such rename is said in the job's ``note`` and in ``notes``. The
    top-level folder names ``whole`` and ``patches`` are reserved for --save-whole and --save-patches, and
    sub-folders named like an output file (``x.png/``) would clash with one: such input sub-folders get a
    trailing underscore.
    """
    out_root = Path(output).resolve() if output is not None else None
    recorded = recorded_outputs(out_root) if out_root is not None else set()
    raw: list[tuple[Path, PurePosixPath, str | None]] = []
    seen: set[Path] = set()
    n_dropped = 0
    for inp in inputs:
        inp = Path(inp)
        if inp.is_dir():
            errors: list[tuple[Path, str]] = []
            # the whole output tree is left out only when it is not the scanned folder itself or above it
            exclude = out_root if out_root is not None and not _inside(inp, out_root) else None
            entries = sorted(_scan_folder(inp, recursive, exclude, errors), key=lambda e: e[1].as_posix())
            for p, rel in entries:
                r = p.resolve()
                if r in recorded:
                    n_dropped += 1
                elif r not in seen:
                    seen.add(r)
                    raw.append((p, rel, None))
            for p, msg in errors:
                raw.append((p, PurePosixPath(p.name or "input"), msg))
        elif inp.exists() or inp.is_symlink():
            r = inp.resolve()
            if r in recorded:
                n_dropped += 1
            elif r not in seen:
                seen.add(r)
                raw.append((inp, PurePosixPath(inp.name), None))
        else:
            raw.append((inp, PurePosixPath(inp.name or "input"), "no such file or directory"))
    if n_dropped and notes is not None:
        notes.append(f"{n_dropped} file(s) left out: outputs of an earlier run recorded in "
                     f"{out_root / RECORDS_DIR}")

    def base_key(rel: PurePosixPath) -> PurePosixPath:
        # a sub-folder named like an output file ("a.png/") would collide with the outputs of "a.jpg"
        dirs = [c + "_" if c.casefold().endswith(OUTPUT_EXTENSIONS) else c
                for c in (_safe_component(c) for c in rel.parent.parts)]
        parts = dirs + [_safe_component(rel.stem or rel.name)]
        if len(parts) > 1 and parts[0].casefold() in (WHOLE_DIR, PATCHES_DIR):
            parts[0] += "_"
        return PurePosixPath(*parts)

    keys = [base_key(rel) for _, rel, _ in raw]
    exts: dict[str, set[str]] = {}
    for k, (_, rel, _) in zip(keys, raw):
        exts.setdefault(k.as_posix().casefold(), set()).add(rel.suffix.lower())
    # names that clash across different extensions: add the extension
    keys = [k.with_name(f"{k.name}_{rel.suffix.lstrip('.').lower()}")
            if len(exts[k.as_posix().casefold()]) > 1 and rel.suffix else k
            for k, (_, rel, _) in zip(keys, raw)]

    # inputs that lie inside the output folder (casefolded, relative to it): no output may be written on them
    input_rel: set[str] = set()
    patch_owners: set[str] = set()
    if out_root is not None:
        for p, _, err in raw:
            try:
                rel = p.resolve().relative_to(out_root).as_posix().casefold()
            except (ValueError, OSError):
                continue
            input_rel.add(rel)
            m = re.fullmatch(rf"{PATCHES_DIR}/(.+)_\d{{4,}}\.png", rel)
            if m:
                patch_owners.add(m.group(1))
    taken_files: set[str] = set()

    def clash(key: str) -> str | None:
        # only the file names can clash (folders never end in .png/.npy, see base_key), so the counter on the
        # last component always ends the search
        kf = key.casefold()
        files = _main_files(kf)
        if files & taken_files:
            return "taken by another input's outputs"
        derived = files | {f"{WHOLE_DIR}/{kf}.png", f"{PATCHES_DIR}/{kf}.json", f"{RECORDS_DIR}/{kf}.json"}
        if derived & input_rel or kf in patch_owners:
            return "an output would overwrite an input file"
        return None

    jobs = []
    for k, (p, _, err) in zip(keys, raw):
        cand, n = k, 1
        why = first = clash(cand.as_posix())
        while why:
            n += 1
            cand = k.with_name(f"{k.name}_{n}")
            why = clash(cand.as_posix())
        kf = cand.as_posix().casefold()
        taken_files.update(_main_files(kf))
        note = f"output name '{cand.as_posix()}' ('{k.as_posix()}': {first})" if first else None
        if note and notes is not None:
            notes.append(f"{p}: {note}")
        jobs.append(Job(p, cand.as_posix(), err, note))
    return jobs


def output_paths(opts: RunOptions, job: Job) -> dict[str, Path]:
    """The requested single-file outputs of a job (the --save formats, :data:`SAVE_SUFFIX`) and ``whole``."""
    base = Path(opts.output) / job.key
    names = {f: base.with_name(base.name + suffix) for f, suffix in SAVE_SUFFIX.items()}
    out = {f: names[f] for f in opts.save}
    if opts.save_whole:
        out["whole"] = Path(opts.output) / WHOLE_DIR / (job.key + ".png")
    return out


def patches_index_path(opts: RunOptions, job: Job) -> Path:
    return Path(opts.output) / PATCHES_DIR / (job.key + ".json")


def patch_path(opts: RunOptions, job: Job, patch_id: int) -> Path:
    return Path(opts.output) / PATCHES_DIR / f"{job.key}_{patch_id:04d}.png"


def record_path(opts: RunOptions, job: Job) -> Path:
    return Path(opts.output) / RECORDS_DIR / (job.key + ".json")


def _jsonable(x):
    return json.loads(json.dumps(x))


def result_identity(config, *, weights_dir: Path, model: str = "midas_v21", merge_weights_dir: Path | None = None,
                    precision: str = "float32") -> dict:
    """What an image's outputs depend on besides the input: the options that change the result, the weights'
    identity (from each store's hrjax.json) and the hrjax version. ``max_batch`` and the device layout are
    left out: results do not depend on them."""
    from hrjax import __version__
    from hrjax.weights.store import WeightsError, read_info

    def weights(wd: Path, m: str):
        try:
            info = read_info(wd, m)
        except WeightsError:
            return None  # missing: the run stops at loading anyway
        return {"source_sha256": info.source_sha256, "arrays_sha256": getattr(info, "arrays_sha256", None)}

    return _jsonable({
        "hrjax": __version__, "mode": config.mode,
        "max_res": None if math.isinf(config.max_res) else float(config.max_res),
        "output_resolution": config.output_resolution, "receptive_field": config.receptive_field,
        "max_net_input": config.max_net_input, "precision": precision, "model": model,
        "weights": {model: weights(weights_dir, model),
                    "mergenet": weights(merge_weights_dir if merge_weights_dir is not None else weights_dir,
                                        "mergenet")},
    })


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _input_identity(path: Path) -> dict:
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(path)}


def _same_input(path: Path, recorded) -> bool:
    """Same size, and the same modification time or (a copy) the same sha256."""
    try:
        st = Path(path).stat()
        if st.st_size != recorded["size"]:
            return False
        return st.st_mtime_ns == recorded["mtime_ns"] or file_sha256(path) == recorded["sha256"]
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


# ---------------------------------------------------------------------------------------------------------
# processing


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


def _resize_cubic(depth: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2
    if depth.shape == tuple(hw):
        return depth
    return cv2.resize(np.asarray(depth, np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)


def whole_estimate(result) -> np.ndarray:
    """The whole-image double estimate W with the result's resize rule (SPEC 1.3 steps 4-5)."""
    if not result.plan.boost:
        return result.depth  # r0/r20 (or max_res < R): the result is W itself
    w = np.asarray(result.intermediates["whole_double"], np.float32)
    if result.config.output_resolution == "native":
        return w
    return _resize_cubic(w, tuple(result.plan.input_shape[:2]))


def patch_doubles(models, plan, config, chunk: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Each patch's 1024^2 double estimate (SPEC 5.4 step 3) as ``(patch_id, map)``, in merge order.

    ``boost`` keeps only the first patch's double estimate, so this recomputes them from the plan with the
    pipeline's own stages (same crops, same batched calls); ``chunk`` patches at a time bound the memory.
    """
    import jax.numpy as jnp

    from hrjax.pipeline import device
    from hrjax.pipeline.boost import Crop, single_estimates

    if not plan.boost or plan.n_patches == 0:
        return
    hs, ws = plan.mergein_shape
    crops = [Crop(int(y), int(x), int(min(y + hh, hs) - y), int(min(x + ww, ws) - x))
             for x, y, ww, hh in plan.rects_scaled]
    img_out = jnp.asarray(plan.img_out, jnp.float32)
    batcher = models.batcher(config.max_batch)
    step = chunk or 4 * batcher.max_batch
    for s in range(0, len(crops), step):
        part = crops[s:s + step]
        low = single_estimates(models, img_out, part, config.receptive_field, config, keep_at_crop=False)
        high = single_estimates(models, img_out, part, config.patch_netsize, config, keep_at_crop=False)
        pe = batcher.run(device.double_from_estimates, (low.at_merge, high.at_merge),
                         shared=(models.merge_graphdef, models.merge_state))[0]
        pe = np.asarray(pe, np.float32)
        for j in range(len(part)):
            yield int(plan.patch_ids[s + j]), pe[j]


Progress = Callable[[str, int, int], None]


def _check_inside(root: Path, path: Path) -> None:
    """Defence in depth behind the key rules: an output path must lie lexically inside ``--output``."""
    r, q = os.path.normpath(os.path.abspath(root)), os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([r, q]) != r or q == r:
        raise RuntimeError(f"refusing to write {path}: outside the output folder {root}")


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
        if job.error:
            raise io.ImageReadError(job.error)
        img = io.read_image(job.source, max_pixels=opts.max_pixels)
        rec.input_shape = [int(img.shape[0]), int(img.shape[1])]
        rec.timings["read"] = time.perf_counter() - t0
        result = boost(models, img, config, keep_intermediates=opts.save_whole, progress=progress, on_plan=on_plan)
        p = result.plan
        rec.R, rec.K, rec.n_patches = int(p.R), float(p.K), int(p.n_patches)
        rec.factor = float(p.factor) if p.factor is not None else None
        rec.timings.update({k: float(v) for k, v in result.timings.items()})
        paths = output_paths(opts, job)
        # checked before anything is written: a NaN map would be quantised to an all-black "done" image
        io.check_finite(result.depth, "depth map")
        whole = whole_estimate(result) if "whole" in paths else None
        if whole is not None:
            io.check_finite(whole, "whole-image estimate")
        planned = list(paths.values()) + ([patches_index_path(opts, job)] if opts.save_patches else [])
        for q in planned:
            _check_inside(opts.output, q)
        input_id = _input_identity(job.source) if identity is not None else None
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
                for i, (pid, m) in enumerate(patch_doubles(models, p, config)):
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
            # the main result last
            writers = {"npy": io.write_npy, "color": lambda path, d: io.write_color(path, d, opts.colormap),
                       "png16": io.write_png16, "png8": io.write_png8, "pfm": io.write_pfm}
            for f in ("npy", "pfm", "png8", "color", "png16"):
                if f in paths:
                    writers[f](paths[f], result.depth)
                    written.append(paths[f])
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


def select_device(platform: str | None):
    """Pick the JAX platform (before jax initialises its backends when possible); returns the device to use,
    or None for JAX's default. Raises UsageError when the platform is not available."""
    import jax

    if platform is None:
        return None
    # JAX reads jax_platforms when it initialises its backends: set before that, only ``platform`` is started
    # (no probing of the others); set later, it changes nothing and the device lookup below decides.
    jax.config.update("jax_platforms", platform)
    from hrjax.accelerators import device_unavailable  # names the extra that installs JAX's GPU/TPU build
    try:
        devices = jax.local_devices(backend=platform)  # this process's own (jax.devices() spans all processes)
    except RuntimeError as e:
        raise UsageError(device_unavailable(platform, str(e).splitlines()[0])) from None
    if not devices:
        raise UsageError(device_unavailable(platform))
    return devices[0]


def mesh_for(platform: str | None, local_devices: int = 0):
    """A 1-D data mesh over the first ``local_devices`` local devices of ``platform``, or None when that is a
    single device. 0 = every accelerator (GPU/TPU) device, but one CPU device: XLA's host "devices" are slices
    of the same cores, so sharding over them gains nothing unless asked for explicitly."""
    import jax

    from hrjax.pipeline.device import data_mesh

    devices = jax.local_devices(backend=platform)
    if local_devices == 0 and devices[0].platform == "cpu":
        local_devices = 1
    if local_devices > len(devices):
        raise UsageError(f"--local-devices {local_devices}: only {len(devices)} {devices[0].platform} "
                         f"device(s) here")
    devices = devices[:local_devices or len(devices)]
    return data_mesh(devices) if len(devices) > 1 else None


def summarize(records: list[ImageRecord]) -> dict[str, int]:
    c = {"done": 0, "skipped": 0, "failed": 0}
    for r in records:
        c[r.status] += 1
    return c


def fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m{s:02d}s"


def eta_text(left: float) -> str:
    """``ETA 1m05s``; once the estimate has run out (compilation, a busy machine) it says so instead of 0 s."""
    return f"ETA {fmt_seconds(left)}" if left > 0.5 else "over the estimate"


# ---------------------------------------------------------------------------------------------------------
# the folder run


class Reporter:
    """Human progress on a rich console (stderr); ``quiet`` keeps only the failures.

    On a terminal: a live bar for the run (images, ETA) and one for the running image (its stage, elapsed
    time, ETA). Without one (nohup, Slurm, ``| tee``): plain lines, one per stage with the elapsed time and the
    ETA, at most one every ``every`` seconds, and one per finished image. In both, before an image estimated
    at :data:`hrjax.progress.LONG_S` or more, one line with its plan and estimate, and for a long Final run
    the options that shorten it. ETAs come from :class:`hrjax.progress.Estimator` (the plan's pass counts
    times the pass times measured in this process)."""

    def __init__(self, console, total: int, quiet: bool = False, every: float = 5.0, clock=time.monotonic):
        from hrjax.progress import Estimator

        self.console, self.total, self.quiet = console, total, quiet
        self.live = console.is_terminal and not quiet
        self.every, self.clock = every, clock
        self.est = Estimator(clock=clock)
        self._progress = None
        self._task = self._image_task = None
        self._label = self._plain_label = ""
        self._i = 0
        self._walls: list[float] = []       # wall times of the images done in this run
        self._image_t0 = clock()
        self._estimate = math.nan           # seconds, the current image, at its start
        self._last_line, self._last_stage = -math.inf, None
        self._current = None                # (stage, done, total, seconds left, time) of the last call
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = None

    def __enter__(self):
        if not self.live and not self.quiet:
            # a stage can run for minutes between two progress calls (the whole-image passes make none):
            # a heartbeat line then, so a log never falls silent (see _tick)
            self._ticker = threading.Thread(target=self._beat, name="hrjax-progress", daemon=True)
            self._ticker.start()
        if self.live:
            from rich.progress import (BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn)
            from rich.text import Text
            clock = self.clock

            class Eta(ProgressColumn):
                """Counts down between progress calls (a stage can run for minutes without one)."""

                def render(self, task):
                    end = task.fields.get("end")
                    return Text("" if end is None else eta_text(end - clock()))

            # "count" is the run bar's images done; the image bar counts in estimated seconds, not shown
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.fields[count]}"), TimeElapsedColumn(), Eta(),
                                      console=self.console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("images", total=self.total, end=None, count=f"0/{self.total}")
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self._tick()

    def _tick(self) -> None:
        """Without a terminal, between progress calls: the current stage's line once it has run a few seconds
        unannounced, and again after each minute of silence."""
        with self._lock:
            if self._current is None:
                return
            stage, done, total, left, t = self._current
            now = self.clock()
            since = now - self._last_line
            if now - self._image_t0 >= self.every and (since >= 12 * self.every or
                                                        (stage != self._last_stage and since >= self.every)):
                self._line(stage, done, total, left - (now - t), now)  # the rule of stage(), between calls

    def _line(self, stage: str, done: int, total: int, left: float, now: float) -> None:
        self._last_line, self._last_stage = now, stage
        what = f"{stage} {done}/{total}" if total > 1 else stage
        eta = f", {eta_text(left)}" if math.isfinite(left) else ""
        run = self._run_eta(max(left, 0.0)) if self.total > 1 else math.nan
        run_eta = f" (run {eta_text(run)})" if math.isfinite(run) else ""
        self.message(f"{self._plain_label}: {what}, {fmt_seconds(now - self._image_t0)} elapsed{eta}{run_eta}")

    def __exit__(self, *exc):
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def message(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, soft_wrap=True, markup=False)

    def start(self, i: int, job: Job) -> None:
        from rich.markup import escape
        self._i = i
        self._plain_label = f"[{i + 1}/{self.total}] {job.key}"
        self._label = escape(self._plain_label)
        self._image_t0 = self.clock()
        self._estimate = math.nan
        self._last_stage = None
        self.est.costs = {}  # unknown until this image's plan
        if self._progress is not None:
            self._progress.update(self._task, end=None)
            if self._image_task is not None:
                self._progress.remove_task(self._image_task)
            self._image_task = self._progress.add_task(f"{self._label}: reading", total=None, end=None, count="")

    def plan(self, plan) -> None:
        """The image's plan is made (before any network pass): estimate it, and say so when it is long."""
        from hrjax import progress as pg
        self.est.start_image(plan)
        self._estimate = self.est.image_estimate()
        if self._estimate >= pg.LONG_S and not self.quiet:
            self.message(f"{self._plain_label}: " + pg.plan_line(plan, self._estimate, self.est.measured,
                                                                 fmt_seconds))
            if self._estimate >= pg.HINT_S:
                hint = pg.hint_line(plan, self.est.seconds(pg.WHOLE, self.est.costs[pg.WHOLE]), fmt_seconds)
                if hint:
                    self.message(hint)

    def _run_eta(self, image_left: float) -> float:
        """Seconds left in the run: this image's rest, then the images after it at the mean measured wall
        time of this run's images (this image's estimate before any is done)."""
        after = self.total - self._i - 1
        per_image = (sum(self._walls) / len(self._walls)) if self._walls else self._estimate
        if after == 0:
            return image_left
        return image_left + after * per_image

    def stage(self, stage: str, done: int, total: int) -> None:
        self.est.observe(stage, done, total)
        left = self.est.remaining(stage, done, total)
        elapsed = self.clock() - self._image_t0
        what = f"{stage} {done}/{total}" if total > 1 else stage
        if self._progress is not None:
            costs = self.est.costs
            total_ref = sum(costs.values()) if costs else None
            done_ref = None
            if total_ref and stage in costs:
                names = list(costs)
                done_ref = sum(costs[s] for s in names[:names.index(stage)]) + costs[stage] * done / max(total, 1)
            self._progress.update(self._image_task, description=f"{self._label}: {what}", total=total_ref,
                                  completed=done_ref or 0, end=self.clock() + left if math.isfinite(left) else None)
            run = self._run_eta(left)
            self._progress.update(self._task, end=self.clock() + run if math.isfinite(run) else None)
            return
        if self.quiet:
            return
        with self._lock:
            now = self.clock()
            self._current = (stage, done, total, left, now)
            if now - self._last_line < self.every or elapsed < self.every:
                return  # at most one line every few seconds in a log, none for a quick image
            if stage == self._last_stage and now - self._last_line < 12 * self.every:
                return  # a long stage: a reminder now and then, not a line per chunk
            self._line(stage, done, total, left, now)

    def finish(self, rec: ImageRecord) -> None:
        with self._lock:
            self._current = None
        if rec.status == "done":
            self._walls.append(rec.timings.get("wall", 0.0))
        if rec.status == "failed":
            from rich.markup import escape
            self.console.print(f"[red]failed[/] {self._label}: {escape(rec.error or '')}", highlight=False,
                               soft_wrap=True)
        elif not self.quiet:
            if rec.status == "skipped":
                self.console.print(f"[dim]skipped[/] {self._label} (outputs exist; --overwrite to redo)",
                                   highlight=False, soft_wrap=True)
            else:
                shape = "x".join(str(s) for s in (rec.input_shape or [])[::-1])
                self.console.print(f"[green]done[/] {self._label}: {shape}, R={rec.R}, K={rec.K:.3f}, "
                                   f"{rec.n_patches} patches, {fmt_seconds(rec.timings.get('wall', 0.0))}",
                                   highlight=False, soft_wrap=True)
        if self._progress is not None:
            self._progress.advance(self._task)
            self._progress.update(self._task, count=f"{self._i + 1}/{self.total}")
            if self._image_task is not None:
                self._progress.remove_task(self._image_task)
                self._image_task = None


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
        local_devices: int = 0, cache_dir: Path | None | bool = None, reporter: Reporter,
        emit: Callable[[ImageRecord], None] | None = None) -> list[ImageRecord]:
    """Process ``jobs`` in order; returns one record per job. Raises UsageError (before any image is
    processed) when the device or the weights are unusable. ``cache_dir``: None = the default persistent
    compilation cache, False = none, a path = that folder. ``local_devices``: shard patch batches over the
    first N local devices of the platform (0 = all accelerators, one CPU; see mesh_for). ``precision``: see
    hrjax.models.layers.PRECISIONS."""
    _quiet_opencv()
    records: list[ImageRecord] = []
    identity = result_identity(config, weights_dir=weights_dir, model=model, merge_weights_dir=merge_weights_dir,
                               precision=precision)
    pending = [opts.overwrite or not is_complete(opts, j, identity) for j in jobs]
    models = dev = None
    if any(pending):
        dev = select_device(platform)
        if cache_dir is not False:
            from hrjax import compile_cache
            compile_cache.enable(cache_dir if cache_dir is not None else None)
        from hrjax.pipeline.models import load_models
        from hrjax.weights.store import WeightsError
        mesh = mesh_for(platform, local_devices)
        try:
            models = load_models(weights_dir, base_model=model, merge_weights_dir=merge_weights_dir,
                                 precision=precision, mesh=mesh)
        except WeightsError as e:
            raise UsageError(str(e)) from None
        if mesh is not None:
            reporter.message(f"patch batches sharded over {mesh.devices.size} devices")

    import contextlib
    ctx = contextlib.nullcontext()
    if dev is not None:
        import jax
        ctx = jax.default_device(dev)
    with ctx:
        for i, (job, todo) in enumerate(zip(jobs, pending)):
            reporter.start(i, job)
            if todo:
                rec = process_image(models, job, config, opts, progress=reporter.stage, identity=identity,
                                    on_plan=reporter.plan)
            else:
                rec = ImageRecord(input=str(job.source), key=job.key, status="skipped",
                                  outputs=[str(p) for p in output_paths(opts, job).values()])
            records.append(rec)
            reporter.finish(rec)
            if emit is not None:
                emit(rec)
    return records
