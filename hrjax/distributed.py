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
import os
import sys
from dataclasses import dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessInfo:
    index: int = 0
    count: int = 1


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300, platform: str | None = None) -> ProcessInfo:
    """Join the multi-process runtime; with no arguments JAX detects TPU / Slurm / Open MPI environments.

    Must run before anything touches a JAX backend. ``platform`` ("cpu", "gpu", "tpu") restricts JAX to it.
    """
    import jax

    if platform is not None:
        jax.config.update("jax_platforms", platform)
    # Processes on the CPU backend need a cross-process collectives implementation for the final gather; the
    # setting only concerns the CPU client, so it is harmless on GPU/TPU hosts (and asking which backend is
    # the default here would initialise the backends too early).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {"initialization_timeout": timeout_s}
    if coordinator is not None:
        kwargs.update(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    jax.distributed.initialize(**kwargs)
    return ProcessInfo(jax.process_index(), jax.process_count())


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


def private_stdout():
    """A text stream on the process's real stdout, with file descriptor 1 pointed at stderr from now on.

    Native collectives log to fd 1 (gloo: "[Gloo] Rank 0 is connected to 1 peer ranks ..." when the CPU client
    connects), which would corrupt machine-readable output such as ``--json`` records; write those to the
    returned stream instead of ``sys.stdout``."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return stream
