"""The converted-weights store: ``<weights_dir>/<model>/`` holds an orbax checkpoint plus ``hrjax.json``.

The orbax tree is flat, ``{PyTorch key: array in hrjax layout}``, so a stored checkpoint can be read and
checked without building the model. Writes are atomic: everything goes to a temporary folder beside the
destination, which is renamed into place only when complete, so an interrupted conversion never leaves a
half-written model that later loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

# 2: hrjax.json records the source check and a digest of the stored arrays, which load verifies
CONVERTER_VERSION = 2
INFO_FILE = "hrjax.json"
PARAMS_DIR = "params"
ENV_WEIGHTS_DIR = "HRJAX_WEIGHTS_DIR"


class WeightsError(RuntimeError):
    """Weights are missing, corrupt or do not match the model."""


@dataclass(frozen=True)
class WeightsInfo:
    model: str
    source_name: str
    source_sha256: str
    converter_version: int
    n_tensors: int
    n_values: int
    created: str
    # "official": the source's sha256 is the catalogue's; "allow-unknown": it is not, converted on request
    # (fine-tuned checkpoints); "unchecked": written by another producer (e.g. train-merge's export)
    source_check: str = "unchecked"
    arrays_sha256: str | None = None  # arrays_digest() of the stored arrays, set by save()
    # keyword arguments of the model's builder when the stored net is not the catalogue's default architecture
    # (a merge net from train-merge: {"ngf", "num_downs", "input_size"}); None for converted official checkpoints
    architecture: dict[str, int] | None = None
    # {path under params/: bytes} of every file orbax wrote, set by save(): a store with a file cut short or gone
    # (an interrupted copy) is refused before orbax reads it. Orbax's reader, failing midway, leaves hundreds of
    # reads in flight that each print an "Event loop is closed" traceback around the error. None: written before
    # 2026-12-07, not checked (the arrays' digest still is).
    param_files: dict[str, int] | None = None


def default_weights_dir() -> Path:
    """``$HRJAX_WEIGHTS_DIR``, else ``weights/`` of the source checkout, else ``~/.cache/hrjax/weights``."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "hrjax").is_dir():
        return checkout / "weights"
    return Path.home() / ".cache" / "hrjax" / "weights"


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file, read in blocks (checkpoints are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_dir(weights_dir: Path, model: str) -> Path:
    return Path(weights_dir).expanduser().resolve() / model


def arrays_digest(flat: Mapping[str, np.ndarray]) -> str:
    """sha256 over the arrays in key order: each key, dtype, shape and raw bytes (one pass, no copy of
    contiguous arrays). Detects a store changed or corrupted after conversion."""
    h = hashlib.sha256()
    for key in sorted(flat):
        a = np.ascontiguousarray(flat[key])
        h.update(f"{key}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def file_sizes(folder: Path) -> dict[str, int]:
    """``{path relative to folder: size in bytes}`` of every file below ``folder``."""
    return {q.relative_to(folder).as_posix(): q.stat().st_size for q in sorted(folder.rglob("*")) if q.is_file()}


def store_damage(weights_dir: Path, info: WeightsInfo) -> list[str] | None:
    """What differs from the file sizes recorded at writing (:func:`file_sizes`) in the store ``info`` describes:
    recorded files missing or of another size (stat calls only, nothing read; files added since are not looked
    at). None where its hrjax.json records no file sizes (written before 2026-12-07)."""
    if info.param_files is None:
        return None
    folder = model_dir(weights_dir, info.model) / PARAMS_DIR
    found = []
    for name, size in info.param_files.items():
        q = folder / name
        actual = q.stat().st_size if q.is_file() else None
        if actual is None:
            found.append(f"{name} is missing")
        elif actual != size:
            found.append(f"{name} has {actual} bytes, {size} were written")
    return found


def damage_text(damage: list[str], shown: int = 3) -> str:
    """:func:`store_damage`'s findings in one line: the first ``shown``, and how many more."""
    more = f" (and {len(damage) - shown} more)" if len(damage) > shown else ""
    return "; ".join(damage[:shown]) + more


def save(weights_dir: Path, info: WeightsInfo, flat: Mapping[str, np.ndarray]) -> Path:
    """Store ``flat`` ({key: hrjax-layout array}) atomically as ``<weights_dir>/<info.model>``; hrjax.json gets
    the arrays' digest (:func:`arrays_digest`) and the size of every file written (:func:`file_sizes`)."""
    import orbax.checkpoint as ocp

    flat = {k: np.asarray(v) for k, v in flat.items()}
    info = dataclasses.replace(info, arrays_sha256=arrays_digest(flat))
    dest = model_dir(weights_dir, info.model)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{info.model}.partial-", dir=dest.parent))
    try:
        ckpt = ocp.StandardCheckpointer()
        ckpt.save(tmp / PARAMS_DIR, flat)
        ckpt.wait_until_finished()
        ckpt.close()
        info = dataclasses.replace(info, param_files=file_sizes(tmp / PARAMS_DIR))
        (tmp / INFO_FILE).write_text(json.dumps(asdict(info), indent=1) + "\n")
        old = None
        if dest.exists():
            old = dest.parent / f".{info.model}.old-{os.getpid()}"
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def read_info(weights_dir: Path, model: str) -> WeightsInfo:
    path = model_dir(weights_dir, model) / INFO_FILE
    if not path.is_file():
        raise WeightsError(f"no converted weights for '{model}' in {path.parent.parent}")
    try:
        raw = json.loads(path.read_text())
        return WeightsInfo(**raw)
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{path} is not a valid hrjax weights description: {e}") from e


def load_flat(weights_dir: Path, model: str) -> tuple[dict[str, np.ndarray], WeightsInfo]:
    """Read a stored checkpoint as {key: array}; any orbax/IO failure becomes a WeightsError."""
    import orbax.checkpoint as ocp

    info = read_info(weights_dir, model)
    if info.converter_version != CONVERTER_VERSION:
        raise WeightsError(f"weights for '{model}' were written by converter version {info.converter_version}, "
                           f"this hrjax needs {CONVERTER_VERSION}: convert the checkpoint again")
    if not info.arrays_sha256:
        raise WeightsError(f"{model_dir(weights_dir, model) / INFO_FILE} holds no digest of the stored arrays: "
                           f"convert the checkpoint again")
    path = model_dir(weights_dir, model) / PARAMS_DIR
    damage = store_damage(weights_dir, info)
    if damage:
        raise WeightsError(f"the stored weights in {path} are incomplete or damaged: {damage_text(damage)}; "
                           f"convert the checkpoint again")

    def counts_error(n_tensors, n_values):
        return WeightsError(f"the stored weights in {path} hold {n_tensors} tensors / {n_values} values, "
                            f"{INFO_FILE} says {info.n_tensors} / {info.n_values}: convert the checkpoint again")

    try:
        with ocp.StandardCheckpointer() as ckpt:
            # shapes from the metadata first: nothing is allocated for a store that does not match hrjax.json
            meta = ckpt.metadata(path)
            shapes = {k: tuple(v.shape) for k, v in getattr(meta, "item_metadata", meta).items()}
            n_values = sum(int(np.prod(s, dtype=np.int64)) for s in shapes.values())
            if len(shapes) != info.n_tensors or n_values != info.n_values:
                raise counts_error(len(shapes), n_values)
            tree = ckpt.restore(path)
    except WeightsError:
        raise
    except Exception as e:  # orbax/tensorstore raise many types for truncated or corrupt files
        raise WeightsError(f"the stored weights in {path} cannot be read (corrupt or truncated?): "
                           f"{type(e).__name__}: {e}") from e
    flat = {k: np.asarray(v) for k, v in tree.items()}
    if len(flat) != info.n_tensors or sum(v.size for v in flat.values()) != info.n_values:
        raise counts_error(len(flat), sum(v.size for v in flat.values()))
    if arrays_digest(flat) != info.arrays_sha256:
        raise WeightsError(f"the stored weights in {path} do not match the digest recorded in {INFO_FILE} at "
                           f"conversion (changed or corrupted since): convert the checkpoint again")
    return flat, info


def list_installed(weights_dir: Path) -> list[WeightsInfo]:
    root = Path(weights_dir).expanduser()
    if not root.is_dir():
        return []
    out = []
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and not sub.name.startswith(".") and (sub / INFO_FILE).is_file():
            try:
                out.append(read_info(root, sub.name))
            except WeightsError:
                continue
    return out


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
