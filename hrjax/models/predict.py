"""The jitted forward of a split base network, with its input checked on the host first (shared by the bases)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx


def check_image_batch(images: jax.Array, network: str, multiple: int = 32) -> None:
    """(N, H, W, 3) with H and W multiples of ``multiple`` (the encoder's total stride), else a ValueError."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{network} takes (N, H, W, 3) images, got shape {images.shape}")
    if images.shape[1] % multiple or images.shape[2] % multiple:
        raise ValueError(f"{network} input height and width must be multiples of {multiple}, "
                         f"got {images.shape[1:3]}")


def checked_predictor(graphdef: nnx.GraphDef, check: Callable[[jax.Array], None]):
    """``predict(state, images) -> depth``: ``check(images)``, then the jitted forward of the split model
    (compiled once per shape)."""

    @jax.jit
    def predict(state: nnx.State, images: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, state)(images.astype(jnp.float32))

    def checked(state: nnx.State, images: jax.Array) -> jax.Array:
        check(images)
        return predict(state, images)

    return checked
