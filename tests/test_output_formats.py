"""Output formats: 8-bit gray PNG, PFM (MiDaS's layout), the colour map choice, and the decision on the float
range (.npy / .pfm hold the merged map itself, not rescaled) as README, --help and the files state it."""

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from hrjax import io as hio
from hrjax.run.folder import process_image
from hrjax.run.inputs import Job
from hrjax.run.outputs import RunOptions, output_paths, parse_save
from hrjax.eval.pfm import read_pfm

ROOT = Path(__file__).resolve().parents[1]
# a map like the reference's written_float: nominally [0, 1], a little outside it
D = (np.linspace(-0.018, 0.976, 6 * 8, dtype=np.float32).reshape(6, 8))


def invoke(args):
    return CliRunner().invoke(cli.app, [str(a) for a in args], catch_exceptions=False)


def test_png8_is_the_8bit_quantisation(tmp_path):
    hio.write_png8(tmp_path / "a.png", D)
    a = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)
    assert a.dtype == np.uint8 and a.shape == D.shape and a.ndim == 2
    np.testing.assert_array_equal(a, hio.quantize_8bit(D))
    assert a.min() == 0 and a.max() >= 254


def test_pfm_follows_midas_layout(tmp_path):
    hio.write_pfm(tmp_path / "a.pfm", D)
    raw = (tmp_path / "a.pfm").read_bytes()
    assert raw.startswith(b"Pf\n8 6\n-1.0\n")  # one channel, width height, negative scale = little endian
    body = np.frombuffer(raw[len(b"Pf\n8 6\n-1.0\n"):], "<f4").reshape(6, 8)
    np.testing.assert_array_equal(body, D[::-1])  # rows bottom to top, values not rescaled
    np.testing.assert_array_equal(read_pfm(tmp_path / "a.pfm"), D)


def test_colormap_choice(tmp_path):
    inferno, viridis = hio.colorize(D), hio.colorize(D, "viridis")
    np.testing.assert_array_equal(inferno, cv2.applyColorMap(hio.quantize_8bit(D), cv2.COLORMAP_INFERNO))
    np.testing.assert_array_equal(viridis, cv2.applyColorMap(hio.quantize_8bit(D), cv2.COLORMAP_VIRIDIS))
    assert not np.array_equal(inferno, viridis)
    with pytest.raises(ValueError, match="unknown colour map"):
        hio.colorize(D, "rainbow-unicorn")
    r = invoke(["boost", tmp_path, "--output", tmp_path / "o", "--colormap", "rainbow-unicorn"])
    assert r.exit_code == 2 and "unknown --colormap" in r.output and "viridis" in r.output


def test_output_names_of_the_new_formats(tmp_path):
    opts = RunOptions(output=tmp_path, save=parse_save(["png16,png8,pfm,npy,color"]))
    paths = output_paths(opts, Job(Path("x.jpg"), "sub/x"))
    assert {k: p.relative_to(tmp_path).as_posix() for k, p in paths.items()} == {
        "png16": "sub/x.png", "png8": "sub/x_8bit.png", "pfm": "sub/x.pfm", "npy": "sub/x.npy",
        "color": "sub/x_color.png"}


def test_docs_and_help_agree_on_the_float_range():
    """README, --help and the writers say the same: the float files are the map itself, not rescaled."""
    readme = (ROOT / "README.md").read_text()
    assert "float32 in [0, 1]" not in readme
    row = next(line for line in readme.splitlines() if line.startswith("| `npy` |"))
    assert "not rescaled" in row
    help_text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", invoke(["boost", "--help"]).output).split())  # no box
    assert re.search(r"npy \(<stem>\.npy\) and pfm \(<stem>\.pfm.*not rescaled", help_text), help_text
    assert "not rescaled" in hio.write_npy.__doc__ and "not rescaled" in hio.write_pfm.__doc__


def test_runner_writes_every_format(tmp_path, monkeypatch):
    """process_image's writers table, with the pipeline replaced by a map like the reference's (no jax)."""
    from types import SimpleNamespace

    import hrjax.pipeline.boost as pb

    plan = SimpleNamespace(R=384, K=0.5, n_patches=0, factor=None, boost=False)
    monkeypatch.setattr(pb, "boost", lambda *a, **k: SimpleNamespace(depth=D, plan=plan, timings={}, plain=None))
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), np.zeros((6, 8, 3), np.uint8))
    opts = RunOptions(output=tmp_path / "out", save=parse_save(["png16,png8,npy,pfm,color"]),
                             colormap="viridis")
    rec = process_image(None, Job(img, "in"), None, opts)
    assert rec.status == "done", rec.error
    out = tmp_path / "out"
    np.testing.assert_array_equal(np.load(out / "in.npy"), D)  # the map itself, not rescaled
    np.testing.assert_array_equal(read_pfm(out / "in.pfm"), D)
    np.testing.assert_array_equal(cv2.imread(str(out / "in.png"), cv2.IMREAD_UNCHANGED), hio.quantize_16bit(D))
    np.testing.assert_array_equal(cv2.imread(str(out / "in_8bit.png"), cv2.IMREAD_UNCHANGED), hio.quantize_8bit(D))
    np.testing.assert_array_equal(cv2.imread(str(out / "in_color.png")), hio.colorize(D, "viridis"))
    assert Path(rec.outputs[-1]).name == "in.png"  # the main result last: it marks a finished image


@pytest.mark.heavy
def test_boost_writes_every_format(tmp_path, weights_dir):
    """One r0 run in process (96x128, the shape test_cli's folder runs compile too): the float files hold the
    unscaled map, the PNGs its min-max quantisations, the preview the chosen colour map."""
    img = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(img), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    out = tmp_path / "out"
    r = invoke(["boost", img, "--output", out, "--mode", "r0", "--weights-dir", weights_dir, "--no-cache",
                "--save", "png16,png8,npy,pfm,color", "--colormap", "viridis"])
    assert r.exit_code == 0, r.output
    d = np.load(out / "in.npy")
    np.testing.assert_array_equal(read_pfm(out / "in.pfm"), d)
    assert not (d.min() == 0 and d.max() == 1)  # not min-max rescaled (the PNGs are)
    np.testing.assert_array_equal(cv2.imread(str(out / "in.png"), cv2.IMREAD_UNCHANGED), hio.quantize_16bit(d))
    np.testing.assert_array_equal(cv2.imread(str(out / "in_8bit.png"), cv2.IMREAD_UNCHANGED), hio.quantize_8bit(d))
    np.testing.assert_array_equal(cv2.imread(str(out / "in_color.png")), hio.colorize(d, "viridis"))
