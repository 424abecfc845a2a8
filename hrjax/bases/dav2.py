"""Depth Anything V2 (ViT-S/B/L) as a base network: hrjax's own extension, the reference never boosted it
(docs/dav2.md: every choice below and why).

Pipeline geometry (resolution search kernel, patch grid, low-pass size) at a receptive field of 512, the
multiple of 32 the search and patch grid need that is nearest DAv2's native 518; each requested size is then
snapped to DAv2's multiple-of-14 grid by the official input rule (``dav2_input_size``: keep the aspect ratio,
short side >= the request, lower_bound rounding), so the whole-image low pass is exactly the official
``infer_image`` input at 518 and the square patches run at 518^2 (low) and 1036^2 (high).
"""

from hrjax.bases.base import BaseNetwork, Normalisation
from hrjax.models.dav2_input import dav2_input_size
from hrjax.pipeline.midas_input import IMAGENET_MEAN, IMAGENET_STD

RECEPTIVE_FIELD = 512   # a multiple of 32 (BaseNetwork); dav2_input_size snaps it to DAv2's own 518


def aspect_kept_input(h: int, w: int, msize: int) -> tuple[int, int]:
    """The official ``image2tensor`` geometry at ``msize`` instead of 518: aspect kept, both sides multiples of
    14, the short side the first multiple of 14 at or near ``msize`` (never below it). Patches are square, so
    only the whole image's long side grows with its aspect ratio (docs/dav2.md, cost)."""
    return dav2_input_size(h, w, msize)


def _dav2(size: str, good_at: str) -> BaseNetwork:
    return BaseNetwork(
        name=f"dav2_{size}",
        receptive_field=RECEPTIVE_FIELD,
        patch_netsize=2 * RECEPTIVE_FIELD,
        input_size=aspect_kept_input,
        input_resize="cubic",         # image2tensor's Resize(image_interpolation_method=cv2.INTER_CUBIC)
        normalisation=Normalisation("rgb", IMAGENET_MEAN, IMAGENET_STD),  # NormalizeImage on the RGB image
        # relative disparity of arbitrary scale (larger = nearer); min-maxed like MiDaS's estimatemidas so the
        # merge net, trained on [0, 1] MiDaS maps, gets maps in the range it knows (docs/dav2.md, min-max)
        min_max=True,
        output="inverse_depth",
        check_input="hrjax.models.dav2:check_input",      # multiples of 14 (the patch size)
        # hrjax predict: the official infer_image at 518 (bilinear align_corners back, raw), not the pipeline's
        # CUBIC + min-max single estimate: plain output is what users compare the boosted one with
        single_pass="hrjax.models.dav2_input:single_pass",
        good_at=good_at,
    )


# good_at: the README's bases table only (the licences are the catalogue's)
DAV2_VITS = _dav2("vits", "a recent, robust relative-depth model with fine detail (24.8M parameters), fast")
DAV2_VITB = _dav2("vitb", "as ViT-S, finer and more stable (97.5M parameters)")
DAV2_VITL = _dav2("vitl", "the best DAv2 quality (335M parameters), slowest")
