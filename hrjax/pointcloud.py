"""A coloured point cloud from an image and its depth map (``--save ply``), written as binary PLY with numpy.

Camera model (README "Point clouds"): a pinhole camera whose horizontal field of view ``fov`` (degrees) spans
the image width, square pixels of the *input* image, principal point at the image centre, no distortion.
Pixel (u, v) (column, row; its centre at u + 0.5, v + 0.5) at depth z becomes

    X = (u + 0.5 - W / 2) * z / fx,   Y = -(v + 0.5 - H / 2) * z / fy,   Z = -z

with fx = (W / 2) / tan(fov / 2): X right, Y up, the camera at the origin looking down -Z (the convention of
OpenGL, Blender, MeshLab and three.js, so a viewer's default camera sees the photo the right way up). When the
depth map is not at the input's size (``--output-resolution native``) its grid is the point grid and fx, fy
follow its scale on each axis, so the geometry stays that of the input's camera.

Depth from the map: the maps are *relative*: MiDaS and Depth Anything V2 give inverse depth up to an unknown
scale and shift, LeReS depth up to an unknown scale and shift. No metric depth can be recovered from them, so
the map's range is placed between two chosen planes: its nearest value at depth ``near``, its farthest at
``far`` (linearly in inverse depth for an inverse-depth map, linearly in depth for a depth map: the
relation under which each map is shift- and scale-invariant). Every point lies between the planes; only
``far / near`` changes the shape (a larger ratio = more depth relief), the unit is arbitrary.

Nothing here imports jax or OpenCV except :func:`colours_at` (a resize).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class PlyOptions:
    """``--fov``, ``--ply-near``, ``--ply-far``, ``--ply-stride``."""

    fov: float = 60.0       # horizontal field of view in degrees: a common phone/compact camera is 60-70
    near: float = 1.0       # depth of the map's nearest value (arbitrary unit)
    far: float = 10.0       # depth of its farthest value
    stride: int = 1         # keep every stride-th pixel in x and y (huge images: 50 MP -> 50 M points)

    def __post_init__(self):
        if not 0.0 < self.fov < 180.0:
            raise ValueError(f"--fov must lie in (0, 180) degrees, got {self.fov}")
        if not 0.0 < self.near < self.far or not math.isfinite(self.far):
            raise ValueError(f"need 0 < --ply-near < --ply-far (finite), got {self.near}, {self.far}")
        if self.stride < 1:
            raise ValueError(f"--ply-stride must be >= 1, got {self.stride}")

    def identity(self) -> dict:
        """What the PLY depends on besides the map (the resume record)."""
        return {"fov": float(self.fov), "near": float(self.near), "far": float(self.far), "stride": int(self.stride)}


def depth_from_map(d: np.ndarray, output: Literal["inverse_depth", "depth"], near: float, far: float) -> np.ndarray:
    """Depth z in [near, far] (float64) from a relative map (see the module docstring). A constant map has no
    range: every point goes to the far plane (inverse depth) or the near plane (depth)."""
    d = np.asarray(d, np.float64)
    lo, hi = float(d.min()), float(d.max())
    t = (d - lo) / (hi - lo) if hi - lo > 0 else np.zeros_like(d)
    if output == "inverse_depth":   # t = 1 is the nearest point
        return 1.0 / (1.0 / far + t * (1.0 / near - 1.0 / far))
    if output == "depth":           # t = 1 is the farthest point
        return near + t * (far - near)
    raise ValueError(f"unknown map meaning {output!r}")


def points(z: np.ndarray, input_hw: tuple[int, int], fov: float, stride: int = 1) -> np.ndarray:
    """(N, 3) float32 camera coordinates of every ``stride``-th pixel of the depth grid ``z`` (row-major)."""
    hd, wd = z.shape
    hi, wi = input_hw
    fx_in = (wi / 2.0) / math.tan(math.radians(fov) / 2.0)  # focal length in input pixels (square)
    fx, fy = fx_in * wd / wi, fx_in * hd / hi               # ... in depth-grid pixels along each axis
    v, u = np.mgrid[0:hd:stride, 0:wd:stride]
    zs = z[::stride, ::stride]
    x = (u + 0.5 - wd / 2.0) * zs / fx
    y = -(v + 0.5 - hd / 2.0) * zs / fy
    return np.stack([x, y, -zs], -1).reshape(-1, 3).astype(np.float32)


def colours_at(rgb: np.ndarray, hw: tuple[int, int], stride: int = 1) -> np.ndarray:
    """(N, 3) uint8 colours of the point grid: the image (RGB, uint8) resized to the depth grid if needed."""
    if rgb.shape[:2] != tuple(hw):
        import cv2
        shrink = hw[0] * hw[1] < rgb.shape[0] * rgb.shape[1]
        rgb = cv2.resize(rgb, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(rgb[::stride, ::stride, :3]).reshape(-1, 3)


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """The pipeline's float RGB in [0, 1] (``hrjax.io.read_image``) -> uint8, rounded."""
    return np.clip(np.round(np.asarray(image, np.float64) * 255.0), 0, 255).astype(np.uint8)


def encode_ply(xyz: np.ndarray, rgb: np.ndarray, comment: str = "") -> bytes:
    """Binary little-endian PLY 1.0: one ``vertex`` element with float x, y, z and uchar red, green, blue."""
    n = len(xyz)
    if rgb.shape != (n, 3):
        raise ValueError(f"{n} points but colours of shape {rgb.shape}")
    v = np.empty(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                           ("blue", "u1")])
    v["x"], v["y"], v["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    v["red"], v["green"], v["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    lines = ["ply", "format binary_little_endian 1.0"]
    lines += [f"comment {c}" for c in comment.splitlines() if c]
    lines += [f"element vertex {n}", "property float x", "property float y", "property float z",
              "property uchar red", "property uchar green", "property uchar blue", "end_header"]
    return ("\n".join(lines) + "\n").encode("ascii") + v.tobytes()


def ply_bytes(image_rgb: np.ndarray, d: np.ndarray, output: Literal["inverse_depth", "depth"],
              opts: PlyOptions = PlyOptions()) -> bytes:
    """The whole conversion: image (H, W, 3) uint8 RGB and relative map ``d`` -> PLY bytes."""
    z = depth_from_map(d, output, opts.near, opts.far)
    xyz = points(z, image_rgb.shape[:2], opts.fov, opts.stride)
    rgb = colours_at(image_rgb, z.shape, opts.stride)
    comment = (f"hrjax point cloud: pinhole, horizontal fov {opts.fov:g} deg, principal point at the centre\n"
               f"relative {output.replace('_', ' ')} mapped to depth [{opts.near:g}, {opts.far:g}] "
               f"(arbitrary unit); X right, Y up, camera looks down -Z")
    return encode_ply(xyz, rgb, comment)
