"""The training loop: data -> jitted step -> logs, checkpoints, export (SPEC-TRAINING 6, 9)."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from hrjax.train import checkpoint as ckpt
from hrjax.train.data import iterate_batches, open_dataset, steps_per_epoch
from hrjax.train.step import TrainConfig, Trainer

LOG_FILE = "train_log.jsonl"
CONFIG_FILE = "train_config.json"
CHECKPOINT_DIR = "checkpoints"
METRICS = ("G_GAN", "G_L1", "D_real", "D_fake")

# progress(step_done, total_steps, logged_record_or_None)
Progress = Callable[[int, int, "dict | None"], None]


class TrainError(RuntimeError):
    pass


@dataclass
class TrainResult:
    state: dict                      # the final train state (device arrays)
    step: int                        # global steps done
    total_steps: int
    steps_per_epoch: int
    resumed_from: int | None
    exported: Path | None
    log: list[dict] = field(default_factory=list)   # the records written this run


@functools.lru_cache(maxsize=4)
def _trainer(cfg: TrainConfig, spe: int, devices: tuple | None) -> Trainer:
    """One Trainer (and so one compiled step) per configuration: a resumed run in the same process reuses it."""
    return Trainer(cfg, spe, devices)


def _truncate_log(path: Path, step: int) -> None:
    """Drop records after ``step`` (written by a run that went further than its last checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            continue
    path.write_text("".join(line + "\n" for line in keep))


def train(data: Path, out: Path, cfg: TrainConfig = TrainConfig(), *, resume: bool = False,
          save_every: int = 2000, keep: int | None = 3, log_every: int = 100, workers: int = 4,
          max_steps: int | None = None, export_dir: Path | None = None, export_name: str = "mergenet",
          export: bool = True, devices=None, progress: Progress | None = None,
          phase: str = "train") -> TrainResult:
    """Train the merge net on ``<data>/<phase>/{outer,inner,gtfake}`` into ``out``.

    - ``out/checkpoints/<step>``: orbax checkpoints every ``save_every`` steps and at the end (the ``keep``
      most recent are kept); ``resume=True`` continues from the latest one, bitwise as if uninterrupted.
    - ``out/train_log.jsonl``: one JSON record every ``log_every`` steps with the **mean** of each loss over
      the steps since the previous record (G_GAN, G_L1 (already x1000), D_real, D_fake), the G lr, the epoch
      and the throughput.
    - at the end, the generator is exported to ``<export_dir or out/weights>/<export_name>``.

    ``max_steps`` stops early at that global step (the schedule still spans ``cfg.epochs``); useful to
    split a run. Training steps run data-parallel over ``devices`` (default: all local devices).
    """
    out = Path(out)
    ds = open_dataset(Path(data), phase)
    spe = steps_per_epoch(len(ds), cfg.batch_size)
    total = cfg.epochs * spe
    stop = total if max_steps is None else min(int(max_steps), total)
    fingerprint = ds.fingerprint()

    out.mkdir(parents=True, exist_ok=True)
    mngr = ckpt.manager(out / CHECKPOINT_DIR, keep=keep)
    trainer = _trainer(cfg, spe, None if devices is None else tuple(devices))
    latest = mngr.latest_step()
    resumed_from = None
    if latest is not None and not resume:
        raise TrainError(f"{out / CHECKPOINT_DIR} already holds checkpoints (latest step {latest}): pass resume "
                         "to continue, or choose another output folder")
    if resume and latest is not None:
        meta = ckpt.read_meta(mngr, latest)
        problems = ckpt.check_resumable(meta, cfg, fingerprint)
        if problems:
            raise TrainError("cannot resume from " f"{out / CHECKPOINT_DIR / str(latest)}:\n  " + "\n  ".join(problems))
        state, _ = ckpt.restore(mngr, latest, trainer.abstract_state())
        start = int(jax.device_get(state["step"]))
        resumed_from = start
        _truncate_log(out / LOG_FILE, start)
    else:
        state = trainer.init_state()
        start = 0
        (out / LOG_FILE).write_text("")
    (out / CONFIG_FILE).write_text(json.dumps({"config": ckpt.config_to_json(cfg), "data": str(Path(data).resolve()),
                                               "n_samples": len(ds), "steps_per_epoch": spe,
                                               "total_steps": total}, indent=1) + "\n")

    def meta_for(step: int) -> dict:
        return {"format": ckpt.FORMAT_VERSION, "step": step, "epoch": step // spe, "steps_per_epoch": spe,
                "config": ckpt.config_to_json(cfg), "dataset": fingerprint, "n_samples": len(ds)}

    report = progress or (lambda *_: None)
    records: list[dict] = []
    pending: list[dict] = []
    last_saved = start if resumed_from is not None else None
    step = start
    t_log = time.perf_counter()
    report(step, stop, None)
    try:
        with (out / LOG_FILE).open("a") as log:
            for b in iterate_batches(ds, batch=cfg.batch_size, seed=cfg.seed, start_step=start, end_step=stop,
                                     radius=cfg.gf_radius, eps=cfg.gf_eps, workers=workers):
                maps, w = trainer.put_batch(b.maps, b.weights)
                state, metrics = trainer.step(state, maps, w)
                pending.append(metrics)
                step = b.step + 1
                rec = None
                if step % log_every == 0 or step == stop:
                    host = jax.device_get(pending)
                    now = time.perf_counter()
                    rec = {"step": step, "epoch": b.epoch, "lr_g": float(host[-1]["lr_g"]),
                           **{m: float(np.mean([h[m] for h in host])) for m in METRICS},
                           "steps": len(host), "sec_per_step": (now - t_log) / len(host)}
                    t_log = now
                    pending = []
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    records.append(rec)
                if save_every and step % save_every == 0:
                    ckpt.save(mngr, step, state, meta_for(step))
                    last_saved = step
                report(step, stop, rec)
    except KeyboardInterrupt:
        # Save where we are; if the interrupt hit inside the step call the old state was donated and may be
        # gone, in which case the last regular checkpoint stands.
        try:
            done = int(jax.device_get(state["step"]))
            if done != last_saved:
                ckpt.save(mngr, done, state, meta_for(done))
        except Exception:  # noqa: BLE001 - never mask the interrupt
            pass
        mngr.close()
        raise
    if step != last_saved:
        ckpt.save(mngr, step, state, meta_for(step))
    mngr.close()
    exported = None
    if export:
        arch = {"ngf": cfg.net.ngf, "num_downs": cfg.net.num_downs, "input_size": cfg.net_size}
        exported = ckpt.export_generator(jax.device_get(state["g"]), export_dir or out / "weights", export_name,
                                         source=f"hrjax train-merge {out.resolve()} step {step}", architecture=arch)
    return TrainResult(state, step, total, spe, resumed_from, exported, records)
