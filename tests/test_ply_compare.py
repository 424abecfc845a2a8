"""``--save ply`` (coloured point cloud, read back with plyfile), ``--save compare`` and ``--save plain``:
the camera model and the depth conversion against hand-computed coordinates, and the run layer's writers
with the pipeline replaced by known maps (no jax)."""

import io
import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from plyfile import PlyData
from typer.testing import CliRunner

import cli
from hrjax import io as hio
from hrjax.pointcloud import PlyOptions, depth_from_map, ply_bytes
from hrjax.run.compare import compare_image
from hrjax.run.folder import process_image
from hrjax.run.inputs import Job
from hrjax.run.outputs import RunOptions, output_paths, parse_save

H, W = 4, 6
RGB = np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3) * 3 + 1
# an inverse-depth map: larger = nearer; its max is the nearest point, its min the farthest
INV = np.array([[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]] * H, np.float32) * 0.5 + 0.25


def read_ply(data: bytes):
    ply = PlyData.read(io.BytesIO(data))
    v = ply["vertex"]
    return (np.stack([v["x"], v["y"], v["z"]], -1), np.stack([v["red"], v["green"], v["blue"]], -1),
            ply.text, ply.byte_order)


def expected_points(z, fov, hw_in=None):
    """The README's camera model, pixel by pixel."""
    h, w = z.shape
    hi, wi = hw_in or (h, w)
    f_in = (wi / 2) / math.tan(math.radians(fov) / 2)
    fx, fy = f_in * w / wi, f_in * h / hi
    out = []
    for v in range(h):
        for u in range(w):
            zz = z[v, u]
            out.append(((u + 0.5 - w / 2) * zz / fx, -(v + 0.5 - h / 2) * zz / fy, -zz))
    return np.array(out)


def test_ply_coordinates_colours_and_format():
    opts = PlyOptions(fov=90.0, near=2.0, far=8.0)
    xyz, rgb, text, order = read_ply(ply_bytes(RGB, INV, "inverse_depth", opts))
    assert not text and order == "<"  # binary little endian
    assert len(xyz) == H * W  # every pixel kept
    # inverse depth linear in t: the nearest column (max of the map) at 2, the farthest at 8
    t = (INV - INV.min()) / (INV.max() - INV.min())
    z = 1 / (1 / 8 + t * (1 / 2 - 1 / 8))
    np.testing.assert_allclose(z[:, -1], 2.0, rtol=1e-12)
    np.testing.assert_allclose(z[:, 0], 8.0, rtol=1e-12)
    np.testing.assert_allclose(xyz, expected_points(z, 90.0), rtol=1e-6, atol=1e-6)
    # fov 90: f = W / 2 = 3 px; the first pixel centre is 2.5 px left of the centre and 1.5 px above it
    np.testing.assert_allclose(xyz[0], [-2.5 * 8 / 3, 1.5 * 8 / 3, -8.0], rtol=1e-6)
    np.testing.assert_array_equal(rgb, RGB.reshape(-1, 3))  # colours of the image, row-major


def test_ply_depth_map_polarity_and_stride():
    """A depth map (LeReS: larger = farther) maps linearly in depth, the other way round; stride keeps the
    geometry (pixel centres at their full-grid positions) and ceil(H/s) * ceil(W/s) points."""
    z = depth_from_map(INV, "depth", 1.0, 5.0)
    np.testing.assert_allclose(z[:, 0], 1.0)
    np.testing.assert_allclose(z[:, -1], 5.0)
    np.testing.assert_allclose(z[0], np.linspace(1, 5, W), rtol=1e-6)
    xyz, rgb, _, _ = read_ply(ply_bytes(RGB, INV, "depth", PlyOptions(near=1.0, far=5.0, stride=4)))
    assert len(xyz) == math.ceil(H / 4) * math.ceil(W / 4) == 2
    full = expected_points(z, 60.0)
    np.testing.assert_allclose(xyz, full[[0, 4]], rtol=1e-6)
    np.testing.assert_array_equal(rgb, RGB[::4, ::4].reshape(-1, 3))


def test_ply_map_on_another_grid_keeps_the_input_camera():
    """--output-resolution native: the map's grid (here 2x the input's width only) is the point grid; the focal
    lengths follow its scale on each axis, colours are the image resized to it."""
    d = np.repeat(INV, 2, axis=1)  # (4, 12)
    xyz, rgb, _, _ = read_ply(ply_bytes(RGB, d, "inverse_depth", PlyOptions()))
    z = depth_from_map(d, "inverse_depth", 1.0, 10.0)
    assert len(xyz) == d.size
    np.testing.assert_allclose(xyz, expected_points(z, 60.0, (H, W)), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(rgb, cv2.resize(RGB, (2 * W, H), interpolation=cv2.INTER_LINEAR).reshape(-1, 3))


def test_ply_constant_map_and_bad_options():
    z = depth_from_map(np.full((2, 2), 0.3), "inverse_depth", 1.0, 10.0)
    np.testing.assert_array_equal(z, 10.0)  # no range: the far plane, no NaN
    for kw in ({"fov": 0}, {"fov": 180}, {"near": 0}, {"near": 5, "far": 5}, {"stride": 0}):
        with pytest.raises(ValueError):
            PlyOptions(**kw)
    r = CliRunner().invoke(cli.app, ["boost", ".", "--output", "o", "--save", "ply", "--fov", "200"])
    assert r.exit_code == 2 and "--fov" in r.output


def test_compare_panel_layout():
    plain = INV[:, ::-1].copy()
    out = compare_image(RGB, plain, INV, "viridis", labels=False)
    assert out.shape == (H, 3 * W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :W], RGB[:, :, ::-1])  # BGR, as written by cv2
    np.testing.assert_array_equal(out[:, W:2 * W], hio.colorize(plain, "viridis"))
    np.testing.assert_array_equal(out[:, 2 * W:], hio.colorize(INV, "viridis"))


def test_run_layer_writes_ply_compare_plain(tmp_path, monkeypatch):
    """process_image with the pipeline replaced by known maps: the new formats' files and names, the base's
    polarity read from models.base.output, the plain estimate asked for only when a format needs it."""
    import hrjax.pipeline.boost as pb

    plain = INV[:, ::-1].copy()
    seen = {}

    def fake_boost(*a, keep_plain=False, **k):
        seen["keep_plain"] = keep_plain
        plan = SimpleNamespace(R=384, K=0.5, n_patches=0, factor=None, boost=False)
        return SimpleNamespace(depth=INV, plan=plan, timings={}, plain=plain if keep_plain else None)

    monkeypatch.setattr(pb, "boost", fake_boost)
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), RGB[:, :, ::-1])
    models = SimpleNamespace(base=SimpleNamespace(output="depth"))
    opts = RunOptions(output=tmp_path / "out", save=parse_save(["png16,ply,compare,plain"]),
                      ply=PlyOptions(fov=70, near=1, far=3))
    assert {k: p.name for k, p in output_paths(opts, Job(img, "in")).items()} == {
        "png16": "in.png", "ply": "in.ply", "compare": "in_compare.png", "plain": "in_plain.png"}
    rec = process_image(models, Job(img, "in"), None, opts)
    assert rec.status == "done", rec.error
    assert seen["keep_plain"] and Path(rec.outputs[-1]).name == "in.png"
    out = tmp_path / "out"
    xyz, rgb, _, _ = read_ply((out / "in.ply").read_bytes())
    np.testing.assert_allclose(xyz, expected_points(depth_from_map(INV, "depth", 1, 3), 70.0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(rgb, RGB.reshape(-1, 3))
    np.testing.assert_array_equal(cv2.imread(str(out / "in_plain.png"), cv2.IMREAD_UNCHANGED),
                                  hio.quantize_16bit(plain))
    np.testing.assert_array_equal(cv2.imread(str(out / "in_compare.png")), compare_image(RGB, plain, INV))

    opts = RunOptions(output=tmp_path / "out2", save=parse_save(["png16,ply"]))
    assert process_image(models, Job(img, "in"), None, opts).status == "done"
    assert not seen["keep_plain"]  # no format needs it: boost is not asked to keep it
