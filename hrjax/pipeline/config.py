"""Configuration of a boosting run: one frozen dataclass, built at the edges (CLI, user code)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# The modes of the method (SPEC 1.1); the first is the default.
MODES = ("final", "r20", "r0")
OUTPUT_RESOLUTIONS = ("input", "native")


@dataclass(frozen=True)
class BoostConfig:
    """Options of ``hrjax.boost``.

    mode: ``final`` (double estimate at R20 plus local boosting, the paper's result), ``r20`` or ``r0``
      (whole-image double estimate only, SPEC 1.3 step 4).
    receptive_field: the base network's native size; patches are 2x that (SPEC 1.1). ``None`` (default): the
      base network's own (``models.base.receptive_field``: 384 for MiDaS, 448 for LeReS), set by ``boost``.
    max_res: cap on the long side of the Final target image (SPEC 1.3 steps 7-8); ``inf`` = no cap.
    output_resolution: ``input`` (result at the input size, reference default) or ``native`` (internal size:
      1024^2 for r0/r20, the target size for final).
    max_net_input: the reference's GPU_threshold: base-network requests above this are clamped (SPEC 1.1, Q14).
    max_batch: most images in one batched network call (bounds device memory); 0 = chosen from the free memory
      of the device (``hrjax.pipeline.batching.auto_max_batch``; 1 on CPU). Results do not depend on it.
    buckets: run the whole-image network passes on a fixed set of input shapes (the nearest of 9 aspect ratios,
      the requested size unchanged, :mod:`hrjax.pipeline.buckets`) instead of the reference's exact ones, so a
      folder of mixed photos compiles a fixed set of programs. Not parity: the deviation is in docs/benchmarks.md.
      Default off.
    """

    mode: str = "final"
    receptive_field: int | None = None
    max_res: float = math.inf
    output_resolution: str = "input"
    max_net_input: int = 1568
    max_batch: int = 0
    buckets: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.output_resolution not in OUTPUT_RESOLUTIONS:
            raise ValueError(f"output_resolution must be one of {OUTPUT_RESOLUTIONS}, got {self.output_resolution!r}")
        if self.max_batch < 0:
            raise ValueError(f"max_batch must be >= 1, or 0 for automatic, got {self.max_batch}")
        if not self.max_res > 0:
            raise ValueError(f"max_res must be positive, got {self.max_res}")
        if (self.receptive_field or 0) % 32 or self.max_net_input % 32:
            raise ValueError("receptive_field and max_net_input must be multiples of 32")

    def for_base(self, base) -> "BoostConfig":
        """This config with the receptive field of ``base`` (a :class:`hrjax.bases.BaseNetwork`) if unset."""
        return self if self.receptive_field is not None else replace(self, receptive_field=base.receptive_field)

    @property
    def output_resolution_flag(self) -> int:
        """The reference's ``--output_resolution`` value (1 = input size, 0 = native)."""
        return 1 if self.output_resolution == "input" else 0
