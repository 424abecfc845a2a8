"""Batching of the pipeline's device work: fixed-shape chunks, their size from device memory, the data mesh."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

# The mesh axis patch batches (and training batches) are sharded over.
DATA_AXIS = "batch"
# Patches go through the per-patch stages this many at a time (at least max_batch): the operators and canvases
# of a chunk are sized by the largest patch of its group (up to the whole target image, ~3000 x 4000), so
# building them for all of a photo's 65 patches at once took >10 GB of host memory.
PATCH_CHUNK = 8


@dataclass(frozen=True, eq=False)
class Batcher:
    """Runs a jitted function over the leading axis of its arguments in bounded, fixed-shape chunks.

    Chunks hold at most ``max_batch`` items; a short tail chunk is padded (repeating its first item) up to a
    power of two, so a stage compiles at most log2(max_batch) + 1 batch shapes. With a ``mesh`` (1-D, axis
    :data:`DATA_AXIS`) every chunk is sharded over the mesh's devices and the shared arguments (weights, the image)
    are replicated: data parallelism over local devices with the same results as one device.
    """

    max_batch: int = 4
    mesh: Mesh | None = None

    @property
    def n_devices(self) -> int:
        return 1 if self.mesh is None else int(self.mesh.devices.size)

    def chunk_size(self, k: int) -> int:
        p = 1
        while p < k:
            p *= 2
        p = min(p, max(self.max_batch, k))
        return -(-p // self.n_devices) * self.n_devices  # a multiple of the device count

    def _put(self, x, spec):
        if self.mesh is None or isinstance(x, nnx.GraphDef):
            return x
        return jax.device_put(x, NamedSharding(self.mesh, spec))

    def run(self, fn, arrays: tuple, *, shared: tuple = ()) -> list:
        """``fn(*shared, *chunk)`` over chunks of ``arrays``; returns each output concatenated over all items.

        A chunk may be the caller's array itself (a slice of all of it is the array), so when ``fn`` donates an
        argument, the caller gives that array up."""
        shared = tuple(self._put(a, P()) for a in shared)
        n = int(arrays[0].shape[0])
        outs, start = [], 0
        while start < n:
            k = min(n - start, self.max_batch)
            p = self.chunk_size(k)
            chunk = []
            for a in arrays:
                c = jnp.asarray(a[start:start + k])
                if p > k:
                    c = jnp.concatenate([c, jnp.repeat(c[:1], p - k, axis=0)])
                chunk.append(self._put(c, P(DATA_AXIS)))
            res = fn(*shared, *chunk)
            res = res if isinstance(res, tuple) else (res,)
            outs.append([r[:k] for r in res])
            start += k
        return [jnp.concatenate([o[i] for o in outs]) if len(outs) > 1 else outs[0][i] for i in range(len(outs[0]))]


# Device memory one more item of the largest batched stage needs: a 768^2 patch through MiDaS in float32 takes
# 0.35 GiB of XLA temp memory per item (memory analysis of batch 1, 2, 4: 0.35 / 0.70 / 1.41 GiB); the merge net
# at 1024^2 needs ~0.25 GiB per item. Rounded up for the other buffers of a stage.
BYTES_PER_ITEM = 0.4 * 2 ** 30
WEIGHTS_RESERVE = 2 ** 30  # both networks' weights (0.4 + 0.2 GiB) plus the image-level buffers
# On CPU cores batching costs time: MiDaS 768^2 takes 5.4 s per item at batch 1, 5.7 at batch 2 and 6.8 at
# batch 4 on the 2-core development machine (cache pressure), and every batch size is another compilation.
CPU_MAX_BATCH = 1
MAX_AUTO_BATCH = 32


def auto_max_batch(devices, bytes_per_item: float = BYTES_PER_ITEM) -> int:
    """A power-of-two batch per device (times the device count) whose activations fit in half of each device's
    memory after the weights. Uses the memory limit, not the momentary use, so every call of a run gets the
    same answer (no recompilation). Devices that do not report a limit (CPU) get ``CPU_MAX_BATCH``."""
    per_device = []
    for d in devices:
        stats = d.memory_stats() if d.platform != "cpu" else None
        if not stats or "bytes_limit" not in stats:
            return CPU_MAX_BATCH * len(devices)
        per_device.append(max(1, int(0.5 * (stats["bytes_limit"] - WEIGHTS_RESERVE) // bytes_per_item)))
    n = min(min(per_device), MAX_AUTO_BATCH)
    return (1 << (n.bit_length() - 1)) * len(devices)


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh (axis :data:`DATA_AXIS`) over ``devices``.

    Args:
      devices: the devices, in order (default: all local devices).

    Returns:
      The mesh; the pipeline's :class:`Batcher` and the training step shard their batches over it.
    """
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def chunks(n: int, batcher: Batcher) -> list[range]:
    """``range(n)`` in pieces of at least :data:`PATCH_CHUNK` (and at least one batch) items."""
    step = max(PATCH_CHUNK, batcher.max_batch)
    return [range(s, min(s + step, n)) for s in range(0, n, step)]
