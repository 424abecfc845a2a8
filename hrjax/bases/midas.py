"""MiDaS v2.1 as the base network (``run.py --depthNet 0``, SPEC 3.2, 6.1)."""

from hrjax.bases.base import BaseNetwork, Normalisation
from hrjax.pipeline.midas_input import IMAGENET_MEAN, IMAGENET_STD, midas_input_size

MIDAS_V21 = BaseNetwork(
    name="midas_v21",
    receptive_field=384,          # run.py l. 567-569
    patch_netsize=768,
    input_size=midas_input_size,  # keep aspect ratio, multiples of 32, long side msize (SPEC 3.2 step 1)
    input_resize="cubic",         # MiDaS's Resize: cv2.INTER_CUBIC on the float64 RGB image
    normalisation=Normalisation("rgb", IMAGENET_MEAN, IMAGENET_STD),
    min_max=True,                 # estimatemidas l. 480-487
    output="inverse_depth",
    check_input="hrjax.models.midas_v21:check_input",
    good_at="the reference's default: fast, the base the merge net was trained on",
)
