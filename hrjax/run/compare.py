"""``--save compare``: input | plain estimate | boosted estimate side by side in one 8-bit PNG, for a quick look
through a folder run. Each map is coloured on its own range (min-max, like ``--save color``), so the panels
compare structure and detail, not absolute values (relative maps have none)."""

from __future__ import annotations

import numpy as np

LABELS = ("input", "plain", "boosted")


def _label(panel: np.ndarray, text: str) -> None:
    """A small label in the top-left corner, scaled with the panel (in place)."""
    import cv2
    h, w = panel.shape[:2]
    scale = max(0.35, min(w, h) / 700.0)
    thick = max(1, int(round(scale * 2)))
    org = (int(8 * scale) + 2, int(24 * scale) + 4)
    cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(panel, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def compare_image(image_rgb: np.ndarray, plain: np.ndarray, boosted: np.ndarray, colormap: str = "inferno",
                  labels: bool = True) -> np.ndarray:
    """(H, 3 W, 3) uint8 BGR: the input (resized to the maps' grid if it differs), ``colorize(plain)``,
    ``colorize(boosted)``. ``plain`` and ``boosted`` have the same shape (BoostResult.plain is resized like
    the depth)."""
    import cv2

    from hrjax.io import colorize

    if plain.shape != boosted.shape:
        raise ValueError(f"plain {plain.shape} and boosted {boosted.shape} maps differ in shape")
    h, w = boosted.shape
    bgr = np.ascontiguousarray(image_rgb[:, :, 2::-1])
    if bgr.shape[:2] != (h, w):
        bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    panels = [bgr.copy(), colorize(plain, colormap), colorize(boosted, colormap)]
    if labels:
        for p, t in zip(panels, LABELS):
            _label(p, t)
    return np.concatenate(panels, axis=1)
