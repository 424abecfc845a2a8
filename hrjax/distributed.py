"""Many hosts: JAX's own multi-process runtime (``jax.distributed``) for folder runs on TPU pods and GPU clusters.

Every process runs the same command on the same input list; each takes a deterministic shard of it (sorted
inputs, round-robin by process index), writes its own outputs (skipping existing ones, so a re-launch resumes),
and the per-process summaries are gathered at the end with ``multihost_utils.process_allgather``. Images are
independent, so no other cross-process communication is needed; within a process, patch batches are sharded
over the local devices (``hrjax.pipeline.device.data_mesh``).

On a TPU pod slice and under Slurm, ``jax.distributed.initialize()`` needs no arguments (JAX reads the
cluster environment); elsewhere pass the coordinator address, process count and process id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessInfo:
    index: int = 0
    count: int = 1


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300) -> ProcessInfo:
    """Join the multi-process runtime; with no arguments JAX detects TPU / Slurm / Open MPI environments."""
    import jax

    if jax.default_backend() == "cpu" or _platforms_cpu():
        # CPU processes need a collectives implementation for the final gather.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {"initialization_timeout": timeout_s}
    if coordinator is not None:
        kwargs.update(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    jax.distributed.initialize(**kwargs)
    return ProcessInfo(jax.process_index(), jax.process_count())


def _platforms_cpu() -> bool:
    import os
    return os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu"


def shard(items: Sequence[T], info: ProcessInfo) -> list[T]:
    """This process's share of ``items``: every ``count``-th item starting at ``index`` (deterministic, so a
    re-launch with the same inputs gives each process the same files again)."""
    return list(items[info.index::info.count])


def gather_json(record: dict, info: ProcessInfo) -> list[dict]:
    """Every process's ``record`` (a JSON-serialisable dict), in process order, on every process."""
    if info.count == 1:
        return [record]
    import numpy as np
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(record).encode(), np.uint8)
    size = multihost_utils.process_allgather(np.array([data.size], np.int64))
    buf = np.zeros(int(np.max(size)), np.uint8)
    buf[:data.size] = data
    allbuf = multihost_utils.process_allgather(buf)
    return [json.loads(bytes(allbuf[i, :int(size[i, 0])]).decode()) for i in range(info.count)]


def shutdown() -> None:
    import jax
    jax.distributed.shutdown()
