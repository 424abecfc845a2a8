"""Training checkpoints (orbax) and the export of a trained generator to the hrjax weights store.

A checkpoint ``<out>/checkpoints/<step>/`` holds two items: ``state`` (the whole train state pytree: both
nets, both Adam states, the step counter) and ``meta`` (JSON: the configuration, the dataset fingerprint and
the step/epoch). The data position is the global step (the batch order is a pure function of it, see
:mod:`hrjax.train.data`), so restoring a checkpoint and continuing reproduces an uninterrupted run exactly.
Unlike the reference (weights only, SPEC-TRAINING 6), the optimizer moments are saved too.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from hrjax.train.step import TrainConfig
from hrjax.weights import catalog, store

FORMAT_VERSION = 1
# Fields that must match to resume: they change the parameters' meaning or the data order.
RESUME_KEYS = ("net", "net_size", "gf_radius", "gf_eps", "batch_size", "seed")


def config_to_json(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def manager(directory: Path, *, keep: int | None = 3):
    import orbax.checkpoint as ocp

    opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).resolve(), options=opts, item_names=("state", "meta"))


def save(mngr, step: int, state: dict, meta: dict) -> None:
    import orbax.checkpoint as ocp

    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
              force=True)
    mngr.wait_until_finished()


def read_meta(mngr, step: int) -> dict:
    import orbax.checkpoint as ocp

    return dict(mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])


def restore(mngr, step: int, abstract_state: dict) -> tuple[dict, dict]:
    import orbax.checkpoint as ocp

    r = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                   meta=ocp.args.JsonRestore()))
    return r["state"], dict(r["meta"])


def check_resumable(meta: dict, cfg: TrainConfig, fingerprint: str) -> list[str]:
    """Reasons the checkpoint cannot continue with ``cfg`` on this dataset (empty if it can)."""
    problems = []
    if meta.get("format") != FORMAT_VERSION:
        problems.append(f"checkpoint format {meta.get('format')} (this hrjax writes {FORMAT_VERSION})")
    saved = meta.get("config", {})
    now = config_to_json(cfg)
    for k in RESUME_KEYS:
        if saved.get(k) != now[k]:
            problems.append(f"{k}: checkpoint {saved.get(k)!r}, now {now[k]!r}")
    if meta.get("dataset") != fingerprint:
        problems.append("the dataset's file list differs from the one the checkpoint was trained on")
    return problems


# --- export ------------------------------------------------------------------------------------------------

def export_generator(g_params: dict, weights_dir: Path, name: str = "mergenet", *,
                     source: str = "hrjax train-merge", architecture: dict[str, int] | None = None) -> Path:
    """Write the generator ({PyTorch key: hrjax-layout array}, as trained) to ``<weights_dir>/<name>``.

    The store entry has exactly the keys and shapes of a converted official checkpoint (SPEC-TRAINING 7), so
    ``hrjax.weights.load.load_model(name, weights_dir)`` loads it, provided ``name`` is a model the catalog
    knows (``"mergenet"``: pass a separate ``weights_dir`` to keep the official weights apart).
    ``architecture``: the generator's builder arguments when they are not unet_1024's (``ngf``, ``num_downs``,
    ``input_size`` = the training net size), recorded in the store so that the loader builds that net.
    """
    flat = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in g_params.items()}
    h = hashlib.sha256()
    for k in sorted(flat):
        h.update(k.encode())
        h.update(flat[k].tobytes())
    info = store.WeightsInfo(model=name, source_name=source, source_sha256=h.hexdigest(),
                             converter_version=store.CONVERTER_VERSION, n_tensors=len(flat),
                             n_values=int(sum(v.size for v in flat.values())), created=store.now_iso(),
                             architecture=architecture)
    return store.save(Path(weights_dir), info, flat)


def loadable_name(name: str) -> bool:
    """Whether ``load_model(name)`` can build the model (the catalog must know the name)."""
    return name in catalog.MODELS
