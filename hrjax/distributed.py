"""Many hosts: JAX's own multi-process runtime (``jax.distributed``) for folder runs on TPU pods and GPU clusters.

Every process runs the same command on the same input list; each takes a deterministic shard of it (sorted
inputs, round-robin by process index), writes its own outputs (skipping finished ones, so a re-launch resumes).
Images are independent; the only cross-process traffic goes through the key-value store of JAX's coordination
service (no collectives, so nothing blocks in native code):

- before any work the processes compare a hash of their input lists (:func:`agree_inputs`);
- a process that fails (usage error, exception, Ctrl-C) publishes the reason (:func:`report_failure`); every
  other process watches for it (:func:`start_watcher`: a thread polls every second and raises
  :class:`PeerFailed` in the main thread, which stops within the network call running) and exits non-zero
  naming the failed process;
- the per-process summaries are exchanged at the end (:func:`gather_json`), waiting only as long as no
  failure is published. A process killed outright (SIGKILL, out of memory) publishes nothing: JAX's heartbeat
  (``heartbeat_timeout_s``) then ends the others.

Within a process, patch batches are sharded over the local devices (``hrjax.pipeline.batching.data_mesh``).

On a TPU pod slice and under Slurm, ``jax.distributed.initialize()`` needs no arguments (JAX reads the
cluster environment); elsewhere pass the coordinator address, process count and process id.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessInfo:
    index: int = 0
    count: int = 1


class PeerFailed(BaseException):
    """Another process of the run failed. A BaseException, like KeyboardInterrupt: the per-image error isolation
    (``except Exception``) must not swallow it."""

    def __init__(self, rank: int, reason: str):
        self.rank, self.reason = rank, reason
        super().__init__(f"process {rank} failed: {reason}")


class InputsDiffer(RuntimeError):
    pass


_KV = "hrjax/"


def _client():
    from jax._src import distributed as jd
    return jd.global_state.client


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300, platform: str | None = None,
               heartbeat_timeout_s: int = 100, shutdown_timeout_s: int = 60) -> ProcessInfo:
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
    kwargs = {"initialization_timeout": timeout_s, "heartbeat_timeout_seconds": heartbeat_timeout_s,
              "shutdown_timeout_seconds": shutdown_timeout_s}
    if coordinator is not None:
        kwargs.update(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    jax.distributed.initialize(**kwargs)
    return ProcessInfo(jax.process_index(), jax.process_count())


def shard(items: Sequence[T], info: ProcessInfo) -> list[T]:
    """This process's share of ``items``: every ``count``-th item starting at ``index`` (deterministic, so a
    re-launch with the same inputs gives each process the same files again)."""
    return list(items[info.index::info.count])


def report_failure(info: ProcessInfo, reason: str) -> None:
    """Tell the other processes that this one failed (best effort: the coordinator may be gone)."""
    if info.count <= 1:
        return
    try:
        _client().key_value_set(f"{_KV}failed/{info.index}", reason[:4000] or "failed")
    except Exception:  # noqa: BLE001 - already failing; nothing more to do
        pass


def failures(info: ProcessInfo) -> dict[int, str]:
    """Failures published by the other processes, {rank: reason}. Losing the coordination service (process 0
    gone) counts as process 0's failure."""
    try:
        items = _client().key_value_dir_get(f"{_KV}failed/")
    except Exception as e:  # noqa: BLE001
        return {} if info.index == 0 else {0: f"lost contact with the coordinator ({str(e).splitlines()[0]})"}
    out = {}
    for key, value in items:
        rank = int(key.rsplit("/", 1)[-1])
        if rank != info.index:
            out[rank] = value
    return out


def _raise_first(found: dict[int, str]):
    rank = min(found)
    raise PeerFailed(rank, found[rank])


def exchange(info: ProcessInfo, name: str, value: str, poll_s: float = 1.0) -> list[str]:
    """Every process's ``value`` for ``name``, in process order. Waits for the slower processes as long as it
    takes, but raises :class:`PeerFailed` as soon as another process has published a failure."""
    if info.count == 1:
        return [value]
    client = _client()
    client.key_value_set(f"{_KV}{name}/{info.index}", value)
    out = []
    for rank in range(info.count):
        while True:
            # The value first, failures only while it is missing: a peer that has published its value and
            # then failed on the exchanged values (agree_inputs: every process raises InputsDiffer) must not
            # turn this process's own verdict into "peer failed" because its failure was seen first.
            try:
                out.append(client.blocking_key_value_get(f"{_KV}{name}/{rank}", int(poll_s * 1000)))
                break
            except Exception as e:  # noqa: BLE001 - DEADLINE_EXCEEDED: not there yet, look for failures
                if "DEADLINE_EXCEEDED" not in str(e):  # the service (hosted by process 0) is gone
                    raise PeerFailed(0, f"lost contact with the coordinator ({str(e).splitlines()[0]})") from None
            found = failures(info)
            if found:
                _raise_first(found)
    return out


def gather_json(record: dict, info: ProcessInfo) -> list[dict]:
    """Every process's ``record`` (a JSON-serialisable dict), in process order, on every process."""
    return [json.loads(v) for v in exchange(info, "summary", json.dumps(record))]


def inputs_digest(items: Sequence) -> str:
    return hashlib.sha256(json.dumps([str(i) for i in items]).encode()).hexdigest()


def agree_inputs(items: Sequence, info: ProcessInfo) -> None:
    """Compare the full input list (before sharding) across processes; raise InputsDiffer on every process
    when they differ (different arguments, files missing on a host, a folder changing under the run)."""
    digests = exchange(info, "inputs", f"{len(items)} {inputs_digest(items)}")
    if len(set(digests)) > 1:
        groups: dict[str, list[int]] = {}
        for rank, d in enumerate(digests):
            groups.setdefault(d, []).append(rank)
        raise InputsDiffer("the processes see different input lists: " + "; ".join(
            f"process(es) {', '.join(map(str, ranks))}: {d.split()[0]} inputs, hash {d.split()[1][:12]}"
            for d, ranks in groups.items()) + " (same arguments and the same files on every host?)")


class _Watcher:
    def __init__(self, info: ProcessInfo, poll_s: float):
        self.info, self.poll_s = info, poll_s
        self.found: dict[int, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="hrjax-peer-watcher", daemon=True)

    def _run(self):
        while not self.stop.wait(self.poll_s):
            found = failures(self.info)
            if found:
                self.found = found
                signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
                return


_watcher: _Watcher | None = None


def start_watcher(info: ProcessInfo, poll_s: float = 1.0) -> None:
    """Raise :class:`PeerFailed` in the main thread when another process publishes a failure. Call from the
    main thread (it installs a SIGUSR1 handler)."""
    global _watcher
    if info.count <= 1 or _watcher is not None:
        return
    w = _Watcher(info, poll_s)

    def handler(signum, frame):
        if w.found and _watcher is w:  # not once the run is over (stop_watcher)
            _raise_first(w.found)

    signal.signal(signal.SIGUSR1, handler)
    _watcher = w
    w.thread.start()


def stop_watcher() -> None:
    global _watcher
    if _watcher is not None:
        _watcher.stop.set()
        _watcher = None


def private_stdout():
    """A text stream on the process's real stdout, with file descriptor 1 pointed at stderr from now on.

    Native collectives log to fd 1 (gloo: "[Gloo] Rank 0 is connected to 1 peer ranks ..." when the CPU client
    connects), which would corrupt machine-readable output such as ``--json`` records; write those to the
    returned stream instead of ``sys.stdout``."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return stream
