"""Bring your own estimates (``hrjax merge``, ``hrjax.merge_estimates``) and the plain single pass
(``hrjax predict``, ``hrjax.predict``), with synthetic weights on a small image.

The merge's acceptance: given the pipeline's own whole-image single estimates it returns the pipeline's r0 map.
"""

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from hrjax import io
from hrjax.eval.pfm import write_pfm
from hrjax.pipeline.boost import boost
from hrjax.pipeline.config import BoostConfig
from hrjax.pipeline.merge_estimates import EstimateError, merge_estimates

IMAGE = "images/synthetic_480.png"


@pytest.fixture(scope="module")
def small_image(golden):
    """synthetic_480 at a third (120 x 160): every pass at 384 or below, so each test takes seconds."""
    img = io.read_image(golden / IMAGE)
    return cv2.resize(img, (160, 120), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def r0_run(auto_models, small_image):
    return boost(auto_models, small_image, BoostConfig(mode="r0", max_batch=1), keep_intermediates=True)


def test_merge_of_the_pipelines_own_estimates_is_its_double_estimate(auto_models, r0_run):
    low = r0_run.intermediates["whole_single_low"]
    high = r0_run.intermediates["whole_single_high"]
    assert low.shape == high.shape == r0_run.depth.shape
    got = merge_estimates(auto_models, low, high)
    assert got.shape == r0_run.depth.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, r0_run.depth)
    # the merge net min-maxes its inputs itself (SPEC 4.3): scale and shift change nothing beyond float noise
    scaled = merge_estimates(auto_models, 10 * low + 3, 0.5 * high - 1)
    np.testing.assert_allclose(scaled, r0_run.depth, atol=1e-4 * np.ptp(r0_run.depth))
    # depth=True inverts: a depth map 1/d gives the inverse-depth map d back
    inv = merge_estimates(auto_models, 1 / (low + 0.5), 1 / (high + 0.5), depth=True)
    np.testing.assert_allclose(inv, merge_estimates(auto_models, low + 0.5, high + 0.5), atol=1e-4)
    # polarity matters: a flipped map is not the same merge
    assert np.abs(merge_estimates(auto_models, -low, -high) - r0_run.depth).max() > 1e-2


def test_merge_refuses_bad_maps(auto_models, r0_run):
    low = r0_run.intermediates["whole_single_low"]
    nan = low.copy()
    nan[3, 4] = np.nan
    bad = {"NaN/infinite": (nan, low), "constant map": (np.full_like(low, 0.5), low),
           "one (H, W) channel": (np.stack([low] * 3, -1), low),
           "aspect ratios": (low, low[:, :80]), "takes depth > 0": (low, low)}
    for what, (a, b) in bad.items():
        with pytest.raises(EstimateError, match=re.escape(what)):
            merge_estimates(auto_models, a, b, depth=what == "takes depth > 0")


def _invoke(*args):
    return CliRunner().invoke(cli.app, [str(a) for a in args], catch_exceptions=False)


def test_merge_cli_formats_and_errors(weights_dir, r0_run, tmp_path):
    low = r0_run.intermediates["whole_single_low"]
    high = r0_run.intermediates["whole_single_high"]
    ins = tmp_path / "in"
    ins.mkdir()
    np.save(ins / "low.npy", low)
    write_pfm(ins / "high.pfm", high)
    io.write_png16(ins / "low.png", low)
    io.write_png16(ins / "high.png", high)
    out = tmp_path / "out"
    common = ["--weights-dir", weights_dir, "--output", out]
    r = _invoke("merge", ins / "low.npy", ins / "high.pfm", *common, "--save", "png16,npy,pfm")
    assert r.exit_code == 0, r.output
    # the CLI's default grouped conv differs from the test models' only in the base net: the merge is the same
    np.testing.assert_array_equal(np.load(out / "high.npy"), r0_run.depth)
    np.testing.assert_array_equal(cv2.imread(str(out / "high.png"), cv2.IMREAD_UNCHANGED),
                                  io.quantize_16bit(r0_run.depth))
    assert (out / "high.pfm").is_file()
    # 16-bit PNGs (quantised: close, not equal) and --name
    r = _invoke("merge", ins / "low.png", ins / "high.png", *common, "--name", "photo", "--save", "npy")
    assert r.exit_code == 0, r.output
    assert np.abs(np.load(out / "photo.npy") - r0_run.depth).max() < 2e-3
    # errors: a constant map, a different image's shape, a missing file, an output onto an input
    io.write_png16(ins / "flat.png", np.zeros((120, 160), np.float32))
    np.save(ins / "wide.npy", low[:, :80])
    before = sorted(p.name for p in out.iterdir())
    for args, code, says in [((ins / "flat.png", ins / "high.png"), 1, "constant map"),
                             ((ins / "low.npy", ins / "wide.npy"), 1, "aspect ratios"),
                             ((ins / "low.npy", ins / "nope.npy"), 2, "no such file"),
                             ((ins / "low.npy", ins / "high.png", "--output", ins, "--name", "high"), 2,
                              "overwrite its input")]:
        a = list(args) + (common if "--output" not in args else ["--weights-dir", weights_dir])
        r = _invoke("merge", *a)
        assert r.exit_code == code and says in r.output, (args, r.output)
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written by a failed merge


def _imports_of_cli(*args) -> tuple[int, str, set[str]]:
    """Run the CLI in a subprocess with -X importtime: exit code, stderr, top-level modules imported."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", "import cli; cli.main()", *map(str, args)],
                       capture_output=True, text=True, timeout=120)
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in p.stderr.splitlines()
                if line.startswith("import time:")}
    return p.returncode, p.stderr, imported


def test_bad_inputs_fail_before_jax_loads(weights_dir, tmp_path):
    """A map that cannot be merged and weights that are not installed are reported before jax is imported."""
    flat = tmp_path / "flat.npy"
    np.save(flat, np.ones((12, 16), np.float32))
    np.save(tmp_path / "ramp.npy", np.arange(192, dtype=np.float32).reshape(12, 16))
    code, stderr, imported = _imports_of_cli("merge", flat, tmp_path / "ramp.npy", "-o", tmp_path / "out",
                                             "--weights-dir", weights_dir)
    assert code == 1 and "constant map" in stderr and not imported & {"jax", "flax"}, stderr[-2000:]
    code, stderr, imported = _imports_of_cli("predict", flat, "-o", tmp_path / "out", "--model", "dav2_vits",
                                             "--weights-dir", weights_dir)
    assert code == 2 and "dav2_vits" in stderr and not imported & {"jax", "flax"}, stderr[-2000:]
    assert not (tmp_path / "out").exists()


# --- hrjax predict / hrjax.predict --------------------------------------------------------------------------

def test_predict_midas_is_the_references_single_estimate(auto_models, small_image, r0_run):
    """MiDaS's plain pass is the reference's estimatemidas at 384 (SPEC 3.2), which the pipeline's whole-image
    low pass also is (checked there against the goldens); two code paths, the same map."""
    import hrjax

    got = hrjax.predict(auto_models, small_image)
    want = r0_run.intermediates["whole_single_low"]
    assert got.shape == small_image.shape[:2] and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert got.min() == 0 and got.max() == 1  # min-maxed, as estimatemidas


def _bilinear_align_corners(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """torch's F.interpolate(bilinear, align_corners=True) of one map, in float64 numpy (the official resize)."""
    (h, w), (H, W) = x.shape, hw
    ys, xs = np.linspace(0, h - 1, H), np.linspace(0, w - 1, W)
    y0, x0 = np.minimum(ys.astype(int), h - 2), np.minimum(xs.astype(int), w - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    x = x.astype(np.float64)
    top = x[y0][:, x0] * (1 - fx) + x[y0][:, x0 + 1] * fx
    bottom = x[y0 + 1][:, x0] * (1 - fx) + x[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


@pytest.fixture(scope="module")
def dav2_net(dav2_weights_dir):
    from hrjax.weights.load import load_model

    return load_model("dav2_vits", dav2_weights_dir)


def test_predict_dav2_is_the_official_infer_image(dav2_net, small_image):
    """DAv2's plain pass is the official infer_image at 518: short side 518 on the 14-px grid, the raw network
    output resized back bilinearly (align_corners), no min-max."""
    from hrjax.bases import get_base
    from hrjax.models.dav2 import predictor
    from hrjax.models.dav2_input import prepare_input
    from hrjax.pipeline.image import to_rgb_float64
    from hrjax.pipeline.single_pass import single_pass

    got = single_pass(get_base("dav2_vits"), *dav2_net, small_image)
    x = prepare_input(to_rgb_float64(small_image))
    assert x.shape == (1, 518, 686, 3)  # 120 x 160: short side 518, 690.7 -> 686 (lower_bound, np.round)
    raw = np.asarray(predictor(dav2_net[0])(dav2_net[1], x))[0]
    assert got.shape == small_image.shape[:2] and np.isfinite(got).all()
    np.testing.assert_allclose(got, _bilinear_align_corners(raw, got.shape), atol=1e-5 * np.ptp(raw))


def test_predict_cli_writes_resumes_and_isolates_failures(dav2_weights_dir, dav2_net, small_image, tmp_path):
    from hrjax.bases import get_base
    from hrjax.pipeline.single_pass import single_pass

    ins = tmp_path / "in"
    ins.mkdir()
    cv2.imwrite(str(ins / "a.png"), cv2.cvtColor(np.round(small_image * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    (ins / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    args = ["predict", ins, "--model", "dav2_vits", "--weights-dir", dav2_weights_dir, "-o", out,
            "--save", "png16,npy"]
    r = _invoke(*args)
    assert r.exit_code == 1 and "failed" in r.output and "broken.jpg" in r.output, r.output
    want = single_pass(get_base("dav2_vits"), *dav2_net, io.read_image(ins / "a.png"))
    np.testing.assert_array_equal(np.load(out / "a.npy"), want)
    np.testing.assert_array_equal(cv2.imread(str(out / "a.png"), cv2.IMREAD_UNCHANGED), io.quantize_16bit(want))
    assert not (out / "broken.png").exists()
    # a rerun skips the finished image (its record), --overwrite redoes it; outputs are never taken as inputs
    (ins / "broken.jpg").unlink()
    r = _invoke(*args)
    assert r.exit_code == 0 and "1 skipped" in r.output, r.output
    r = _invoke(*args[:-2], "--save", "png16", "--overwrite", "--quiet")
    assert r.exit_code == 0 and r.output == "", r.output
    # usage errors: a missing input, weights not installed for the model
    assert _invoke("predict", tmp_path / "nope.png", "-o", out, "--weights-dir", dav2_weights_dir).exit_code == 2
    r = _invoke("predict", ins, "-o", out, "--model", "leres_res101", "--weights-dir", dav2_weights_dir)
    assert r.exit_code == 2 and "leres_res101" in r.output


def test_predict_run_gives_the_heap_back_after_each_image(tmp_path, monkeypatch):
    """Like the folder run of ``hrjax boost``: the heap releaser runs while images are predicted, and free pages
    go back after each image predicted (not after one skipped); the weights load only when an image is to do."""
    import hrjax.host_memory as hm
    from hrjax.run.inputs import Job
    from hrjax.run.outputs import RunOptions, parse_save
    from hrjax.run.predict import run_predict

    released, loads = [], []
    monkeypatch.setattr(hm, "free_heap_bytes", lambda: 0)  # the releaser thread sees nothing to give back
    monkeypatch.setattr(hm, "release_free_memory", lambda: released.append(1) or True)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((8, 12, 3), 100, np.uint8))
    jobs = [Job(tmp_path / n, Path(n).stem) for n in ("a.png", "b.png")]
    opts = RunOptions(output=tmp_path / "out", save=parse_save(["npy"]))

    def load():
        loads.append(1)
        return lambda img: np.linspace(0, 1, img.shape[0] * img.shape[1], dtype=np.float32).reshape(img.shape[:2])

    at_exit = 1 if hm._MALLOC_TRIM is not None else 0  # the releaser's own release when it stops (glibc only)
    recs = run_predict(jobs, opts, {"model": "fake"}, load, lambda rec: None)
    assert [r.status for r in recs] == ["done", "done"] and loads == [1]
    assert len(released) == 2 + at_exit
    released.clear()
    recs = run_predict(jobs, opts, {"model": "fake"}, load, lambda rec: None)
    assert [r.status for r in recs] == ["skipped", "skipped"] and loads == [1]
    assert len(released) == at_exit


@pytest.mark.heavy
def test_predict_leres_is_raw_and_square(leres_weights_dir, small_image):
    """LeReS's plain pass is estimateleres at 448 (SPEC 3.3): a 448^2 input whatever the aspect ratio, raw."""
    from hrjax.bases import get_base
    from hrjax.pipeline.single_pass import single_pass
    from hrjax.weights.load import load_model

    base = get_base("leres_res101")
    assert base.input_size(120, 160, base.receptive_field) == (448, 448)
    got = single_pass(base, *load_model("leres_res101", leres_weights_dir), small_image)
    assert got.shape == small_image.shape[:2] and np.isfinite(got).all() and np.ptp(got) > 0
