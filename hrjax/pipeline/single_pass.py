"""Plain single-pass depth (``hrjax predict``): one base-network pass at its native input rule, back to the image
size the way its reference or official code does, with no boosting. Users compare the boosted result with it.

Which rule is the base's own (``BaseNetwork.single_pass``): MiDaS and LeReS use the BoostingMonocularDepth
reference's single estimate at their receptive field (SPEC 3.2 / 3.3: MiDaS long side 384, multiples of 32,
CUBIC back, min-maxed; LeReS 448 x 448, CUBIC back, raw depth); Depth Anything V2 uses its official
``infer_image`` (hrjax.models.dav2_input: short side 518 on the multiple-of-14 grid, bilinear back, raw).
"""

from __future__ import annotations

import numpy as np

from hrjax.bases.base import BaseNetwork
from hrjax.pipeline.batching import Batcher
from hrjax.pipeline.estimates import image_estimates
from hrjax.pipeline.image import to_rgb_float64


def single_pass(base: BaseNetwork, graphdef, state, image: np.ndarray) -> np.ndarray:
    """One pass of ``base`` (split as ``graphdef``, ``state``) on ``image`` ((H, W[, 3|4]) uint8 / uint16 /
    float in [0, 1], :func:`hrjax.pipeline.image.to_rgb_float64`); returns the (H, W) float32 map its reference
    returns (``base.output`` says its polarity)."""
    return np.asarray(base.single_pass_fn()(base, graphdef, state, to_rgb_float64(image)), np.float32)


def predict(models, image: np.ndarray) -> np.ndarray:
    """One plain pass of the base network of ``models``, no boosting (``hrjax predict``; :func:`single_pass`).

    Args:
      models: :func:`hrjax.load_models`'s result; only its base network is used.
      image: (H, W), (H, W, 3) or (H, W, 4) array, uint8 / uint16 / float in [0, 1].

    Returns:
      (H, W) float32, what the base's reference returns at its native input rule: MiDaS min-maxed inverse depth,
      LeReS raw depth, Depth Anything V2 raw relative disparity (``models.base.output`` says the polarity).
    """
    return single_pass(models.base, models.base_graphdef, models.base_state, image)


def reference_single_estimate(base: BaseNetwork, graphdef, state, rgb: np.ndarray) -> np.ndarray:
    """The reference's ``estimatemidas`` / ``estimateleres`` of the whole image at the receptive field (SPEC 3.2,
    3.3; the single estimate of the pipeline's whole-image low pass), by
    :func:`hrjax.pipeline.estimates.image_estimates`."""
    rf = base.receptive_field
    return image_estimates(base, graphdef, state, np.asarray(rgb)[None], rf, batcher=Batcher(1),
                           max_net_input=rf)[0]
