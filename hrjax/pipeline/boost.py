"""``boost``: the whole method of the paper for one image (SPEC 1.3), as host planning + batched device work.

Host (numpy) decides: resolution search, target size, patch rects (``patches.plan``). The device does every
network pass and resize, batched across patches: thanks to quirk Q5 (merge inputs come from the frozen base
estimate) all patch work is independent, so the stages run as

  whole-image low + high single estimates -> whole merge -> all patch low passes -> all patch high passes
  -> all patch double-estimate merges -> all base-crop merges + alignment -> ordered blend.

The ordered blend (SPEC 5.4 step 9) is a host loop over the patches in merge order: each step touches only
its patch's pixels (O(sum of patch areas)), needs no compilation, and its float64 arithmetic matches the
reference's; a device ``lax.scan`` would have to carry and rewrite the whole canvas at every step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hrjax.host_memory import FreeMemoryReleaser
from hrjax.ops.crop import (batched_crop_resize, batched_window_resize, stack_crop_resize_matrices,
                            stack_window_resize_matrices, window_size)
from hrjax.ops.mask import patch_mask
from hrjax.pipeline import device
from hrjax.pipeline.config import BoostConfig
from hrjax.pipeline.image import to_rgb_float64
from hrjax.pipeline.midas_input import midas_input_size
from hrjax.pipeline.models import Models
from hrjax.pipeline.patches import Plan, plan as make_plan

Progress = Callable[[str, int, int], None]  # (stage, done, total)
# The progress stages of a Final run after "search" and "whole image" (each reported 0/1 then 1/1): the
# per-patch stages, each reported as (stage, patches done, patches) chunk by chunk.
STAGES = ("patch low passes", "patch high passes", "patch double merges", "patch merges + blend")


@dataclass(frozen=True)
class Crop:
    """Rows y..y+h-1, cols x..x+w-1 of an image (already clipped to it, like NumPy slicing)."""

    y: int
    x: int
    h: int
    w: int

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """``[x, y, w, h]``, the reference's rect order."""
        return self.x, self.y, self.w, self.h


@dataclass(frozen=True, eq=False)
class SingleEstimates:
    at_crop: list[np.ndarray]      # each (h, w): resized back to the crop size and min-maxed (SPEC 3.2)
    at_merge: jax.Array            # (N, 1024, 1024): the same, CUBIC-resized for the merge net (SPEC 3.1)
    net_shapes: list[tuple[int, int]]  # network input (rows, cols) per crop


@dataclass(eq=False)
class BoostResult:
    depth: np.ndarray                              # (H, W) float32 relative inverse depth, ~[0, 1], not rescaled
    plan: Plan
    config: BoostConfig
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)
    midas_calls: list[tuple[int, int, int]] = field(default_factory=list)   # (rows, cols, msize), reference order
    net_shapes: list[tuple[int, int]] = field(default_factory=list)         # MiDaS input (rows, cols), same order
    merge_calls: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def call_log(self) -> dict[str, np.ndarray]:
        """The reference's call log (golden keys ``midas_call_shapes``, ``merge_call_shapes``, ``single_calls``):
        the passes the reference would make one at a time, in its order; hrjax runs them batched."""
        return {"midas_call_shapes": np.array([(1, 3, a, b) for a, b in self.net_shapes], np.int64).reshape(-1, 4),
                "merge_call_shapes": np.array([(1, 2, 1024, 1024)] * self.merge_calls, np.int64).reshape(-1, 4),
                "single_calls": np.array(self.midas_calls, np.int64).reshape(-1, 3)}


# Patches go through the per-patch stages this many at a time (at least max_batch): the operators and canvases
# of a chunk are sized by the largest patch of its group (up to the whole target image, ~3000 x 4000), so
# building them for all of a photo's 65 patches at once took >10 GB of host memory.
PATCH_CHUNK = 8
# Free heap pages go back to the OS this often during a run (hrjax.host_memory): XLA:CPU's buffer churn
# fragments glibc's heap. Every 0.5 s cost no measurable time either (the machine's noise is ~10 %).
RELEASE_INTERVAL_S = 2.0


def _chunks(n: int, batcher) -> list[range]:
    step = max(PATCH_CHUNK, batcher.max_batch)
    return [range(s, min(s + step, n)) for s in range(0, n, step)]


def single_estimates(models: Models, image: jax.Array, crops: list[Crop], msize: int, cfg: BoostConfig,
                     *, keep_at_crop: bool = True, canvas_quantum: int = 64,
                     on_chunk: Callable[[int], None] | None = None) -> SingleEstimates:
    """MiDaS single estimates (SPEC 3.2) of many crops of ``image`` (H, W, 3) at one requested size, batched
    per network input shape (and built chunk by chunk, see PATCH_CHUNK). ``on_chunk(k)`` is called after each
    chunk with the number of crops done so far."""
    msize = min(msize, cfg.max_net_input)  # single() clamps to GPU_threshold first (SPEC 3.1, Q14)
    H, W = image.shape[:2]
    net = [midas_input_size(c.h, c.w, msize) for c in crops]
    at_crop: list[np.ndarray | None] = [None] * len(crops)
    at_merge: list[jax.Array | None] = [None] * len(crops)
    batcher = models.batcher(cfg.max_batch)
    done = 0
    for shape in sorted(set(net)):
        idx = [i for i, s in enumerate(net) if s == shape]
        nh, nw = shape
        group = [crops[i] for i in idx]
        # one window and one canvas per group, so every chunk of the group has the same shapes (no recompiles)
        window = window_size([c.rect for c in group], (H, W), canvas_quantum)
        hc = device.canvas_size(max(c.h for c in group), canvas_quantum)
        wc = device.canvas_size(max(c.w for c in group), canvas_quantum)
        v_net = device.variant(np.float32, shape)
        for part in _chunks(len(group), batcher):
            chunk = [group[j] for j in part]
            # the reference resizes the float64 RGB crop, then float32 maps (SPEC 3.2 steps 1, 4)
            starts, ay, ax = stack_window_resize_matrices([c.rect for c in chunk], (H, W), shape,
                                                          cv_dtype=np.float64, channels=3, window=window)
            rgb = batcher.run(batched_window_resize, (starts, ay, ax), shared=(image,))[0]
            depth = device.midas_batched(models.midas_graphdef, models.midas_state, rgb, batcher)
            by = np.stack([device.resize_into_canvas(nh, c.h, hc, v_net) for c in chunk])
            bx = np.stack([device.resize_into_canvas(nw, c.w, wc, v_net) for c in chunk])
            valid = np.stack([(np.arange(hc)[:, None] < c.h) & (np.arange(wc)[None, :] < c.w) for c in chunk])
            v_crop = [device.variant(np.float32, (c.h, c.w)) for c in chunk]
            cy = np.stack([device.resize_from_canvas(c.h, device.MERGE_SIZE, hc, v) for c, v in zip(chunk, v_crop)])
            cx = np.stack([device.resize_from_canvas(c.w, device.MERGE_SIZE, wc, v) for c, v in zip(chunk, v_crop)])
            crop_maps, merge_maps = batcher.run(device.estimate_to_crop_and_merge_size,
                                                (by, depth, bx, valid, cy, cx))
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


def _resize_map(m: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """CUBIC resize of one float32 map (a same-size resize is an exact copy, SPEC 9.2)."""
    h, w = m.shape
    if (h, w) == tuple(out_hw):
        return m
    ay, ax = stack_crop_resize_matrices([(0, 0, w, h)], (h, w), tuple(out_hw))
    return batched_crop_resize(m, ay, ax)[0]


def boost(models: Models, image: np.ndarray, config: BoostConfig = BoostConfig(), *,
          keep_intermediates: bool = False, progress: Progress | None = None,
          on_plan: Callable[[Plan], None] | None = None) -> BoostResult:
    """Estimate the depth of ``image`` with the boosting method.

    ``image``: (H, W), (H, W, 3) or (H, W, 4) array, uint8 / uint16 / float in [0, 1] (see
    :func:`hrjax.pipeline.image.to_rgb_float64`). Returns a :class:`BoostResult` whose ``depth`` is float32
    relative inverse depth (larger = nearer; nominally [0, 1], not rescaled: the map the reference quantises
    into its PNG, README "What the output means"), at the input size (``output_resolution="input"``)
    or the internal size (``"native"``). ``keep_intermediates`` adds the reference's named intermediate maps
    (golden README 5) to ``result.intermediates``. ``progress(stage, done, total)`` is called as the stages
    advance, ``on_plan(plan)`` once the plan is made, before any network pass (for time estimates).
    """
    with FreeMemoryReleaser(RELEASE_INTERVAL_S):
        return _boost(models, image, config, keep_intermediates, progress or (lambda *_: None),
                      on_plan or (lambda _: None))


def _boost(models: Models, image: np.ndarray, config: BoostConfig, keep_intermediates: bool,
           report: Progress, on_plan: Callable[[Plan], None]) -> BoostResult:
    t0 = time.perf_counter()
    img = to_rgb_float64(image)
    h_in, w_in = img.shape[:2]
    report("search", 0, 1)
    p = make_plan(img, config.mode, config.receptive_field, config.max_res, config.output_resolution_flag)
    result = BoostResult(np.zeros((0, 0), np.float32), p, config, timings={"plan": time.perf_counter() - t0})
    report("search", 1, 1)
    on_plan(p)

    t = time.perf_counter()
    report("whole image", 0, 1)
    whole_double = _whole_image(models, img, p, config, result, keep_intermediates)
    result.timings["whole"] = time.perf_counter() - t
    report("whole image", 1, 1)

    if not p.boost:  # r0 / r20, or max_res < R (SPEC 1.3 steps 4 and 7)
        native = whole_double
    else:
        native = _local_boost(models, whole_double, p, config, result, keep_intermediates, report)
    if config.output_resolution == "input":
        # SPEC 1.3 steps 4 / 12 (and Q12): CUBIC to exactly the input size; a same-size resize is a copy
        native = _resize_map(jnp.asarray(native), (h_in, w_in))
    result.depth = np.asarray(native, np.float32)
    if keep_intermediates:
        result.intermediates["written_float"] = result.depth
    result.timings["total"] = time.perf_counter() - t0
    return result


def _whole_image(models: Models, img: np.ndarray, p: Plan, config: BoostConfig, result: BoostResult,
                 keep: bool) -> jax.Array:
    """The whole-image double estimate W, 1024^2 (SPEC 1.3 step 3; 3.1 with low = RF, high = R)."""
    h_in, w_in = img.shape[:2]
    rf = config.receptive_field
    image_dev = jnp.asarray(img, jnp.float32)
    whole = [Crop(0, 0, h_in, w_in)]
    low = single_estimates(models, image_dev, whole, rf, config, keep_at_crop=keep, canvas_quantum=1)
    high = single_estimates(models, image_dev, whole, p.R, config, keep_at_crop=keep, canvas_quantum=1)
    result.midas_calls += [(h_in, w_in, rf), (h_in, w_in, p.R)]
    result.net_shapes += [low.net_shapes[0], high.net_shapes[0]]
    w = device.double_from_estimates(models.merge_graphdef, models.merge_state, low.at_merge, high.at_merge)[0]
    result.merge_calls += 1
    if keep:
        result.intermediates.update(whole_single_low=low.at_crop[0], whole_single_high=high.at_crop[0],
                                    whole_double=np.asarray(w), whole_high_msize_requested=np.int64(p.R))
    return jax.block_until_ready(w)


def _local_boost(models: Models, whole_double: jax.Array, p: Plan, config: BoostConfig, result: BoostResult,
                 keep: bool, report: Progress) -> np.ndarray:
    """SPEC 1.3 steps 10-11 and 5.4: E_base at output scale, every patch merged into it, blended in order."""
    t = time.perf_counter()
    rf, mg, ms = config.receptive_field, models.merge_graphdef, models.merge_state
    batcher = models.batcher(config.max_batch)
    hs, ws = p.mergein_shape
    e_base = _resize_map(whole_double, (hs, ws))
    base_host = np.asarray(e_base, np.float32)
    # NumPy slicing clips rects at the border (SPEC 5.4 step 2)
    crops = [Crop(int(y), int(x), int(min(y + hh, hs) - y), int(min(x + ww, ws) - x))
             for x, y, ww, hh in p.rects_scaled]
    n = len(crops)
    if keep:
        result.intermediates.update(base_estimate_resized=base_host, patch_polyfit=np.zeros((0, 2)))
    if n == 0:
        if keep:
            result.intermediates["final_estimate"] = base_host
        return base_host
    stage_t = time.perf_counter()

    def stage_done(name: str, *arrays) -> None:
        # Per-stage wall times (the stages are sequential; waiting here costs nothing measurable).
        nonlocal stage_t
        jax.block_until_ready(arrays)
        now = time.perf_counter()
        result.timings[name] = now - stage_t
        stage_t = now

    def progress_of(stage: str) -> Callable[[int], None]:
        report(stage, 0, n)
        return lambda done: report(stage, done, n)

    img_out = jnp.asarray(p.img_out, jnp.float32)
    p_low = single_estimates(models, img_out, crops, rf, config, keep_at_crop=keep,
                             on_chunk=progress_of(STAGES[0]))
    stage_done("patch_low_passes", p_low.at_merge)
    p_high = single_estimates(models, img_out, crops, config.patch_netsize, config, keep_at_crop=keep,
                              on_chunk=progress_of(STAGES[1]))
    stage_done("patch_high_passes", p_high.at_merge)
    for c, s_low, s_high in zip(crops, p_low.net_shapes, p_high.net_shapes):
        result.midas_calls += [(c.h, c.w, rf), (c.h, c.w, config.patch_netsize)]
        result.net_shapes += [s_low, s_high]
    double_merged = progress_of(STAGES[2])
    pe = batcher.run(device.double_from_estimates, (p_low.at_merge, p_high.at_merge), shared=(mg, ms))[0]
    # drop the 1024^2 single estimates (4 MB per patch each): only pe is needed from here on
    p_low, p_high = replace(p_low, at_merge=None), replace(p_high, at_merge=None)
    stage_done("patch_double_merges", pe)
    double_merged(n)
    merged = progress_of(STAGES[3])
    # SPEC 5.4 steps 4-9 chunk by chunk in merge order: the merge inputs come from the frozen base estimate
    # (quirk Q5), so only the blend is ordered, and blending each chunk as it comes is the same fold.
    window = window_size([c.rect for c in crops], (hs, ws))
    hc = device.canvas_size(max(c.h for c in crops))
    wc = device.canvas_size(max(c.w for c in crops))
    updated = np.array(base_host, np.float32, copy=True)
    alphas, betas, first_m, t_blend = [], [], None, 0.0
    for part in _chunks(n, batcher):
        chunk = [crops[i] for i in part]
        # float32 base crops -> 1024^2 (SPEC 5.4 step 4)
        starts, ey, ex = stack_window_resize_matrices([c.rect for c in chunk], (hs, ws), window=window)
        b1 = batcher.run(batched_window_resize, (starts, ey, ex), shared=(e_base,))[0]
        m, alpha, beta = batcher.run(device.merge_into_base, (b1, pe[part.start:part.stop]), shared=(mg, ms))
        # P is float64 in the reference (polyfit output), so its resize runs cv2's generic path (SPEC 5.4 step 7)
        fy = np.stack([device.resize_into_canvas(device.MERGE_SIZE, c.h, hc, "generic") for c in chunk])
        fx = np.stack([device.resize_into_canvas(device.MERGE_SIZE, c.w, wc, "generic") for c in chunk])
        aligned = np.asarray(batcher.run(device.aligned_to_canvas, (fy, m, fx, alpha, beta))[0])
        alphas.append(np.asarray(alpha, np.float64))
        betas.append(np.asarray(beta, np.float64))
        if first_m is None:
            first_m = np.asarray(m[0])
        tb = time.perf_counter()
        blend_into(updated, chunk, aligned)
        t_blend += time.perf_counter() - tb
        merged(part.stop)
    result.merge_calls += 2 * n
    stage_done("patch_base_merges", updated)
    result.timings["patches"] = time.perf_counter() - t - t_blend
    result.timings["blend"] = t_blend
    if keep:
        result.intermediates.update(
            final_estimate=updated,
            patch_polyfit=np.stack([np.concatenate(alphas), np.concatenate(betas)], 1),
            patch_000_single_low=p_low.at_crop[0], patch_000_single_high=p_high.at_crop[0],
            patch_000_double=np.asarray(pe[0]), patch_000_mapped=first_m)
    return updated


def blend(base: np.ndarray, crops: list[Crop], aligned: np.ndarray) -> np.ndarray:
    """SPEC 5.4 steps 8-9, in merge order: E[r] = E[r]*(1 - Mk) + P*Mk, computed in float64, stored float32.

    ``aligned[i]`` holds patch i's aligned estimate on a canvas (top-left h x w valid).
    """
    out = np.array(base, np.float32, copy=True)
    blend_into(out, crops, aligned)
    return out


def blend_into(out: np.ndarray, crops: list[Crop], aligned: np.ndarray) -> None:
    """:func:`blend` in place on ``out`` (float32), so patches can be blended chunk by chunk in merge order."""
    for i, c in enumerate(crops):
        mk = patch_mask(c.h, c.w).astype(np.float64)
        region = out[c.y:c.y + c.h, c.x:c.x + c.w].astype(np.float64)
        out[c.y:c.y + c.h, c.x:c.x + c.w] = region * (1 - mk) + aligned[i, :c.h, :c.w].astype(np.float64) * mk
