"""The PyTorch state_dict key <-> hrjax parameter mapping, derived from the module tree.

hrjax modules mirror the PyTorch attribute paths (see ``hrjax.models.layers``), so the checkpoint key of a
variable is its NNX path joined with dots. The table built here is explicit and complete: one row per
variable, with the PyTorch shape it expects and the layout transform. Loading is strict: anything missing,
unexpected or mis-shaped is reported by key, all at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import jax
import numpy as np
from flax import nnx

# Entries PyTorch writes that carry no information for inference (BatchNorm's update counter).
IGNORED_SUFFIXES = ("num_batches_tracked",)


@dataclass(frozen=True)
class Layout:
    """How a PyTorch tensor becomes an hrjax one: ``flip(transpose(a, perm), flip_axes)``."""

    perm: tuple[int, ...]
    flip_axes: tuple[int, ...] = ()

    def to_hrjax(self, a: np.ndarray) -> np.ndarray:
        if a.ndim != len(self.perm):
            return a  # wrong rank: left as is so the shape check reports it
        b = a.transpose(self.perm)
        return np.flip(b, self.flip_axes) if self.flip_axes else b

    def torch_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        out = [0] * len(shape)
        for dst, src in enumerate(self.perm):
            out[src] = shape[dst]
        return tuple(out)


@dataclass(frozen=True)
class KeyRow:
    key: str                      # PyTorch state_dict key, e.g. "pretrained.layer1.0.weight"
    path: tuple                   # NNX state path, e.g. ("pretrained", "layer1", 0, "weight")
    shape: tuple[int, ...]        # hrjax shape (after the layout transform)
    layout: Layout | None

    @property
    def torch_shape(self) -> tuple[int, ...]:
        return self.layout.torch_shape(self.shape) if self.layout else self.shape

    def to_hrjax(self, a: np.ndarray) -> np.ndarray:
        return self.layout.to_hrjax(a) if self.layout else a


def key_table(model: nnx.Module) -> list[KeyRow]:
    """One row per variable of ``model``, in traversal order (``model`` may be abstract, from nnx.eval_shape)."""
    rows = []
    for path, node in nnx.iter_graph(model):
        if not isinstance(node, nnx.Module):
            continue
        layout = getattr(type(node), "torch_layout", {})
        for name, value in vars(node).items():
            if isinstance(value, nnx.Variable):
                full = tuple(path) + (name,)
                rows.append(KeyRow(".".join(str(p) for p in full), full, tuple(value.get_value().shape),
                                   layout.get(name)))
    return rows


class CheckpointMismatch(ValueError):
    """A checkpoint does not match the model; the message lists every offending key."""

    def __init__(self, what: str, missing=(), unexpected=(), misshaped=()):
        self.missing, self.unexpected, self.misshaped = list(missing), list(unexpected), list(misshaped)
        lines = [f"{what} does not match the model:"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): " + ", ".join(self.missing))
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): " + ", ".join(self.unexpected))
        if self.misshaped:
            lines.append(f"  mis-shaped keys ({len(self.misshaped)}): " + ", ".join(
                f"{k} (got {tuple(got)}, expected {tuple(exp)})" for k, got, exp in self.misshaped))
        super().__init__("\n".join(lines))


def match_state_dict(rows: list[KeyRow], tensors: Mapping[str, np.ndarray], *, what: str,
                     from_torch: bool) -> dict[str, np.ndarray]:
    """Check ``tensors`` against ``rows`` strictly and return {key: float32 array in hrjax layout}.

    ``from_torch``: tensors are in PyTorch layout (apply each row's transform); otherwise already hrjax layout.
    """
    wanted = {r.key: r for r in rows}
    present = {k for k in tensors if not k.endswith(IGNORED_SUFFIXES)}
    missing = [k for k in wanted if k not in present]
    unexpected = sorted(present - wanted.keys())
    out, misshaped = {}, []
    for key, row in wanted.items():
        if key not in tensors:
            continue
        a = np.asarray(tensors[key])
        expected = row.torch_shape if from_torch else row.shape
        if tuple(a.shape) != expected:
            misshaped.append((key, a.shape, expected))
            continue
        b = row.to_hrjax(a) if from_torch else a
        if not np.issubdtype(b.dtype, np.floating):
            misshaped.append((key, f"dtype {b.dtype}", "a floating dtype"))
            continue
        out[key] = np.ascontiguousarray(b, dtype=np.float32)
    if missing or unexpected or misshaped:
        raise CheckpointMismatch(what, missing, unexpected, misshaped)
    return out


def fill_state(model: nnx.Module, flat: Mapping[str, np.ndarray]) -> nnx.State:
    """Split ``model`` (concrete or abstract) and return its state with every variable replaced from ``flat``
    (already matched), as arrays on JAX's default device.

    On the device, not as numpy: a jitted call copies numpy arguments to the device anew each time, and as JAX
    dispatches asynchronously, every queued MiDaS pass held its own 0.4 GB copy of the weights (measured: eight
    queued patch passes, +3 GB of host memory on CPU; a full host-to-device upload per pass on a GPU)."""
    rows = key_table(model)
    _, state = nnx.split(model)
    flat_state = nnx.to_flat_state(state)
    by_path = {tuple(p): k for k, p in ((r.key, r.path) for r in rows)}
    new = []
    for path, var in flat_state:
        key = by_path[tuple(path)]
        new.append((path, var.replace(jax.device_put(np.asarray(flat[key])))))
    return nnx.from_flat_state(new)
