"""Dataset generation (SPEC-TRAINING 1), the two commands, and the export of a trained generator to the store."""

import json
import shutil

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import typer
from flax import nnx
from typer.testing import CliRunner

from conftest import flat_arrays
from hrjax.models.layers import Conv2d
from hrjax.train.cli import register
from hrjax.train.data import open_dataset, read_depth16
from hrjax.train.make_dataset import DatasetConfig, crop_grid, make_merge_dataset
from hrjax.train.matlab_resize import imresize


class FakeDepth(nnx.Module):
    """A tiny stand-in for the base network: (N, H, W, 3) normalised RGB -> (N, H, W)."""

    def __init__(self):
        self.conv = Conv2d(3, 1, 3, padding=1)
        self.conv.weight[...] = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3, 3, 1)), jnp.float32)

    def __call__(self, x):
        return jnp.abs(self.conv(x)[..., 0]) + x[..., 0]


def _images(folder, shapes, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(shapes):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 / w, yy * 255 / h, 128 + 100 * np.sin(xx / 5.0)], -1) + rng.normal(0, 10, (h, w, 3))
        cv2.imwrite(str(folder / f"img{i}.png"), np.clip(img, 0, 255).astype(np.uint8)[:, :, ::-1])
    return folder


def _png(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_make_merge_dataset_layout_and_content(tmp_path):
    images = _images(tmp_path / "rgb", [(80, 112), (80, 112)])
    gd, st = nnx.split(FakeDepth())
    cfg = DatasetConfig(scales=((24, 16), (16, 24)), low_res=32, high_res=64, crop_size=32, test_last=1)
    counts = make_merge_dataset(images, tmp_path / "ds", gd, st, cfg)
    per_image = len(crop_grid(80, 112, 24, 16, 0)) + len(crop_grid(80, 112, 16, 24, 100))
    assert per_image == 15 + 12 and counts == {"train": per_image, "test": per_image}
    ds = tmp_path / "ds"
    names = sorted(p.name for p in (ds / "train" / "gtfake").iterdir())
    assert names[0] == "img0_&0_0&.png" and "img0_&103_102&.png" in names and len(names) == per_image
    for sub in ("rgb", "outer", "inner"):
        assert sorted(p.name for p in (ds / "train" / sub).iterdir()) == names
    low, high = _png(ds / "whole_low_est" / "img0.png"), _png(ds / "whole_high_est" / "img0.png")
    assert low.shape == high.shape == (80, 112) and low.dtype == np.uint16
    assert low.min() == high.min() == 0 and low.max() == high.max() == 65535
    assert not np.array_equal(low, high)
    # crop (counter1 1, counter2 2) of scale 0 is rows 32..79, cols 16..63; gtfake <- high, outer <- low
    crop = np.s_[32:80, 16:64]
    np.testing.assert_array_equal(_png(ds / "train" / "gtfake" / "img0_&1_2&.png"), imresize(high[crop], (32, 32)))
    np.testing.assert_array_equal(_png(ds / "train" / "outer" / "img0_&1_2&.png"), imresize(low[crop], (32, 32)))
    rgb = _png(ds / "train" / "rgb" / "img0_&1_2&.png")[:, :, ::-1]
    src = cv2.imread(str(images / "img0.png"))[:, :, ::-1].astype(np.uint16) * 257
    np.testing.assert_array_equal(rgb, imresize(src[32:80, 16:64], (32, 32)))
    inner = _png(ds / "train" / "inner" / "img0_&1_2&.png")
    assert inner.shape == (32, 32) and inner.dtype == np.uint16 and inner.min() == 0 and inner.max() == 65535
    assert (ds / "test" / "inner" / "img1_&0_0&.png").is_file()
    # the loader reads what the generator writes
    d = open_dataset(ds)
    assert len(d) == per_image and d.size == (32, 32)
    # a ground-truth folder replaces the high-res estimate as the target
    gt = tmp_path / "gt"
    gt.mkdir()
    g = np.random.default_rng(3).random((80, 112)).astype(np.float32)
    g[0, 0] = np.nan
    cv2.imwrite(str(gt / "img0.tiff"), g)
    cv2.imwrite(str(gt / "img1.tiff"), g)
    make_merge_dataset(images, tmp_path / "ds_gt", gd, st, DatasetConfig(scales=((24, 16),), low_res=32, high_res=64,
                                                                          crop_size=32), gt_dir=gt)
    from hrjax.io import quantize_16bit
    q = quantize_16bit(np.where(np.isnan(g), np.nanmin(g), g))
    np.testing.assert_array_equal(_png(tmp_path / "ds_gt" / "train" / "gtfake" / "img0_&1_2&.png"),
                                  imresize(q[32:80, 16:64], (32, 32)))


@pytest.fixture
def app():
    a = typer.Typer()
    register(a)
    return a


def test_commands_generate_train_resume_and_export(tmp_path, app, weights_dir):
    runner = CliRunner()
    images = _images(tmp_path / "rgb", [(64, 64)])
    # one MiDaS input shape (64^2) for the whole image and the crops keeps this test quick
    r = runner.invoke(app, ["make-merge-dataset", "--images", str(images), "--out", str(tmp_path / "ds"),
                            "--base-model", "midas_v21", "--weights-dir", str(weights_dir), "--scales", "16:16",
                            "--crop-size", "32", "--low-res", "64", "--high-res", "64"])
    assert r.exit_code == 0, r.output
    assert "wrote 9 train and 0 test crops" in r.output
    assert read_depth16(tmp_path / "ds" / "train" / "inner" / "img0_&0_0&.png").shape == (32, 32)

    args = ["train-merge", "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--batch", "5", "--log-every", "1", "--ngf", "4", "--num-downs", "5", "--ndf", "4", "--net-size", "32",
            "--gf-radius", "4", "--max-steps", "1", "--workers", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "trained 1/2 steps" in r.output
    r = runner.invoke(app, args)
    assert r.exit_code == 1 and "already holds checkpoints" in r.output
    r = runner.invoke(app, args[:-4] + ["--workers", "1", "--resume"])
    assert r.exit_code == 0, r.output
    assert "resumed from step 1" in r.output and "trained 2/2 steps" in r.output
    log = [json.loads(s) for s in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2] and all(np.isfinite(x["G_L1"]) for x in log)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]

    # the export has the generator's keys and shapes and runs as a merge net
    from hrjax.models.mergenet import UnetGenerator
    from hrjax.weights.keys import fill_state, key_table, match_state_dict
    from hrjax.weights.load import load_model
    from hrjax.weights.store import load_flat
    flat, info = load_flat(tmp_path / "run" / "weights", "mergenet")
    net = UnetGenerator(ngf=4, num_downs=5)
    state = fill_state(net, match_state_dict(key_table(net), flat, what="export", from_torch=False))
    y = nnx.merge(nnx.split(net)[0], state)(jnp.zeros((1, 32, 32, 2), jnp.float32))
    assert y.shape == (1, 32, 32, 1) and info.n_tensors == len(flat) == 11
    # the store records the architecture, so the standard loader builds this net, to run at its training size
    assert info.architecture == {"ngf": 4, "num_downs": 5, "input_size": 32}
    graphdef, loaded = load_model("mergenet", tmp_path / "run" / "weights")
    merged = nnx.merge(graphdef, loaded)
    assert merged.input_size == 32 and merged.num_downs == 5
    np.testing.assert_array_equal(np.asarray(merged(jnp.zeros((1, 32, 32, 2), jnp.float32))), np.asarray(y))


def test_full_size_generator_export_loads_and_boosts(tmp_path, weights_dir):
    """The export path with a full-size unet_1024 (initialised, not trained: a 1024^2 G+D step takes minutes on
    CPU): hrjax's standard loader builds and fills it, and the boosting pipeline runs with it."""
    from hrjax.pipeline.boost import boost
    from hrjax.pipeline.config import BoostConfig
    from hrjax.pipeline.networks import load_models
    from hrjax.train.checkpoint import export_generator
    from hrjax.train.nets import NetConfig, NetDef
    from hrjax.weights.load import load_model

    g = NetDef(NetConfig().build_g)
    params = jax.device_get(g.init(jax.random.PRNGKey(1)))
    wd = tmp_path / "weights"
    export_generator(params, wd, "mergenet")
    graphdef, state = load_model("mergenet", wd)
    loaded = flat_arrays(state)
    assert loaded.keys() == params.keys() and all(np.array_equal(loaded[k], params[k]) for k in params)
    shutil.copytree(weights_dir / "midas_v21", wd / "midas_v21")
    img = np.random.default_rng(0).random((48, 64, 3))
    # the default grouped conv, as the session's pipeline tests (conftest.auto_models): programs compiled already
    res = boost(load_models(wd), img, BoostConfig(mode="r0"))
    assert res.depth.shape == (48, 64) and np.isfinite(res.depth).all()
    assert res.depth.std() > 0
