"""Time estimates of a boosting run: the plan's pass counts times pass times measured in this process.

A plan fixes the work before any network runs: two whole-image MiDaS passes (at the receptive field and at R)
and one merge, then, in Final mode, per patch a 384^2 pass, a 768^2 pass and two merges (the four stages of
:data:`hrjax.pipeline.boost.STAGES`). :class:`Estimator` prices each stage in *reference seconds* (what it
took on the 2-core development CPU, README "How long will it take") and learns, from the stages it watches,
how fast this process really is: the ratio measured / reference per stage (or over all stages measured so
far), so the estimate adapts to the machine, a GPU included, after the first measured chunk. The first chunk
of each stage in a process is not measured: it includes the compilation.

Nothing here imports jax; the plan is only read (``R``, ``input_shape``, ``boost``, ``n_patches``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from hrjax.pipeline.midas_input import midas_input_size

WHOLE = "whole image"
PATCH_STAGES = ("patch low passes", "patch high passes", "patch double merges", "patch merges + blend")

# Reference seconds on the 2-core development CPU (README "How long will it take", 2026-12-07 instance, with the
# grouped convolutions on hrjax's CPU kernel): a MiDaS pass costs ~6.3 us per input pixel (384^2 0.91-0.95 s,
# 768^2 3.4-3.8 s), a merge-net pass 0.95 s; per patch the medians of bench/side_by_side.py's Final runs (800x450
# and 2000x1500 photos, 18 patches each: low passes 17.1-18.3 s, high passes 63.7-71.0 s, 36 merges
# 32.7-36.6 s). The measured ratio corrects these after the first chunks on another machine.
MIDAS_S_PER_PX = 6.3e-6
MERGE_S = 0.95
PATCH_S = dict(zip(PATCH_STAGES, (1.0, 3.7, 0.95, 0.95)))
# A plan line is printed before an image estimated at LONG_S or more, and the hint to shorten it from HINT_S.
LONG_S, HINT_S = 20.0, 120.0


def whole_cost(plan, receptive_field: int = 384, max_net_input: int = 1568) -> float:
    """Reference seconds of the whole-image stage: MiDaS at the receptive field and at R, one merge."""
    h, w = plan.input_shape[:2]
    lo = midas_input_size(h, w, receptive_field)
    hi = midas_input_size(h, w, min(int(plan.R), max_net_input))
    return MIDAS_S_PER_PX * (lo[0] * lo[1] + hi[0] * hi[1]) + MERGE_S


def stage_costs(plan, receptive_field: int = 384, max_net_input: int = 1568) -> dict[str, float]:
    """Reference seconds of every stage of ``plan``, in order."""
    costs = {WHOLE: whole_cost(plan, receptive_field, max_net_input)}
    if plan.boost and plan.n_patches:
        for s in PATCH_STAGES:
            costs[s] = PATCH_S[s] * plan.n_patches
    return costs


@dataclass
class Estimator:
    """Learns measured / reference per stage from the progress calls it sees (one process, many images)."""

    clock: object = time.monotonic
    ratios: dict[str, tuple[float, float]] = field(default_factory=dict)  # stage -> (measured s, reference s)
    seen: set = field(default_factory=set)   # stages met once already (their first run compiled)
    _last: tuple | None = None               # (stage, done, total, t) of the previous call
    costs: dict[str, float] = field(default_factory=dict)  # the current image's stages
    image_t0: float | None = None

    def start_image(self, plan) -> None:
        self.costs = stage_costs(plan)
        self.image_t0 = self.clock()
        self._last = None

    def observe(self, stage: str, done: int, total: int) -> None:
        """A progress call ``(stage, done, total)``: the time since the previous call of the same stage is
        ``(done - previous done) / total`` of that stage's reference cost."""
        now = self.clock()
        last, self._last = self._last, (stage, done, total, now)
        if stage not in self.costs or last is None or last[0] != stage or done <= last[1]:
            return
        if stage not in self.seen:
            self.seen.add(stage)  # the first chunk of a stage in this process compiled: not measured
            return
        ref = self.costs[stage] * (done - last[1]) / max(total, 1)
        m, r = self.ratios.get(stage, (0.0, 0.0))
        self.ratios[stage] = (m + now - last[3], r + ref)

    def ratio(self, stage: str) -> float | None:
        """measured / reference for ``stage``; else over every stage measured; None before any measurement."""
        if stage in self.ratios and self.ratios[stage][1] > 0:
            m, r = self.ratios[stage]
            return m / r
        m = sum(v[0] for v in self.ratios.values())
        r = sum(v[1] for v in self.ratios.values())
        return m / r if r > 0 else None

    @property
    def measured(self) -> bool:
        return bool(self.ratios)

    def seconds(self, stage: str, reference: float) -> float:
        r = self.ratio(stage)
        return reference * (r if r is not None else 1.0)

    def image_estimate(self) -> float:
        """Seconds for the whole current image, before it starts."""
        return sum(self.seconds(s, c) for s, c in self.costs.items())

    def remaining(self, stage: str, done: int, total: int) -> float:
        """Seconds left in the current image, at ``(stage, done, total)``."""
        if stage not in self.costs:
            return math.nan  # before the plan (search, reading) or an unpriced stage (saving patches)
        names = list(self.costs)
        left = self.seconds(stage, self.costs[stage] * (1 - done / max(total, 1)))
        return left + sum(self.seconds(s, self.costs[s]) for s in names[names.index(stage) + 1:])


def plan_line(plan, estimate: float, measured: bool, fmt) -> str:
    """The line printed before a long image: R, patches, the estimate (and how it was made)."""
    h, w = plan.input_shape[:2]
    what = f"{plan.n_patches} patches" if plan.boost else "whole image only"
    how = "from this run's pass times" if measured else "rough, from the 2-core CPU figures until measured"
    return f"{w}x{h}, mode {plan.mode}, R={plan.R}, {what}: estimated {fmt(estimate)} ({how})"


def hint_line(plan, whole_estimate: float, fmt) -> str | None:
    """How to make a long Final run shorter (None when there is nothing to offer)."""
    if not plan.boost:
        return None
    return (f"  to make it shorter: --mode r20 (the whole-image estimate only, about {fmt(whole_estimate)}), or "
            f"--max-res {int(plan.R)} for fewer patches (below {int(plan.R)}: none)")
