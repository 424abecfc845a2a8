"""MiDaS v2.1: parity with the reference golden, key table, strict converter, weights store."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from convert import read_torch_state_dict
from hrjax.models import midas_v21
from hrjax.models.layers import set_grouped_impl
from hrjax.pipeline.midas_input import midas_input_size
from hrjax.weights import store
from hrjax.weights.keys import CheckpointMismatch, key_table, match_state_dict
from hrjax.weights.load import load_model


def range_err(cand, gold):
    cand, gold = np.asarray(cand, np.float64), np.asarray(gold, np.float64)
    return float(np.abs(cand - gold).max() / (gold.max() - gold.min()))


@pytest.fixture(scope="module")
def midas_state(weights_dir, models):
    """The session's converted store and its loaded MiDaS (graphdef, state)."""
    return weights_dir, (models.base_graphdef, models.base_state)


@pytest.fixture(scope="module")
def features_fn(midas_state):
    """``features_fn(grouped_impl)`` -> jitted ``(state, x) -> every named intermediate``."""
    _, (graphdef, state) = midas_state

    def make(grouped_impl):
        gd, _ = nnx.split(set_grouped_impl(nnx.merge(graphdef, state), grouped_impl))
        return jax.jit(lambda st, x: nnx.merge(gd, st).features(x))

    return make


def test_key_table_matches_manifest(golden):
    manifest = json.loads((golden / "manifests" / "midas_v21.json").read_text())
    want = {e["key"]: tuple(e["shape"]) for e in manifest if e["dtype"] == "float32"}
    rows = {r.key: r.torch_shape for r in key_table(nnx.eval_shape(midas_v21.MidasNet))}
    assert rows == want
    assert sum(np.prod(s) for s in rows.values()) == 105_565_929 - 104  # all but num_batches_tracked


# Each input is checked in the default run with "kernel" (hrjax's CPU grouped convolution: what "auto" runs on
# the tests' CPU backend, in every pipeline golden too) and 384x384 with "packed" (the CPU fallback where no C++
# compiler builds the kernel; it calls the native one on its wide groups). The other formulations are the same
# convolution layer by layer (tests/test_cpu_backend.py, tests/test_grouped_conv.py), so their whole-network runs
# are marked heavy: "split" alone costs ~15 s of compiling per input shape (32 convolutions per grouped layer).
@pytest.mark.parametrize("hw,grouped_impl", [("256x320", "kernel"), ("384x384", "kernel"), ("384x384", "packed"),
                                             pytest.param("256x320", "packed", marks=pytest.mark.heavy),
                                             pytest.param("256x320", "split", marks=pytest.mark.heavy),
                                             pytest.param("384x384", "native", marks=pytest.mark.heavy),
                                             pytest.param("256x320", "native", marks=pytest.mark.heavy),
                                             pytest.param("384x384", "split", marks=pytest.mark.heavy)])
def test_parity_with_reference(golden, midas_state, features_fn, hw, grouped_impl):
    """Every grouped-conv formulation (hrjax.models.layers.GROUPED_IMPLS) matches the reference."""
    _, (_, state) = midas_state
    gold = np.load(golden / "midas_v21_forward.npz")
    x = gold[f"midas_in_{hw}"].transpose(0, 2, 3, 1)
    feats = jax.device_get(features_fn(grouped_impl)(state, x))
    err = range_err(feats["out"], gold[f"midas_out_{hw}"])
    print(f"MiDaS {hw} ({grouped_impl}): output max|diff|/range = {err:.2e}")
    assert err <= 5e-5
    for name in ("layer_1", "layer_2", "layer_3", "layer_4", "layer_1_rn", "layer_2_rn", "layer_3_rn",
                 "layer_4_rn", "path_4", "path_3", "path_2", "path_1", "head_conv0", "head_up", "head_conv2",
                 "head_pre_relu"):
        t = np.asarray(feats[name], np.float64).transpose(0, 3, 1, 2)
        assert tuple(gold[f"stage_{hw}_{name}_shape"]) == t.shape, name
        stats = np.array([t.mean(), t.std(), t.min(), t.max()])
        g = gold[f"stage_{hw}_{name}_stats"]
        assert np.max(np.abs(stats - g) / (1 + np.abs(g))) <= 1e-4, name
        for suffix, n in (("", None), ("_c8", 8), ("_c2", 2)):
            key = f"stage_{hw}_{name}{suffix}"
            if key in gold.files:
                assert range_err(t[:, :n], gold[key]) <= 1e-4, key


def test_predict_batched_equals_single(midas_state):
    """Batch 3 == 3 single passes == vmap. The native grouped conv: XLA:CPU compiles the vmapped split
    formulation very slowly, and batching is not formulation-specific (both have their parity tests)."""
    _, (graphdef, state) = midas_state
    graphdef = nnx.split(set_grouped_impl(nnx.merge(graphdef, state), "native"))[0]
    predict = midas_v21.predictor(graphdef)
    x = np.random.default_rng(0).standard_normal((3, 64, 96, 3)).astype(np.float32)
    batched = np.asarray(predict(state, x))
    assert batched.shape == (3, 64, 96)
    singles = np.stack([np.asarray(predict(state, x[i:i + 1]))[0] for i in range(3)])
    np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-5 * float(np.ptp(singles)))
    vmapped = jax.vmap(lambda im: predict(state, im[None])[0])(x)
    np.testing.assert_allclose(np.asarray(vmapped), singles, rtol=0, atol=1e-5 * float(np.ptp(singles)))
    assert (batched >= 0).all()


def test_predict_rejects_bad_shapes(midas_state):
    _, (graphdef, state) = midas_state
    predict = midas_v21.predictor(graphdef)
    with pytest.raises(ValueError, match="multiples of 32"):
        predict(state, np.zeros((1, 40, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        predict(state, np.zeros((1, 64, 64), np.float32))


def test_store_metadata_and_list(midas_state, midas_checkpoint):
    wd, _ = midas_state
    info = store.read_info(wd, "midas_v21")
    assert info.source_name == midas_checkpoint.name
    assert len(info.source_sha256) == 64 and info.converter_version == store.CONVERTER_VERSION
    assert info.n_tensors == 562 and info.n_values == 105_565_929 - 104
    assert [i.model for i in store.list_installed(wd)] == ["mergenet", "midas_v21"]
    assert not [p for p in wd.iterdir() if p.name.startswith(".")], "temporary folders left behind"


@pytest.fixture(scope="module")
def synth_sd(synth_state_dicts):
    return synth_state_dicts["midas_v21"]


def _match(sd):
    """The converter's strict check (convert_checkpoint runs exactly this on the file's tensors), in memory."""
    from hrjax.weights import catalog
    net = nnx.eval_shape(catalog.get("midas_v21").build)
    return match_state_dict(key_table(net), sd, what="checkpoint", from_torch=True)


@pytest.mark.parametrize("damage", ["missing", "unexpected", "misshaped"])
def test_converter_rejects_damaged_checkpoint(synth_sd, damage):
    sd = dict(synth_sd)
    key = "pretrained.layer3.17.conv2.weight"
    if damage == "missing":
        del sd[key]
    elif damage == "unexpected":
        key = "scratch.refinenet5.resConfUnit1.conv1.weight"
        sd[key] = np.zeros((3, 3), np.float32)
    else:
        sd[key] = np.zeros((1024, 16, 3, 3), np.float32)  # true shape: (1024, 32, 3, 3)
    with pytest.raises(CheckpointMismatch, match=f"{damage.replace('misshaped', 'mis-shaped')} keys") as err:
        _match(sd)
    assert key in str(err.value)


def test_converter_accepts_untracked_batchnorm_counters(synth_sd):
    """The official v2.1 file may omit num_batches_tracked (golden README 3): accepted either way."""
    without = {k: v for k, v in synth_sd.items() if not k.endswith("num_batches_tracked")}
    assert len(without) == 562 < len(synth_sd)
    assert _match(without).keys() == _match(synth_sd).keys()


def test_reader_unwraps_model_optimizer_checkpoints(tmp_path):
    """A ``{"model": ..., "optimizer": ...}`` file is unwrapped like MidasNet.load does (SPEC 6.1)."""
    torch = pytest.importorskip("torch")
    sd = {"scratch.output_conv.4.bias": torch.tensor([10.0]), "pretrained.layer1.0.weight": torch.ones(2, 3)}
    src = tmp_path / "wrapped.pt"
    torch.save({"model": sd, "optimizer": {}}, src)
    got = read_torch_state_dict(src)
    assert got.keys() == sd.keys() and all(np.array_equal(got[k], sd[k].numpy()) for k in sd)


def test_truncated_store_is_reported(tmp_path, midas_state):
    import shutil
    wd, _ = midas_state
    copy = tmp_path / "w"
    shutil.copytree(wd / "midas_v21", copy / "midas_v21")
    data = sorted((copy / "midas_v21" / store.PARAMS_DIR).rglob("*"), key=lambda p: p.stat().st_size)[-1]
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(store.WeightsError, match="hrjax weights") as e:
        load_model("midas_v21", copy)
    assert f"{data.relative_to(copy / 'midas_v21' / store.PARAMS_DIR).as_posix()} has" in str(e.value)


def test_missing_weights_message(tmp_path):
    with pytest.raises(store.WeightsError, match="hrjax weights convert --model midas_v21"):
        load_model("midas_v21", tmp_path)


@pytest.mark.parametrize("h,w,msize,want", [
    (494, 640, 384, (288, 384)), (494, 640, 576, (448, 576)), (494, 640, 1568, (1216, 1568)),
    (360, 480, 384, (288, 384)), (360, 480, 960, (704, 960)), (768, 768, 384, (384, 384)),
    (770, 767, 768, (768, 768)), (40, 2000, 384, (32, 384)), (2000, 40, 768, (768, 32)),
])
def test_midas_input_size(h, w, msize, want):
    assert midas_input_size(h, w, msize) == want


@pytest.mark.parametrize("stride", [1, 2])
def test_grouped_conv_formulations_agree(stride):
    """``native`` (one grouped lax.conv) and ``split`` (one dense conv per group) are the same convolution."""
    from hrjax.models.layers import conv2d

    rng = np.random.default_rng(stride)
    x = rng.standard_normal((2, 13, 11, 32)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 48)).astype(np.float32)   # 8 groups of 4 -> 6 channels
    native = conv2d(x, w, stride=stride, padding=1, groups=8, grouped_impl="native")
    split = jax.jit(lambda a, b: conv2d(a, b, stride=stride, padding=1, groups=8, grouped_impl="split"))(x, w)
    assert native.shape == split.shape == (2, (13 + 2 - 3) // stride + 1, (11 + 2 - 3) // stride + 1, 48)
    np.testing.assert_allclose(np.asarray(split), np.asarray(native), rtol=0, atol=1e-5)
    # and both are the reference grouped convolution (float64 numpy)
    ref = np.zeros(native.shape)
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    for g in range(8):
        for a in range(3):
            for b in range(3):
                patch = xp[:, a:a + stride * (native.shape[1] - 1) + 1:stride,
                           b:b + stride * (native.shape[2] - 1) + 1:stride, 4 * g:4 * g + 4]
                ref[..., 6 * g:6 * g + 6] += patch @ w[a, b, :, 6 * g:6 * g + 6]
    np.testing.assert_allclose(np.asarray(native), ref, rtol=0, atol=1e-4)


def test_precision_modes():
    """tf32 is float32 on CPU; bfloat16 rounds the operands (~3 significant digits) and accumulates in float32."""
    from hrjax.models.layers import PRECISIONS, conv2d, configure

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 16, 16, 64)).astype(np.float32)
    w = rng.standard_normal((3, 3, 64, 32)).astype(np.float32) / 24
    out = {p: np.asarray(conv2d(x, w, stride=1, padding=1, precision=p)) for p in PRECISIONS}
    assert all(o.dtype == np.float32 for o in out.values())
    scale = np.abs(out["float32"]).max()
    if jax.default_backend() == "cpu":
        np.testing.assert_allclose(out["tf32"], out["float32"], rtol=0, atol=1e-6 * scale)
    err = np.abs(out["bfloat16"] - out["float32"]).max() / scale
    assert 1e-5 < err < 2e-2, err   # really rounded, and still close
    with pytest.raises(ValueError, match="precision"):
        configure(midas_v21.MidasNet(), precision="float16")
    with pytest.raises(ValueError, match="grouped_impl"):
        configure(midas_v21.MidasNet(), grouped_impl="fft")
