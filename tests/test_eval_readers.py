"""Evaluation readers (hrjax.eval.pfm, hrjax.eval.datasets) on small synthetic files of each format."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from hrjax.eval.datasets import (
    DatasetError,
    find_estimate,
    generic,
    ibims1,
    load_dataset,
    middlebury2014,
    parse_middlebury_calib,
    read_estimate,
    read_gt,
)
from hrjax.eval.pfm import PFMError, decode_pfm, encode_pfm, read_pfm, write_pfm

# --------------------------------------------------------------------------------------------------------- PFM


def hand_pfm(rows_top_to_bottom, little: bool) -> bytes:
    """A PFM written by hand: header, then the rows bottom to top, float32 in the byte order of the sign."""
    h, w = len(rows_top_to_bottom), len(rows_top_to_bottom[0])
    fmt = "<" if little else ">"
    body = b"".join(struct.pack(f"{fmt}{w}f", *row) for row in reversed(rows_top_to_bottom))
    return b"Pf\n%d %d\n%s\n" % (w, h, b"-1.000000" if little else b"1.000000") + body


@pytest.mark.parametrize("little", [True, False])
def test_pfm_hand_written_orientation_and_byte_order(little):
    rows = [[1.0, 2.0, 3.0], [4.0, 5.0, float("inf")]]
    a = decode_pfm(hand_pfm(rows, little))
    assert a.dtype == np.float32 and a.shape == (2, 3)
    np.testing.assert_array_equal(a, np.array(rows, np.float32))   # first row of the array = top row


@pytest.mark.parametrize("little", [True, False])
def test_pfm_roundtrip_and_scale_sign(tmp_path, little):
    rng = np.random.default_rng(0)
    a = rng.random((5, 7)).astype(np.float32) * 100
    p = tmp_path / "x.pfm"
    write_pfm(p, a, little_endian=little)
    raw = p.read_bytes()
    assert raw.split(b"\n")[2] == (b"-1.0" if little else b"1.0")
    np.testing.assert_array_equal(read_pfm(p), a)
    # the wrong byte order would give different numbers: the sign really selects it
    flipped = raw.replace(b"\n-1.0\n", b"\n1.0\n") if little else raw.replace(b"\n1.0\n", b"\n-1.0\n")
    assert not np.array_equal(decode_pfm(flipped), a)
    rgb = rng.random((3, 4, 3)).astype(np.float32)
    np.testing.assert_array_equal(decode_pfm(encode_pfm(rgb, little_endian=little)), rgb)


def test_pfm_errors(tmp_path):
    with pytest.raises(PFMError, match="magic"):
        decode_pfm(b"P6\n1 1\n255\n\x00\x00\x00")
    with pytest.raises(PFMError, match="truncated"):
        decode_pfm(b"Pf\n4 4\n-1\n" + b"\x00" * 12)
    with pytest.raises(PFMError, match="scale"):
        decode_pfm(b"Pf\n1 1\n0\n" + b"\x00" * 4)
    p = tmp_path / "bad.pfm"
    p.write_bytes(b"Pf\n")
    with pytest.raises(PFMError, match="bad.pfm"):
        read_pfm(p)


# ------------------------------------------------------------------------------------------------ GT / estimates


def test_png_gt_and_estimates_are_im2double(tmp_path):
    a16 = np.array([[0, 65535], [32768, 1]], np.uint16)
    a8 = np.array([[0, 255], [51, 1]], np.uint8)
    cv2.imwrite(str(tmp_path / "a16.png"), a16)
    cv2.imwrite(str(tmp_path / "a8.png"), a8)
    np.testing.assert_array_equal(read_gt(tmp_path / "a16.png"), a16 / 65535.0)
    np.testing.assert_array_equal(read_estimate(tmp_path / "a16.png"), a16 / 65535.0)
    np.testing.assert_array_equal(read_gt(tmp_path / "a8.png"), a8 / 255.0)
    # a gray map saved as three equal channels is accepted, different channels are not
    cv2.imwrite(str(tmp_path / "c.png"), np.repeat(a16[:, :, None], 3, 2))
    np.testing.assert_array_equal(read_estimate(tmp_path / "c.png"), a16 / 65535.0)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (1, 2, 3)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    with pytest.raises(DatasetError, match="channel"):
        read_gt(tmp_path / "rgb.png")


def test_float_gt_invalid_values_and_max_scaling(tmp_path):
    a = np.array([[np.inf, 40.0], [20.0, -1.0], [np.nan, 10.0]], np.float32)
    write_pfm(tmp_path / "g.pfm", a)
    np.save(tmp_path / "g.npy", a)
    expect = np.array([[0, 1], [0.5, 0], [0, 0.25]])
    np.testing.assert_array_equal(read_gt(tmp_path / "g.pfm"), expect)
    np.testing.assert_array_equal(read_gt(tmp_path / "g.npy"), expect)


def test_find_estimate_prefers_png(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((2, 2)))
    assert find_estimate(tmp_path, "s") == tmp_path / "s.npy"
    cv2.imwrite(str(tmp_path / "s.png"), np.zeros((2, 2), np.uint16))
    assert find_estimate(tmp_path, "s") == tmp_path / "s.png"
    assert find_estimate(tmp_path, "t") is None


# ----------------------------------------------------------------------------------------------------- layouts


CALIB = """cam0=[3997.684 0 1176.728; 0 3997.684 1011.728; 0 0 1]
cam1=[3997.684 0 1307.839; 0 3997.684 1011.728; 0 0 1]
doffs=131.111
baseline=193.001
width=2964
height=1988
ndisp=280
isint=0
vmin=31
vmax=257
"""


def test_middlebury2014_layout(tmp_path):
    root = tmp_path / "mb"
    for scene, little in (("Adirondack-perfect", True), ("Piano-imperfect", False)):
        s = root / "trainingF" / scene
        s.mkdir(parents=True)
        disp = np.array([[np.inf, 100.0, 50.0], [200.0, 25.0, np.inf]], np.float32)
        write_pfm(s / "disp0.pfm", disp, little_endian=little)
        cv2.imwrite(str(s / "im0.png"), np.zeros((2, 3, 3), np.uint8))
        (s / "calib.txt").write_text(CALIB)
    samples = middlebury2014(root)
    assert [x.name for x in samples] == ["Adirondack-perfect", "Piano-imperfect"]
    assert all(x.gt_type == "disparity" and x.image_path.name == "im0.png" for x in samples)
    for x in samples:
        np.testing.assert_array_equal(x.load_gt(), [[0, 0.5, 0.25], [1, 0.125, 0]])
    c = parse_middlebury_calib(root / "trainingF" / "Piano-imperfect" / "calib.txt")
    assert c["doffs"] == 131.111 and c["ndisp"] == 280 and c["cam0"].shape == (3, 3) and c["cam1"][0, 2] == 1307.839
    assert load_dataset("middlebury2014", root / "trainingF" / "Piano-imperfect")[0].name == "Piano-imperfect"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="disp0.pfm"):
        middlebury2014(tmp_path / "empty")


def test_ibims1_layout_and_masks(tmp_path):
    root = tmp_path / "ibims1_core_raw"
    for sub in ("depth", "mask_invalid", "mask_transp", "rgb"):
        (root / sub).mkdir(parents=True)
    depth = np.array([[1000, 2000], [0, 4000]], np.uint16)              # 0 = no depth
    cv2.imwrite(str(root / "depth" / "corridor_01.png"), depth)
    cv2.imwrite(str(root / "mask_invalid" / "corridor_01.png"), np.array([[1, 0], [1, 1]], np.uint8))
    cv2.imwrite(str(root / "mask_transp" / "corridor_01.png"), np.array([[1, 1], [1, 0]], np.uint8))
    cv2.imwrite(str(root / "rgb" / "corridor_01.png"), np.zeros((2, 2, 3), np.uint8))
    cv2.imwrite(str(root / "depth" / "other_01.png"), depth)
    (root / "imagelist.txt").write_text("corridor_01\n")
    [s] = ibims1(root)
    assert s.name == "corridor_01" and s.gt_type == "depth" and s.image_path.name == "corridor_01.png"
    np.testing.assert_array_equal(s.load_gt(), [[1000 / 65535, 0], [0, 0]])
    [raw] = ibims1(root, use_masks=False)
    np.testing.assert_array_equal(raw.load_gt(), depth / 65535.0)
    (root / "imagelist.txt").unlink()
    assert [x.name for x in ibims1(root)] == ["corridor_01", "other_01"]
    with pytest.raises(DatasetError, match="depth/"):
        ibims1(tmp_path)


def test_generic_layout_pairs_by_stem(tmp_path):
    gt, img = tmp_path / "gt", tmp_path / "img"
    gt.mkdir()
    img.mkdir()
    cv2.imwrite(str(gt / "b.png"), np.ones((2, 2), np.uint16))
    write_pfm(gt / "a.pfm", np.ones((2, 2), np.float32))
    (gt / "notes.txt").write_text("ignored")
    cv2.imwrite(str(img / "a.jpg"), np.zeros((2, 2, 3), np.uint8))
    samples = generic(gt, gt_type="depth", images_dir=img)
    assert [(s.name, s.gt_type) for s in samples] == [("a", "depth"), ("b", "depth")]
    assert samples[0].image_path.name == "a.jpg" and samples[1].image_path is None
    # two GT files with one stem (a folder of `hrjax boost --save png16,npy`): the preference order decides
    np.save(gt / "b.npy", np.full((2, 2), 2.0))
    cv2.imwrite(str(gt / "b_color.png"), np.zeros((2, 2, 3), np.uint8))  # hrjax's preview: not a GT map
    assert [(s.name, s.gt_path.name) for s in generic(gt)] == [("a", "a.pfm"), ("b", "b.npy")]
    assert [(s.name, s.gt_path.name) for s in generic(gt, gt_format="png")] == [("b", "b.png")]
    with pytest.raises(DatasetError, match="unknown GT format"):
        generic(gt, gt_format="exr")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("nyu", gt)
