"""Bucketed whole-image passes (opt-in: ``BoostConfig(buckets=True)``, ``hrjax boost --buckets``).

In parity mode the whole-image network passes run at the reference's exact input shape, which depends on the
image's aspect ratio and on R (SPEC 3.2 step 1; R from the resolution search, SPEC 2): a folder of mixed photos
compiles the base network anew for almost every image (~2 s native to ~20 s split per shape on a 2-core CPU).
Patches need nothing: their passes are square, at the receptive field and twice it.

With buckets, a whole-image pass asks the base network's own input rule (``BaseNetwork.input_size``, so its
grid, 32 for MiDaS or 14 for Depth Anything V2, and its aspect handling stay its own) for a *bucket* instead of
the image's exact geometry:

- the aspect ratio (rows:cols) becomes the nearest (in log scale) of :data:`ASPECTS`: 1:2, 9:16, 2:3, 3:4, 1:1
  and the landscape ones, i.e. the phone, camera, video and square formats and the panorama edge;
- the requested size stays as it is: the two whole-image requests are the receptive field and R, and the
  resolution search only returns R on a grid (``receptive_field + j * 32 * (receptive_field // 64)``, steps of
  192 for MiDaS, SPEC 2) clamped to ``max_net_input`` (SPEC 1.1, Q14): 384, 576, 768, 960, 1152, 1344, 1536,
  1568 for MiDaS. A request off that grid (a caller's own) is moved to its nearest value (:func:`size_grid`).

So the whole-image passes of any folder need at most ``len(ASPECTS)`` x ``len(size_grid(...))`` network
programs (72 for MiDaS), each compiled once per process (and loaded from the persistent cache after that).
Everything else is unchanged: the resolution search, R, the patch plan, the patch passes, the merges. The
estimate at the bucket's shape is resized back to the image (the same CUBIC resize as in parity mode), so the
only deviation is that the network saw the image stretched in aspect (up to ~15 % halfway between 1:1 and
4:3, ~9 % elsewhere in [1:2, 2:1]): docs/benchmarks.md, "Bucketed whole-image passes", gives the deviation
from the goldens. (Until 2026-12-06 the size was bucketed too, on a ladder of 4 rungs per octave; since R is already on
the search's grid that merged almost no programs and scaled the image by up to ~11 %.)
"""

from __future__ import annotations

import math
from functools import lru_cache

from hrjax.bases.base import BaseNetwork
from hrjax.pipeline.search import SPEED

# rows:cols of the buckets, portrait to landscape (nearest in log(rows / cols))
ASPECTS = ((2, 1), (16, 9), (3, 2), (4, 3), (1, 1), (3, 4), (2, 3), (9, 16), (1, 2))
_PROXY = 144        # a proxy region is aspect * this: the input rules read only its aspect ratio


def bucket_aspect(h: int, w: int) -> tuple[int, int]:
    """The (rows, cols) ratio of :data:`ASPECTS` nearest to ``h / w`` in log scale (ties: the squarer one)."""
    r = math.log(h / w)
    return min(ASPECTS, key=lambda a: (round(abs(math.log(a[0] / a[1]) - r), 12), abs(math.log(a[0] / a[1]))))


@lru_cache(maxsize=None)
def size_grid(receptive_field: int, max_net_input: int) -> tuple[int, ...]:
    """The sizes a whole-image pass is requested at: the receptive field and every R the resolution search can
    return (``receptive_field + j * SPEED * int(receptive_field / (2 * SPEED))``, SPEC 2 step 8), clamped to
    ``max_net_input`` as the pipeline clamps every request (SPEC 1.1, Q14)."""
    step = SPEED * int(receptive_field / (2 * SPEED))
    sizes = {min(receptive_field, max_net_input), max_net_input}
    sizes.update(range(receptive_field, max_net_input, step))
    return tuple(sorted(sizes))


def bucket_size(msize: int, receptive_field: int, max_net_input: int) -> int:
    """The value of :func:`size_grid` nearest to ``msize`` in log scale (ties: the larger one): ``msize`` itself
    for every request the pipeline makes (the receptive field, R clamped to ``max_net_input``)."""
    sizes = size_grid(receptive_field, max_net_input)
    return min(sizes, key=lambda s: (round(abs(math.log(s / msize)), 12), -s))


def bucketed_input_size(base: BaseNetwork, receptive_field: int, max_net_input: int):
    """An ``input_size(h, w, msize)`` for :func:`hrjax.pipeline.estimates.single_estimates`: ``base``'s own rule
    applied to the aspect bucket of (h, w) at the grid size of msize instead of to the exact geometry."""

    def input_size(h: int, w: int, msize: int) -> tuple[int, int]:
        p, q = bucket_aspect(h, w)
        return base.input_size(p * _PROXY, q * _PROXY, bucket_size(msize, receptive_field, max_net_input))

    return input_size
