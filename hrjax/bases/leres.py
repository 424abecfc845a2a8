"""LeReS ResNeXt-101 as the base network (``run.py --depthNet 2``): every value from docs/leres.md."""

from hrjax.bases.base import BaseNetwork, Normalisation


def square_input(h: int, w: int, msize: int) -> tuple[int, int]:
    """estimateleres resizes every region to msize x msize whatever its aspect ratio (run.py l. 515); msize is
    a multiple of 224 or the 1568 cap, so always a multiple of 32 (docs/leres.md, resolution search)."""
    return msize, msize


LERES_RES101 = BaseNetwork(
    name="leres_res101",
    receptive_field=448,          # run.py l. 570-572
    patch_netsize=896,
    input_size=square_input,
    input_resize="linear",        # cv2.resize default interpolation (run.py l. 515)
    # BGR is fed (quirk Q3, run.py l. 514) and torchvision's Normalize applies the ImageNet means in the order
    # given to the channels it gets, so B gets 0.485; no /255 (ToTensor of a float array), float32 (l. 492-508)
    normalisation=Normalisation("bgr", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    min_max=False,                # estimateleres returns the raw CUBIC-resized output (l. 523-525)
    output="depth",               # larger = farther; the merge net gets it uninverted (docs/leres.md)
    check_input="hrjax.models.leres:check_input",
    good_at="sharper detail and better layout than MiDaS v2.1 (the BoostingMonocularDepth authors' "
            "recommendation), ~3-4x slower per pass",
)
