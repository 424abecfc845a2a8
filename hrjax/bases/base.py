"""What the pipeline needs to know about a base depth network (SPEC 1.1, 3.2): one frozen dataclass per base.

The pipeline (``hrjax.pipeline``) reads only these fields; a base network is its Flax NNX model (catalogue
entry, converter, ``__call__(x) -> (N, H, W)`` on NHWC normalised input) plus one :class:`BaseNetwork` value in
its own module of this package, registered by name in :data:`hrjax.bases.BASES`. Adding a base touches no
pipeline file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:  # the type hints only: the CLI reads the registry without importing jax
    import jax

InputSize = Callable[[int, int, int], tuple[int, int]]   # (h, w, msize) -> network input (rows, cols)


@dataclass(frozen=True)
class Normalisation:
    """How the resized float RGB image in [0, 1] becomes the network input, on the device in float32:
    the channels are reordered to ``channel_order`` (what the reference actually feeds), then
    ``(x - mean) / std`` with ``mean`` and ``std`` given in that fed order. Hashable: a static jit argument."""

    channel_order: Literal["rgb", "bgr"] = "rgb"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _imported(spec: str):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class BaseNetwork:
    """One base network as the boosting pipeline uses it.

    name: its catalogue name (``hrjax.weights.catalog.MODELS``), loaded with ``hrjax.weights.load.load_model``.
    receptive_field: the reference's ``net_receptive_field_size``: low size of every double estimate, kernel of
      the resolution search; patches are ``2 * receptive_field`` wide and their high pass runs at
      ``patch_netsize`` (SPEC 1.1).
    patch_netsize: the reference's ``patch_netsize`` (always 2x the receptive field in the official settings).
    input_size: the network input (rows, cols) for an h x w region at a requested size msize (already clamped
      to the reference's GPU_threshold by the pipeline).
    input_resize: the cv2 interpolation of the float64 RGB region to that input (SPEC 3.2 step 1).
    normalisation: channel order and mean/std of the network input (:class:`Normalisation`).
    min_max: the single estimate, resized back (CUBIC) to the region's size, is min-maxed to [0, 1] (MiDaS's
      ``estimatemidas``) or returned raw (LeReS's ``estimateleres``).
    output: what the network's (and so the result's) values mean: ``"inverse_depth"`` (larger = nearer) or
      ``"depth"`` (larger = farther); the merge net gets either unchanged, as in the reference.
    check_input: ``"module:function"`` of the model's input check (raises a ValueError for a network input
      batch (N, H, W, 3) the network cannot take), imported only when :meth:`check` runs: reading the
      registry (the CLI, before it knows the weights are there) must not import jax or flax.
    single_pass: ``"module:function"`` of the base's plain single forward pass (``hrjax predict``): one pass at
      the network's native input rule, back to the image size as its reference or official code does;
      ``function(base, graphdef, state, rgb)`` with rgb (H, W, 3) float64 in [0, 1] -> (H, W) float32. Imported
      only when run (see ``check_input``). Default: the reference's own single estimate at the receptive field.
    good_at: one line for the README's bases table; no effect on results (the licence is the catalogue's).
    """

    name: str
    receptive_field: int
    patch_netsize: int
    input_size: InputSize
    input_resize: Literal["cubic", "linear"]
    normalisation: Normalisation
    min_max: bool
    output: Literal["inverse_depth", "depth"]
    check_input: str
    single_pass: str = "hrjax.pipeline.single_pass:reference_single_estimate"
    good_at: str = ""

    def check(self, images: jax.Array) -> None:
        """Raise a ValueError if the network cannot take ``images`` (``check_input``, imported now)."""
        _imported(self.check_input)(images)

    def single_pass_fn(self) -> Callable:
        """The function named by ``single_pass``, imported now."""
        return _imported(self.single_pass)

    def __post_init__(self):
        # The pipeline's patch grid and patch high pass both follow the receptive field (Plan.patch_netsize);
        # every official setting has patch_netsize = 2 * receptive_field (run.py l. 567-572).
        if self.patch_netsize != 2 * self.receptive_field or self.receptive_field % 32:
            raise ValueError(f"{self.name}: the pipeline needs receptive_field a multiple of 32 and "
                             f"patch_netsize = 2 * receptive_field, got {self.receptive_field}, {self.patch_netsize}")
