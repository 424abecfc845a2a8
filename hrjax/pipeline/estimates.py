"""Single estimates of the base network (SPEC 3.2): crops of an image, or whole images, batched on the device.

The one place that turns image regions into base-network estimates; ``boost`` (whole image and patches),
``evaluate`` (the base network alone) and ``make-merge-dataset`` all call it with the base network as its
:class:`hrjax.bases.BaseNetwork` description and explicit (graphdef, state), the batcher and the reference's
input clamp. Every base-specific step (input size and resize, normalisation, min-max) comes from that
description.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hrjax.bases.base import BaseNetwork
from hrjax.models.mergenet import MERGE_SIZE
from hrjax.ops.crop import batched_crop_resize, crop_resize_bands, stack_crop_resize_bands
from hrjax.pipeline import canvas, kernels
from hrjax.pipeline.batching import Batcher, chunks
from hrjax.pipeline.patches import Crop, crops_of

__all__ = ["Crop", "SingleEstimates", "crops_of", "image_estimates", "single_estimates"]


@dataclass(frozen=True, eq=False)
class SingleEstimates:
    at_crop: list[np.ndarray | None]   # each (h, w): resized back to the crop size [and min-maxed] (SPEC 3.2)
    at_merge: jax.Array | None         # (N, 1024, 1024): the same, CUBIC-resized for the merge net (SPEC 3.1)
    #                                    (its input size: 1024 for the official one, Models.merge_size)
    net_shapes: list[tuple[int, int]]  # network input (rows, cols) per crop


def single_estimates(base: BaseNetwork, graphdef, state, image: jax.Array, crops: list[Crop], msize: int, *,
                     batcher: Batcher, max_net_input: int, keep_at_crop: bool = True, canvas_quantum: int = 64,
                     on_chunk: Callable[[int], None] | None = None,
                     input_size: Callable[[int, int, int], tuple[int, int]] | None = None,
                     merge_size: int = MERGE_SIZE) -> SingleEstimates:
    """Base-network single estimates (SPEC 3.2) of many crops of one image at one requested size.

    Batched per network input shape and built chunk by chunk (:func:`hrjax.pipeline.batching.chunks`), with one
    canvas per shape, so every chunk of a group has the same shapes (no recompilation).

    Args:
      base: which base network (input size, resize, normalisation, min-max).
      graphdef, state: its model, split.
      image: (H, W, 3) RGB in [0, 1] on the device.
      crops: the regions to estimate.
      msize: the requested network size; clamped to ``max_net_input`` first (the reference's GPU_threshold,
        SPEC 3.1, Q14).
      batcher: how many crops go through one call, and over which devices.
      max_net_input: the clamp above.
      keep_at_crop: also return each estimate at its crop size on the host (else ``at_crop`` holds None).
      canvas_quantum: crop sizes are rounded up to this on the device (1: exact shapes, for one-off crops).
      on_chunk: called after each chunk with the number of crops done so far (waits for the chunk).
      input_size: the network input (rows, cols) of an h x w crop at msize; default ``base.input_size`` (the
        reference's rule; :mod:`hrjax.pipeline.buckets` gives the bucketed one).
      merge_size: the merge net's input size ``at_merge`` is resized to (``Models.merge_size``).

    Returns:
      :class:`SingleEstimates` in the order of ``crops``.
    """
    msize = min(msize, max_net_input)
    H, W = image.shape[:2]
    net = [(input_size or base.input_size)(c.h, c.w, msize) for c in crops]
    at_crop: list[np.ndarray | None] = [None] * len(crops)
    at_merge: list[jax.Array | None] = [None] * len(crops)
    done = 0
    for shape in sorted(set(net)):
        idx = [i for i, s in enumerate(net) if s == shape]
        group = [crops[i] for i in idx]
        hc = canvas.canvas_size(max(c.h for c in group), canvas_quantum)
        wc = canvas.canvas_size(max(c.w for c in group), canvas_quantum)
        for part in chunks(len(group), batcher):
            chunk = [group[j] for j in part]
            # the reference resizes the float64 RGB crop, then float32 maps (SPEC 3.2 steps 1, 4)
            bands = stack_crop_resize_bands([c.rect for c in chunk], (H, W), shape, base.input_resize,
                                            cv_dtype=np.float64, channels=3)
            rgb = batcher.run(batched_crop_resize, bands, shared=(image,))[0]
            crop_maps, merge_maps = _estimates_of(base, graphdef, state, rgb, [(c.h, c.w) for c in chunk], (hc, wc),
                                                  batcher, to_merge=True, merge_size=merge_size)
            crop_host = np.asarray(crop_maps) if keep_at_crop else None
            for j, k in enumerate(part):
                i = idx[k]
                at_merge[i] = merge_maps[j]
                if keep_at_crop:
                    at_crop[i] = crop_host[j, :crops[i].h, :crops[i].w]
            done += len(chunk)
            if on_chunk is not None:
                # wait for the chunk, so the progress is true and the dispatch queue stays one chunk deep
                jax.block_until_ready(merge_maps)
                on_chunk(done)
    return SingleEstimates(at_crop, jnp.stack(at_merge), net)


def image_estimates(base: BaseNetwork, graphdef, state, images: np.ndarray, msize: int, *, batcher: Batcher,
                    max_net_input: int) -> list[np.ndarray]:
    """Base-network single estimates (SPEC 3.2) of whole images of one size, at their size (min-maxed for
    MiDaS, raw for LeReS: ``base.min_max``).

    Args:
      base: which base network (input size, resize, normalisation, min-max).
      graphdef, state: its model, split.
      images: (N, H, W, 3) RGB in [0, 1] (float64 on the host: the reference resizes the float64 image).
      msize: the requested network size, clamped to ``max_net_input`` (SPEC 3.1, Q14).
      batcher: how many images go through one call, and over which devices.
      max_net_input: the clamp above.

    Returns:
      N float32 (H, W) maps.
    """
    n, h, w = images.shape[:3]
    shape = base.input_size(h, w, min(msize, max_net_input))
    iy, wy, ix, wx = crop_resize_bands((0, 0, w, h), (h, w), shape, base.input_resize, cv_dtype=np.float64,
                                       channels=3)
    shared = tuple(jnp.asarray(a, jnp.float32 if a.dtype.kind == "f" else jnp.int32) for a in (iy, wy, ix, wx))
    out = []
    for part in chunks(n, batcher):
        rgb = batcher.run(kernels.resize_images, (jnp.asarray(images[part.start:part.stop], jnp.float32),),
                          shared=shared)[0]
        crop_maps = _estimates_of(base, graphdef, state, rgb, [(h, w)] * len(part), (h, w), batcher,
                                  to_merge=False)[0]
        out += [m for m in np.asarray(crop_maps, np.float32)]
    return out


def _estimates_of(base: BaseNetwork, graphdef, state, rgb: jax.Array, sizes: list[tuple[int, int]],
                  canvas_hw: tuple[int, int], batcher: Batcher, *, to_merge: bool,
                  merge_size: int = MERGE_SIZE) -> tuple[jax.Array, ...]:
    """The network on a chunk of resized inputs (N, nh, nw, 3), each output CUBIC-resized back to its region's
    size (on a canvas of ``canvas_hw``) and min-maxed if the base's reference code does; with ``to_merge`` also
    CUBIC-resized to the merge net's ``merge_size``^2, 1024^2 for the official one (SPEC 3.2 steps 2-5, 3.1 step 1)."""
    nh, nw = rgb.shape[1:3]
    hc, wc = canvas_hw
    base.check(rgb)
    # looked up at call time (not bound at import), so tests can observe the calls at the kernel
    network = functools.partial(kernels.base_on_rgb, normalisation=base.normalisation)
    depth = batcher.run(network, (rgb,), shared=(graphdef, state))[0]
    v_net = canvas.variant(np.float32, (nh, nw))
    by = canvas.stack_bands([canvas.band_into_canvas(nh, h, hc, v_net) for h, _ in sizes])
    bx = canvas.stack_bands([canvas.band_into_canvas(nw, w, wc, v_net) for _, w in sizes])
    valid = np.stack([(np.arange(hc)[:, None] < h) & (np.arange(wc)[None, :] < w) for h, w in sizes])
    if not to_merge:
        to_crop = functools.partial(kernels.estimate_to_crop_size, min_max=base.min_max)
        return tuple(batcher.run(to_crop, (*by, depth, *bx, valid)))
    v_crop = [canvas.variant(np.float32, hw) for hw in sizes]
    cy = canvas.stack_bands([canvas.band_from_canvas(h, merge_size, v) for (h, _), v in zip(sizes, v_crop)])
    cx = canvas.stack_bands([canvas.band_from_canvas(w, merge_size, v) for (_, w), v in zip(sizes, v_crop)])
    to_both = functools.partial(kernels.estimate_to_crop_and_merge_size, min_max=base.min_max)
    return tuple(batcher.run(to_both, (*by, depth, *bx, valid, *cy, *cx)))
