"""The merge-net training data: folder layout, sample preprocessing and the deterministic batch order.

Layout (SPEC-TRAINING 2): ``<root>/<phase>/{outer,inner,gtfake}/*.png``, single-channel 16-bit PNGs of one
size (672^2 from ``make-merge-dataset``). Each folder's files are sorted by path and the three lists are
paired **by sorted position** like the reference; hrjax additionally checks that the three folders hold the
same relative names (the reference silently misaligns when one is missing) and raises otherwise.

One sample (SPEC-TRAINING 3): read each PNG as float32 / 65536; ``outer' = GF(guide=outer, src=gtfake)``,
``inner' = GF(guide=gtfake, src=inner)`` (r=64, eps=1e-8), the target gtfake unfiltered; each of the three
min-maxed to [0, 1] over the map, then ``x*2 - 1``. The result is (H, W, 3) float32 ``[outer', inner', T]``.
The bilinear upsampling to the network size happens on the device, inside the train step
(:func:`hrjax.train.step.resize_bilinear`).

Order (SPEC-TRAINING 9): epoch E (1-based) visits ``permutation(fold_in(data_key, E), N)`` in batches of
``batch`` samples; the last batch of an epoch may be partial (the reference keeps it, ``drop_last=False``)
and is padded to the full batch with zero-weight copies so that every step has one compiled shape.
The position in the data is therefore a pure function of the global step.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from hrjax.io import IMAGE_EXTENSIONS
from hrjax.train.guided_filter import guided_filter

FOLDERS = ("outer", "inner", "gtfake")


class DatasetError(ValueError):
    """The training folder is missing, empty or inconsistent."""


@dataclass(frozen=True)
class MergeDataset:
    root: Path                      # <data>/<phase>
    names: tuple[str, ...]          # relative paths, sorted, identical in the three folders
    size: tuple[int, int]           # (H, W) of every map

    def __len__(self) -> int:
        return len(self.names)

    def paths(self, i: int) -> tuple[Path, Path, Path]:
        return tuple(self.root / f / self.names[i] for f in FOLDERS)  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """A hash of the file list and map size (stored in checkpoints; resuming on other data is an error)."""
        h = hashlib.sha256(repr((self.names, self.size)).encode())
        return h.hexdigest()[:16]


def _walk(folder: Path) -> list[str]:
    out = []
    for dirpath, _, files in os.walk(folder):
        for f in files:
            if f.lower().endswith(IMAGE_EXTENSIONS):
                out.append(os.path.relpath(os.path.join(dirpath, f), folder))
    return sorted(out)


def read_depth16(path: Path) -> np.ndarray:
    """A single-channel 16-bit PNG as float32 / 65536 (the reference divides by 2^16, SPEC-TRAINING 3.1)."""
    import cv2

    a = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise DatasetError(f"cannot read {path}")
    if a.ndim == 3:
        raise DatasetError(f"{path} has {a.shape[2]} channels, expected a single-channel depth map")
    if a.dtype != np.uint16:
        raise DatasetError(f"{path} is {a.dtype}, expected a 16-bit PNG")
    return a.astype(np.float32) / np.float32(65536)


def open_dataset(data: Path, phase: str = "train", *, check_sizes: bool = True) -> MergeDataset:
    """List ``<data>/<phase>/{outer,inner,gtfake}`` (or ``<data>/{outer,...}`` if ``data`` is the phase folder)."""
    data = Path(data)
    root = data / phase if (data / phase / FOLDERS[0]).is_dir() else data
    lists = {}
    for f in FOLDERS:
        if not (root / f).is_dir():
            raise DatasetError(f"missing folder {root / f} (expected <data>/{phase}/{{outer,inner,gtfake}})")
        lists[f] = _walk(root / f)
    names = lists["outer"]
    if not names:
        raise DatasetError(f"no images in {root / 'outer'}")
    for f in FOLDERS[1:]:
        if lists[f] != names:
            only_o = sorted(set(names) - set(lists[f]))[:5]
            only_f = sorted(set(lists[f]) - set(names))[:5]
            raise DatasetError(f"{root / 'outer'} and {root / f} do not hold the same files "
                               f"(only in outer: {only_o}; only in {f}: {only_f}); samples pair by sorted "
                               "position, so every folder needs every name")
    first = read_depth16(root / "outer" / names[0])
    size = first.shape
    if check_sizes:
        for name in names:
            for f in FOLDERS:
                p = root / f / name
                if image_size(p) != size:
                    raise DatasetError(f"{p} is not a {size[1]}x{size[0]} map like {root / 'outer' / names[0]}")
    return MergeDataset(root, tuple(names), tuple(size))


def image_size(path: Path) -> tuple[int, int] | None:
    """(H, W) of an image: from the IHDR chunk for PNGs (no decoding), else by decoding it."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    import cv2
    a = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if a is None else a.shape[:2]


def normalize_to_pm1(x: np.ndarray) -> np.ndarray:
    """Min-max over the map to [0, 1], then ``x*2 - 1`` (float32). A constant map, which makes the reference
    divide 0/0 and train on NaN (SPEC-TRAINING 8), becomes all zeros here (as in ``mergenet.normalize_map``)."""
    x = np.asarray(x, np.float32)
    lo, hi = x.min(), x.max()
    if not hi > lo:
        return np.zeros_like(x)
    return ((x - lo) / (hi - lo)) * np.float32(2) - np.float32(1)


def preprocess(outer: np.ndarray, inner: np.ndarray, target: np.ndarray, *, radius: int = 64,
               eps: float = 1e-8, box_dtype=np.float32) -> np.ndarray:
    """SPEC-TRAINING 3 steps 2-3 on three maps in [0, 1): (H, W, 3) float32 ``[outer', inner', T]`` in [-1, 1]."""
    outer_f = guided_filter(outer, target, radius, eps, box_dtype)   # guide = outer, src = gtfake
    inner_f = guided_filter(target, inner, radius, eps, box_dtype)   # guide = gtfake, src = inner
    return np.stack([normalize_to_pm1(outer_f), normalize_to_pm1(inner_f), normalize_to_pm1(target)], axis=-1)


def load_sample(ds: MergeDataset, i: int, *, radius: int = 64, eps: float = 1e-8) -> np.ndarray:
    po, pi, pt = ds.paths(i)
    return preprocess(read_depth16(po), read_depth16(pi), read_depth16(pt), radius=radius, eps=eps)


# --- order ----------------------------------------------------------------------------------------------------

def steps_per_epoch(n: int, batch: int) -> int:
    return math.ceil(n / batch)


DATA_KEY_TAG = 3  # data_key = fold_in(PRNGKey(seed), 3); G and D init use tags 1 and 2


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of 1-based ``epoch``: ``permutation(fold_in(data_key, epoch), n)``."""
    import jax

    with jax.default_device(jax.devices("cpu")[0]):
        data_key = jax.random.fold_in(jax.random.PRNGKey(seed), DATA_KEY_TAG)
        return np.asarray(jax.random.permutation(jax.random.fold_in(data_key, epoch), n))


def batch_indices(order: np.ndarray, b: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``b`` of an epoch: (indices padded to ``batch`` by repeating the first, weights 1 real / 0 pad)."""
    idx = order[b * batch:(b + 1) * batch]
    k = len(idx)
    weights = np.zeros(batch, np.float32)
    weights[:k] = 1
    if k < batch:
        idx = np.concatenate([idx, np.repeat(idx[:1], batch - k)])
    return idx, weights


@dataclass(frozen=True)
class Batch:
    step: int                 # 0-based global step this batch is for
    epoch: int                # 1-based
    maps: np.ndarray          # (B, H, W, 3) float32 [outer', inner', T]
    weights: np.ndarray       # (B,) float32: 1 for real samples, 0 for padding
    indices: np.ndarray       # (B,) dataset indices


def iterate_batches(ds: MergeDataset, *, batch: int, seed: int, start_step: int, end_step: int,
                    radius: int = 64, eps: float = 1e-8, workers: int = 4, prefetch: int = 2) -> Iterator[Batch]:
    """Batches for global steps ``start_step .. end_step-1``, loaded by ``workers`` threads ahead of use.

    Deterministic: the content of step t depends only on (dataset, batch, seed, t).
    """
    n = len(ds)
    spe = steps_per_epoch(n, batch)
    orders: dict[int, np.ndarray] = {}

    def plan(step: int) -> tuple[int, np.ndarray, np.ndarray]:
        epoch = step // spe + 1
        if epoch not in orders:
            orders.clear()
            orders[epoch] = epoch_order(seed, epoch, n)
        idx, w = batch_indices(orders[epoch], step % spe, batch)
        return epoch, idx, w

    def load(idx: np.ndarray) -> np.ndarray:
        return np.stack([load_sample(ds, int(i), radius=radius, eps=eps) for i in idx])

    if workers <= 0:
        for step in range(start_step, end_step):
            epoch, idx, w = plan(step)
            yield Batch(step, epoch, load(idx), w, idx)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[tuple[int, int, np.ndarray, np.ndarray, list]] = []
        step = start_step

        def submit(s: int) -> None:
            epoch, idx, w = plan(s)
            futs = [pool.submit(load_sample, ds, int(i), radius=radius, eps=eps) for i in idx]
            pending.append((s, epoch, idx, w, futs))

        while step < end_step and len(pending) < prefetch + 1:
            submit(step)
            step += 1
        while pending:
            s, epoch, idx, w, futs = pending.pop(0)
            maps = np.stack([f.result() for f in futs])
            if step < end_step:
                submit(step)
                step += 1
            yield Batch(s, epoch, maps, w, idx)
