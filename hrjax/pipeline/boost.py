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

from hrjax.ops.crop import batched_crop_resize, stack_crop_resize_bands
from hrjax.ops.mask import patch_mask
from hrjax.models.mergenet import MERGE_SIZE
from hrjax.pipeline import canvas, kernels
from hrjax.pipeline.batching import chunks
from hrjax.pipeline.buckets import bucketed_input_size
from hrjax.pipeline.config import BoostConfig
from hrjax.pipeline.estimates import SingleEstimates, single_estimates
from hrjax.pipeline.image import to_rgb_float64
from hrjax.pipeline.networks import Models
from hrjax.pipeline.patches import Crop, Plan, plan as make_plan

Progress = Callable[[str, int, int], None]  # (stage, done, total)
# The progress stages of a Final run after "search" and "whole image" (each reported 0/1 then 1/1): the
# per-patch stages, each reported as (stage, patches done, patches) chunk by chunk.
STAGES = ("patch low passes", "patch high passes", "patch double merges", "patch merges + blend")


@dataclass(eq=False)
class BoostResult:
    depth: np.ndarray                              # (H, W) float32, ~[0, 1], not rescaled: relative inverse depth
                                                   # (MiDaS) or relative depth (LeReS): models.base.output
    plan: Plan
    config: BoostConfig
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)
    midas_calls: list[tuple[int, int, int]] = field(default_factory=list)   # (rows, cols, msize), reference order
    net_shapes: list[tuple[int, int]] = field(default_factory=list)         # base-net input (rows, cols), same
    merge_calls: int = 0
    merge_size: int = MERGE_SIZE                   # the merge net's input size (Models.merge_size)
    timings: dict[str, float] = field(default_factory=dict)
    whole: np.ndarray | None = None  # with keep_intermediates: W at the depth's resolution (resized like it)
    # with keep_plain: the plain estimate, the base network's single pass on the whole image at its receptive
    # field (the reference's whole_single_low: what running the base network alone gives), resized like depth
    plain: np.ndarray | None = None

    def call_log(self) -> dict[str, np.ndarray]:
        """The reference's call log (golden keys ``midas_call_shapes`` (the base network's, whichever it is),
        ``merge_call_shapes``, ``single_calls``): the passes the reference would make one at a time, in its
        order; hrjax runs them batched."""
        return {"midas_call_shapes": np.array([(1, 3, a, b) for a, b in self.net_shapes], np.int64).reshape(-1, 4),
                "merge_call_shapes": np.array([(1, 2, self.merge_size, self.merge_size)] * self.merge_calls,
                                              np.int64).reshape(-1, 4),
                "single_calls": np.array(self.midas_calls, np.int64).reshape(-1, 3)}


PatchCallback = Callable[[int, np.ndarray], None]  # (patch id, its 1024^2 double estimate)


def _single(models: Models, image: jax.Array, crops: list[Crop], msize: int, cfg: BoostConfig,
            **kwargs) -> SingleEstimates:
    return single_estimates(models.base, models.base_graphdef, models.base_state, image, crops, msize,
                            batcher=models.batcher(cfg.max_batch), max_net_input=cfg.max_net_input,
                            merge_size=models.merge_size, **kwargs)


def resize_map(m: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """CUBIC resize of one float32 map (a same-size resize is an exact copy, SPEC 9.2)."""
    h, w = m.shape
    if (h, w) == tuple(out_hw):
        return m
    return batched_crop_resize(m, *stack_crop_resize_bands([(0, 0, w, h)], (h, w), tuple(out_hw)))[0]


def boost(models: Models, image: np.ndarray, config: BoostConfig = BoostConfig(), *,
          keep_intermediates: bool = False, progress: Progress | None = None,
          on_plan: Callable[[Plan], None] | None = None, on_patch: PatchCallback | None = None,
          keep_plain: bool = False) -> BoostResult:
    """Estimate the depth of ``image`` with the boosting method (SPEC 1.3).

    Args:
      models: the base and merge networks (:func:`hrjax.pipeline.networks.load_models`).
      image: (H, W), (H, W, 3) or (H, W, 4) array, uint8 / uint16 / float in [0, 1] (see
        :func:`hrjax.pipeline.image.to_rgb_float64`).
      config: the options (:class:`hrjax.pipeline.config.BoostConfig`); an unset receptive field is the base
        network's (``result.config`` holds the one used).
      keep_intermediates: add the reference's named intermediate maps (golden README 5) to
        ``result.intermediates``, and the whole-image estimate at the output resolution to ``result.whole``.
      progress: ``progress(stage, done, total)``, called as the stages advance.
      on_plan: ``on_plan(plan)``, called once the plan is made, before any network pass (for time estimates).
      on_patch: ``on_patch(patch_id, map)``, called with each patch's 1024^2 double estimate (SPEC 5.4 step 3),
        in merge order (``--save-patches``).
      keep_plain: set ``result.plain``, the base network's single pass on the whole image at its receptive
        field (computed anyway; this only keeps it), at the depth's resolution (``--save compare``).

    Returns:
      A :class:`BoostResult` whose ``depth`` is float32 relative inverse depth for MiDaS (larger = nearer) and
      relative depth for LeReS (larger = farther; ``models.base.output``), nominally [0, 1], not rescaled (the
      map the reference quantises into its PNG, README "What the output means"), at the input size
      (``output_resolution="input"``) or the internal size (``"native"``).
    """
    report = progress or (lambda *_: None)
    config = config.for_base(models.base)
    t0 = time.perf_counter()
    img = to_rgb_float64(image)
    h_in, w_in = img.shape[:2]
    report("search", 0, 1)
    p = make_plan(img, config.mode, config.receptive_field, config.max_res, config.output_resolution_flag)
    result = BoostResult(np.zeros((0, 0), np.float32), p, config, merge_size=models.merge_size,
                         timings={"plan": time.perf_counter() - t0})
    report("search", 1, 1)
    (on_plan or (lambda _: None))(p)

    t = time.perf_counter()
    report("whole image", 0, 1)
    # one item: on one device even with a mesh (the batcher would run a copy per device)
    whole_double, whole_log, plain = _whole_image(models.on_first_device, img, p, config, keep_intermediates,
                                                  keep_plain)
    _log_into(result, whole_log)
    result.timings["whole"] = time.perf_counter() - t
    report("whole image", 1, 1)

    if not p.boost:  # r0 / r20, or max_res < R (SPEC 1.3 steps 4 and 7)
        native = whole_double
    else:
        native, boost_log = _local_boost(models, whole_double, p, config, keep_intermediates, report, on_patch)
        _log_into(result, boost_log)
    to_input = config.output_resolution == "input"
    if to_input:
        # SPEC 1.3 steps 4 / 12 (and Q12): CUBIC to exactly the input size; a same-size resize is a copy
        native = resize_map(jnp.asarray(native), (h_in, w_in))
    result.depth = np.asarray(native, np.float32)
    if keep_plain:  # at the input size: resized like the result (a same-size resize is a copy)
        result.plain = np.asarray(resize_map(jnp.asarray(plain, jnp.float32), result.depth.shape), np.float32)
    if keep_intermediates:
        result.intermediates["written_float"] = result.depth
        # W resized like the result (--save-whole): the result itself when W is the result
        result.whole = (result.depth if not p.boost else
                        np.asarray(resize_map(whole_double, (h_in, w_in)) if to_input else whole_double,
                                   np.float32))
    result.timings["total"] = time.perf_counter() - t0
    return result


@dataclass
class _CallLog:
    """What a stage adds to the result: the reference's call log, timings and intermediate maps."""

    midas_calls: list[tuple[int, int, int]] = field(default_factory=list)
    net_shapes: list[tuple[int, int]] = field(default_factory=list)
    merge_calls: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)


def _log_into(result: BoostResult, log: _CallLog) -> None:
    result.midas_calls += log.midas_calls
    result.net_shapes += log.net_shapes
    result.merge_calls += log.merge_calls
    result.timings.update(log.timings)
    result.intermediates.update(log.intermediates)


def _whole_image(models: Models, img: np.ndarray, p: Plan, config: BoostConfig, keep: bool,
                 keep_plain: bool = False) -> tuple[jax.Array, _CallLog, np.ndarray | None]:
    """The whole-image double estimate W, 1024^2 (SPEC 1.3 step 3; 3.1 with low = RF, high = R), and with
    ``keep_plain`` its low single estimate at the input size (else None)."""
    h_in, w_in = img.shape[:2]
    rf = config.receptive_field
    image_dev = jnp.asarray(img, jnp.float32)
    whole = [Crop(0, 0, h_in, w_in)]
    # opt-in: network input shapes from a fixed set instead of the image's exact geometry (pipeline/buckets.py)
    input_size = bucketed_input_size(models.base, rf, config.max_net_input) if config.buckets else None
    low = _single(models, image_dev, whole, rf, config, keep_at_crop=keep or keep_plain, canvas_quantum=1,
                  input_size=input_size)
    high = _single(models, image_dev, whole, p.R, config, keep_at_crop=keep, canvas_quantum=1,
                   input_size=input_size)
    log = _CallLog(midas_calls=[(h_in, w_in, rf), (h_in, w_in, p.R)],
                   net_shapes=[low.net_shapes[0], high.net_shapes[0]], merge_calls=1)
    w = kernels.double_from_estimates(models.merge_graphdef, models.merge_state, low.at_merge, high.at_merge)[0]
    if keep:
        log.intermediates.update(whole_single_low=low.at_crop[0], whole_single_high=high.at_crop[0],
                                 whole_double=np.asarray(w), whole_high_msize_requested=np.int64(p.R))
    return jax.block_until_ready(w), log, (low.at_crop[0] if keep_plain else None)


def _local_boost(models: Models, whole_double: jax.Array, p: Plan, config: BoostConfig, keep: bool,
                 report: Progress, on_patch: PatchCallback | None) -> tuple[np.ndarray, _CallLog]:
    """SPEC 1.3 steps 10-11 and 5.4: E_base at output scale, every patch merged into it, blended in order."""
    t = time.perf_counter()
    log = _CallLog()
    rf, mg, ms, msz = config.receptive_field, models.merge_graphdef, models.merge_state, models.merge_size
    batcher = models.batcher(config.max_batch)
    hs, ws = p.mergein_shape
    e_base = resize_map(whole_double, (hs, ws))
    base_host = np.asarray(e_base, np.float32)
    crops = p.crops
    n = len(crops)
    if keep:
        log.intermediates.update(base_estimate_resized=base_host, patch_polyfit=np.zeros((0, 2)))
    if n == 0:
        if keep:
            log.intermediates["final_estimate"] = base_host
        return base_host, log
    stage_t = time.perf_counter()

    def stage_done(name: str, *arrays) -> None:
        # Per-stage wall times (the stages are sequential; waiting here costs nothing measurable).
        nonlocal stage_t
        jax.block_until_ready(arrays)
        now = time.perf_counter()
        log.timings[name] = now - stage_t
        stage_t = now

    def progress_of(stage: str) -> Callable[[int], None]:
        report(stage, 0, n)
        return lambda done: report(stage, done, n)

    img_out = jnp.asarray(p.img_out, jnp.float32)
    p_low = _single(models, img_out, crops, rf, config, keep_at_crop=keep, on_chunk=progress_of(STAGES[0]))
    stage_done("patch_low_passes", p_low.at_merge)
    p_high = _single(models, img_out, crops, p.patch_netsize, config, keep_at_crop=keep,
                     on_chunk=progress_of(STAGES[1]))
    stage_done("patch_high_passes", p_high.at_merge)
    for c, s_low, s_high in zip(crops, p_low.net_shapes, p_high.net_shapes):
        log.midas_calls += [(c.h, c.w, rf), (c.h, c.w, p.patch_netsize)]
        log.net_shapes += [s_low, s_high]
    double_merged = progress_of(STAGES[2])
    pe = batcher.run(kernels.double_from_estimates, (p_low.at_merge, p_high.at_merge), shared=(mg, ms))[0]
    # drop the 1024^2 single estimates (4 MB per patch each): only pe is needed from here on
    p_low, p_high = replace(p_low, at_merge=None), replace(p_high, at_merge=None)
    stage_done("patch_double_merges", pe)
    double_merged(n)
    if on_patch is not None:
        for i in range(n):
            on_patch(int(p.patch_ids[i]), np.asarray(pe[i], np.float32))
    merged = progress_of(STAGES[3])
    # SPEC 5.4 steps 4-9 chunk by chunk in merge order: the merge inputs come from the frozen base estimate
    # (quirk Q5), so only the blend is ordered, and blending each chunk as it comes is the same fold.
    hc = canvas.canvas_size(max(c.h for c in crops))
    wc = canvas.canvas_size(max(c.w for c in crops))
    updated = np.array(base_host, np.float32, copy=True)
    alphas, betas, first_m, t_blend = [], [], None, 0.0
    for part in chunks(n, batcher):
        chunk = [crops[i] for i in part]
        # float32 base crops -> 1024^2 (SPEC 5.4 step 4)
        bands = stack_crop_resize_bands([c.rect for c in chunk], (hs, ws), (msz, msz))
        b1 = batcher.run(batched_crop_resize, bands, shared=(e_base,))[0]
        m, alpha, beta = batcher.run(kernels.merge_into_base, (b1, pe[part.start:part.stop]), shared=(mg, ms))
        # P is float64 in the reference (polyfit output), so its resize runs cv2's generic path (SPEC 5.4 step 7)
        fy = canvas.stack_bands([canvas.band_into_canvas(msz, c.h, hc, "generic") for c in chunk])
        fx = canvas.stack_bands([canvas.band_into_canvas(msz, c.w, wc, "generic") for c in chunk])
        aligned = np.asarray(batcher.run(kernels.aligned_to_canvas, (*fy, m, *fx, alpha, beta))[0])
        alphas.append(np.asarray(alpha, np.float64))
        betas.append(np.asarray(beta, np.float64))
        if first_m is None:
            first_m = np.asarray(m[0])
        tb = time.perf_counter()
        blend_into(updated, chunk, aligned)
        t_blend += time.perf_counter() - tb
        merged(part.stop)
    log.merge_calls += 2 * n
    stage_done("patch_base_merges", updated)
    log.timings["patches"] = time.perf_counter() - t - t_blend
    log.timings["blend"] = t_blend
    if keep:
        log.intermediates.update(
            final_estimate=updated,
            patch_polyfit=np.stack([np.concatenate(alphas), np.concatenate(betas)], 1),
            patch_000_single_low=p_low.at_crop[0], patch_000_single_high=p_high.at_crop[0],
            patch_000_double=np.asarray(pe[0]), patch_000_mapped=first_m)
    return updated, log


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
