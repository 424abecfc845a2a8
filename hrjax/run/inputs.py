"""The inputs of a folder run: files and folders expanded into jobs with unique, safe output keys."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from hrjax.io import IMAGE_EXTENSIONS
from hrjax.run.outputs import OUTPUT_EXTENSIONS, PATCHES_DIR, SAVE_SUFFIX, WHOLE_DIR

# Longest output name component (bytes): leaves room under the 255-byte name limit for "_color.png", ".json"
# and the temporary names of atomic writes.
MAX_KEY_BYTES = 200


@dataclass(frozen=True)
class Job:
    source: Path
    key: str                      # output name without extension, POSIX-relative to --output ("sub/name")
    error: str | None = None      # set for inputs that are known bad before reading (missing path, ...)
    note: str | None = None       # why the output name is not the plain stem (a clash was resolved)


def read_job_image(job: Job, max_pixels: int):
    """The image of ``job`` (:func:`hrjax.io.read_image`), or the ImageReadError its known error or the file
    gives (shared by boost's and predict's per-image work)."""
    from hrjax import io

    if job.error:
        raise io.ImageReadError(job.error)
    return io.read_image(job.source, max_pixels=max_pixels)


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
    from hrjax.run.records import RECORDS_DIR, recorded_outputs  # records name jobs: imported at call time

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
