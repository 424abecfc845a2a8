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
- the requested size becomes the nearest (in log scale) rung of a ladder of 4 steps per octave from the
  receptive field, multiples of 32, capped at ``max_net_input``: 384, 448, 544, 640, 768, 928, 1088, 1280,
  1568 for MiDaS. The receptive-field pass (the whole image's low pass) is a rung, so only the aspect
  ratio moves it.

So the whole-image passes of any folder need at most ``len(ASPECTS)`` x (rungs used) network programs, each
compiled once per process (and loaded from the persistent cache after that). Everything else is unchanged:
the resolution search, R, the patch plan, the patch passes, the merges. The estimate at the bucket's shape is
resized back to the image (the same CUBIC resize as in parity mode), so the only deviation is that the network
saw the image stretched by up to ~7 % in aspect and scaled by up to ~11 % in resolution: the README's
"Bucketed whole-image passes" gives the deviation from the goldens.
"""

from __future__ import annotations

import math
from functools import lru_cache

from hrjax.bases.base import BaseNetwork

# rows:cols of the buckets, portrait to landscape (nearest in log(rows / cols))
ASPECTS = ((2, 1), (16, 9), (3, 2), (4, 3), (1, 1), (3, 4), (2, 3), (9, 16), (1, 2))
STEPS_PER_OCTAVE = 4
_GRID = 32          # the ladder's rungs are multiples of this (the pipeline's receptive-field grid)
_PROXY = 144        # a proxy region is aspect * this: the input rules read only its aspect ratio


def bucket_aspect(h: int, w: int) -> tuple[int, int]:
    """The (rows, cols) ratio of :data:`ASPECTS` nearest to ``h / w`` in log scale (ties: the squarer one)."""
    r = math.log(h / w)
    return min(ASPECTS, key=lambda a: (round(abs(math.log(a[0] / a[1]) - r), 12), abs(math.log(a[0] / a[1]))))


@lru_cache(maxsize=None)
def ladder(receptive_field: int, max_net_input: int) -> tuple[int, ...]:
    """The requested sizes a bucketed pass may use: ``receptive_field * 2^(k/4)`` rounded to multiples of 32,
    below ``max_net_input`` by more than a quarter step, and ``max_net_input`` itself as the top rung."""
    rungs, k = set(), 0
    while True:
        size = _GRID * round(receptive_field * 2 ** (k / STEPS_PER_OCTAVE) / _GRID)
        if size >= max_net_input * 2 ** (-1 / (4 * STEPS_PER_OCTAVE)):  # within a quarter step of the cap: the cap
            break
        rungs.add(size)
        k += 1
    rungs.add(max_net_input)
    return tuple(sorted(rungs))


def bucket_size(msize: int, receptive_field: int, max_net_input: int) -> int:
    """The rung of :func:`ladder` nearest to ``msize`` in log scale (ties: the larger one)."""
    rungs = ladder(receptive_field, max_net_input)
    return min(rungs, key=lambda s: (round(abs(math.log(s / msize)), 12), -s))


def bucketed_input_size(base: BaseNetwork, receptive_field: int, max_net_input: int):
    """An ``input_size(h, w, msize)`` for :func:`hrjax.pipeline.estimates.single_estimates`: ``base``'s own rule
    applied to the bucket of (h, w, msize) instead of to the exact geometry."""

    def input_size(h: int, w: int, msize: int) -> tuple[int, int]:
        p, q = bucket_aspect(h, w)
        return base.input_size(p * _PROXY, q * _PROXY, bucket_size(msize, receptive_field, max_net_input))

    return input_size
