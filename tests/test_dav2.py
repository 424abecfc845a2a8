"""Depth Anything V2: ViT-S parity with the reference golden through the converter, the S/B/L key tables, strict
refusal, the bicubic position-embedding twin, attention formulations, the input rule and the output resize."""

import json

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from typer.testing import CliRunner

from hrjax.models import bicubic, dav2
from hrjax.models.dav2_input import dav2_input_size, prepare_input, resize_output
from hrjax.weights import store
from hrjax.weights.keys import CheckpointMismatch, key_table, match_state_dict
from hrjax.weights.load import load_model

# golden README 7: number of values in each official checkpoint
N_VALUES = {"vits": 24_785_089, "vitb": 97_470_785, "vitl": 335_315_649}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def range_err(cand, gold):
    cand, gold = np.asarray(cand, np.float64), np.asarray(gold, np.float64)
    return float(np.abs(cand - gold).max() / (gold.max() - gold.min()))


def _manifest(golden, size):
    return json.loads((golden / "manifests" / f"dav2_{size}.json").read_text())


# ----------------------------------------------------------------------------------------------------------
# key tables and strict loading (abstract models: nothing is allocated)

@pytest.mark.parametrize("size", ["vits", "vitb", "vitl"])
def test_key_table_matches_manifest(golden, size):
    want = {e["key"]: tuple(e["shape"]) for e in _manifest(golden, size)}
    rows = key_table(nnx.eval_shape(getattr(dav2, f"dav2_{size}")))
    got = {r.key: r.torch_shape for r in rows}
    assert len(rows) == len(got) == len(want)
    assert got == want
    assert sum(int(np.prod(s)) for s in got.values()) == N_VALUES[size]


def _match(model, sd):
    """The converter's strict check (convert_checkpoint runs exactly this on the file's tensors), in memory."""
    return match_state_dict(key_table(nnx.eval_shape(getattr(dav2, model))), sd, what="checkpoint", from_torch=True)


@pytest.mark.parametrize("damage", ["missing", "unexpected", "misshaped"])
def test_converter_rejects_damaged_checkpoint(dav2_vits_state_dict, damage):
    sd = dict(dav2_vits_state_dict)
    key = "pretrained.blocks.7.attn.qkv.weight"
    if damage == "missing":
        del sd[key]
    elif damage == "unexpected":
        key = "pretrained.register_tokens"   # a DINOv2-with-registers checkpoint is not DAv2's encoder
        sd[key] = np.zeros((1, 4, 384), np.float32)
    else:
        sd[key] = np.zeros((384, 1152), np.float32)  # transposed: true shape (1152, 384)
    with pytest.raises(CheckpointMismatch, match=f"{damage.replace('misshaped', 'mis-shaped')} keys") as err:
        _match("dav2_vits", sd)
    assert key in str(err.value)


def test_other_size_is_refused_by_name(golden):
    """A ViT-L file converted as ViT-S: its blocks 12-23 are named as unexpected, the widths as mis-shaped."""
    sd = {e["key"]: np.broadcast_to(np.float32(0), e["shape"]) for e in _manifest(golden, "vitl")}
    with pytest.raises(CheckpointMismatch) as err:
        _match("dav2_vits", sd)
    e = err.value
    assert not e.missing
    assert "pretrained.blocks.23.mlp.fc2.bias" in e.unexpected and len(e.unexpected) == 12 * 14
    assert ("pretrained.pos_embed", (1, 1370, 1024), (1, 1370, 384)) in [(k, tuple(g), tuple(w))
                                                                         for k, g, w in e.misshaped]


# ----------------------------------------------------------------------------------------------------------
# the converted synthetic checkpoint

@pytest.fixture(scope="module")
def dav2_store(tmp_path_factory, dav2_vits_checkpoint):
    """A weights store holding the synthetic ViT-S, converted with hrjax's converter from the official layout."""
    from convert import convert_checkpoint

    wd = tmp_path_factory.mktemp("dav2_weights")
    convert_checkpoint("dav2_vits", dav2_vits_checkpoint, wd, allow_unknown=True)
    return wd


@pytest.fixture(scope="module")
def vits(dav2_store):
    return load_model("dav2_vits", dav2_store)


def test_store_metadata(dav2_store, dav2_vits_checkpoint):
    info = store.read_info(dav2_store, "dav2_vits")
    assert info.source_name == dav2_vits_checkpoint.name == "depth_anything_v2_vits.pth"
    assert info.n_tensors == 239 and info.n_values == N_VALUES["vits"]
    assert info.source_check == "allow-unknown"  # synthetic weights are not the official file


def test_cli_convert(tmp_path, dav2_vits_checkpoint):
    """``hrjax weights convert --model dav2_vits``: the official sha256 is required unless --allow-unknown."""
    import cli

    args = ["weights", "convert", "--model", "dav2_vits", "--source", str(dav2_vits_checkpoint),
            "--weights-dir", str(tmp_path)]
    r = CliRunner().invoke(cli.app, args)
    assert r.exit_code == 1 and "sha256" in r.output and "715fade13be8f229" in r.output, r.output
    r = CliRunner().invoke(cli.app, args + ["--allow-unknown"])
    assert r.exit_code == 0, r.output
    assert store.read_info(tmp_path, "dav2_vits").n_tensors == 239


# Both golden inputs in the default run: 518 x 518 (no position-embedding interpolation, every stored
# intermediate) and 392 x 518 (non-square, the bicubic interpolation with its 0.1 offset), ~20 s together on the
# 2-core CPU. The jax.nn.dot_product_attention path against the same golden is heavy (one more compile).
INTERMEDIATES = {  # golden name -> hrjax features() name
    "pretrained_patch_embed": "patch_embed",
    "pretrained_blocks_2": "blocks_2",
    "pretrained_blocks_11": "blocks_11",
    "depth_head_scratch_refinenet1": "path_1",
    "depth_head_scratch_output_conv1": "output_conv1",
}


@pytest.mark.parametrize("tag,attention", [("518", "exact"), ("392x518", "exact"),
                                           pytest.param("392x518", "xla", marks=pytest.mark.heavy)])
def test_parity_with_reference(golden, vits, tag, attention):
    graphdef, state = vits
    graphdef = nnx.split(dav2.set_attention(nnx.merge(graphdef, state), attention))[0]
    gold = np.load(golden / "dav2_vits_forward.npz")
    x = gold[f"input_{tag}"].transpose(0, 2, 3, 1)
    feats = jax.device_get(jax.jit(lambda st, a: nnx.merge(graphdef, st).features(a))(state, x))
    want = gold[f"output_{tag}"]
    assert feats["out"].shape == want.shape
    err = range_err(feats["out"], want)
    print(f"DAv2-S {tag} ({attention} attention): output max|diff|/range = {err:.2e}")
    assert err <= 1e-4
    if tag != "518":
        return  # intermediates are stored for the first input only (golden README 7)
    for gname, name in INTERMEDIATES.items():
        t = np.asarray(feats[name], np.float64)
        if t.ndim == 4:
            t = t.transpose(0, 3, 1, 2)      # NHWC -> NCHW as stored
        stats = np.array([t.mean(), t.std(), t.min(), t.max()])
        g = gold[f"stage_{gname}_stats"]
        assert np.max(np.abs(stats - g) / (1 + np.abs(g))) <= 1e-4, gname
        first = gold[f"stage_{gname}_first"]  # first 4 channels / first 8 tokens
        assert range_err(t[:, :first.shape[1]], first) <= 1e-4, gname


def test_predict_rejects_bad_shapes(vits):
    graphdef, state = vits
    predict = dav2.predictor(graphdef)
    with pytest.raises(ValueError, match="multiples of 14"):
        predict(state, np.zeros((1, 28, 30, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        predict(state, np.zeros((1, 28, 28), np.float32))


# ----------------------------------------------------------------------------------------------------------
# a tiny model of the same code (random weights) for properties that do not need the real sizes

TINY = dav2.DAv2Config("tiny", embed_dim=32, depth=2, num_heads=4, features=8, out_channels=(4, 8, 16, 32),
                       layer_idx=(0, 0, 1, 1))


@pytest.fixture(scope="module")
def tiny():
    graphdef, state = nnx.split(dav2.DepthAnythingV2(TINY))
    leaves, tree = jax.tree.flatten(state)
    rng = np.random.default_rng(0)
    leaves = [jnp.asarray(rng.standard_normal(a.shape).astype(np.float32) * 0.2) for a in leaves]
    return graphdef, jax.tree.unflatten(tree, leaves)


def test_predict_batched_equals_single(tiny):
    graphdef, state = tiny
    predict = dav2.predictor(graphdef)
    x = np.random.default_rng(1).standard_normal((3, 42, 70, 3)).astype(np.float32)
    batched = np.asarray(predict(state, x))
    assert batched.shape == (3, 42, 70) and (batched >= 0).all()
    singles = np.stack([np.asarray(predict(state, x[i:i + 1]))[0] for i in range(3)])
    np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-5 * float(np.ptp(singles)))


def test_attention_formulations_agree(tiny):
    """The exact path (default) and jax.nn.dot_product_attention agree on the CPU (the cuDNN one needs a GPU)."""
    graphdef, state = tiny
    x = np.random.default_rng(2).standard_normal((2, 56, 42, 3)).astype(np.float32)
    out = {}
    for impl in ("exact", "xla"):
        gd = nnx.split(dav2.set_attention(nnx.merge(graphdef, state), impl))[0]
        out[impl] = np.asarray(jax.jit(lambda st, a: nnx.merge(gd, st).features(a))(state, x)["blocks_1"])
    assert not np.array_equal(out["exact"], np.zeros_like(out["exact"]))
    np.testing.assert_allclose(out["xla"], out["exact"], rtol=0, atol=1e-5 * float(np.abs(out["exact"]).max()))
    with pytest.raises(ValueError, match="attention"):
        dav2.set_attention(nnx.merge(graphdef, state), "flash")


def test_precision_modes(tiny):
    """``layers.configure(precision=...)`` reaches the ViT's matmuls and attention: tf32 is float32 on a CPU,
    bfloat16 rounds the operands (~3 significant digits) and still lands close."""
    from hrjax.models.layers import configure

    graphdef, state = tiny
    x = np.random.default_rng(3).standard_normal((1, 28, 42, 3)).astype(np.float32)
    out = {}
    for p in ("float32", "tf32", "bfloat16"):
        gd = nnx.split(configure(nnx.merge(graphdef, state), precision=p))[0]
        out[p] = np.asarray(jax.jit(lambda st, a: nnx.merge(gd, st).features(a))(state, x)["head_out"])
        assert out[p].dtype == np.float32
    scale = float(np.abs(out["float32"]).max())
    np.testing.assert_allclose(out["tf32"], out["float32"], rtol=0, atol=1e-5 * scale)
    err = float(np.abs(out["bfloat16"] - out["float32"]).max()) / scale
    assert 1e-5 < err < 5e-2, err


@pytest.mark.parametrize("k", [4, 2])
def test_conv_transpose_blocks_equals_dilated(k):
    """The stride == kernel transposed conv as one matmul equals the generic (dilated) formulation."""
    rng = np.random.default_rng(k)
    layer = dav2.BlockConvTranspose2d(6, k)
    layer.weight = nnx.Param(jnp.asarray(rng.standard_normal((k, k, 6, 6)).astype(np.float32)))
    layer.bias = nnx.Param(jnp.asarray(rng.standard_normal(6).astype(np.float32)))
    x = jnp.asarray(rng.standard_normal((2, 5, 7, 6)).astype(np.float32))
    blocks, dilated = np.asarray(layer(x)), np.asarray(layer(x, impl="dilated"))
    assert blocks.shape == (2, 5 * k, 7 * k, 6)
    np.testing.assert_allclose(blocks, dilated, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# position embeddings: torch's bicubic with DINOv2's scale factors

def _torch_bicubic(x_hwc, **kw):
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(np.ascontiguousarray(x_hwc.transpose(2, 0, 1)))[None]
    out = torch.nn.functional.interpolate(t, mode="bicubic", align_corners=False, **kw)
    return out[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("n_out", [(28, 37), (37, 74), (10, 13), (74, 3), (1, 2)])
def test_bicubic_twins_match_torch(n_out):
    x = np.random.default_rng(3).standard_normal((37, 37, 5)).astype(np.float32)
    sf = tuple((n + 0.1) / 37 for n in n_out)
    assert tuple(bicubic.output_size(37, s) for s in sf) == n_out
    ref = _torch_bicubic(x, scale_factor=sf)
    host = bicubic.resize_np(x, n_out, sf)
    dev = np.asarray(bicubic.resize(jnp.asarray(x), n_out, sf))
    scale = float(np.abs(ref).max())
    # the twins evaluate ATen's formulas unfused; the compiled ATen kernel uses FMAs (bicubic module docstring)
    np.testing.assert_allclose(host, ref, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(dev, host, rtol=0, atol=1e-6 * scale)
    # a plain resize to the same size (no 0.1 offset in the scale) is a different map: the offset matters
    plain = _torch_bicubic(x, size=n_out)
    np.testing.assert_allclose(bicubic.resize_np(x, n_out), plain, rtol=0, atol=1e-5 * scale)
    if min(n_out) > 2:
        assert np.abs(plain - ref).max() > 1e-3 * scale


@pytest.mark.parametrize("hw", [(392, 518), (518, 518), (392, 392), (98, 700)])
def test_interpolate_pos_encoding(hw):
    """``interpolate_pos_encoding`` as dinov2.py: untouched only for 518 x 518, else torch's bicubic resize of
    the 37 x 37 grid with scale_factor ((H/14 + 0.1)/37, (W/14 + 0.1)/37); the class token is never resized."""
    vit = dav2.DinoVisionTransformer(TINY)
    pe = np.random.default_rng(4).standard_normal((1, 1370, TINY.embed_dim)).astype(np.float32)
    vit.pos_embed = nnx.Param(jnp.asarray(pe))
    h, w = hw
    ph, pw = h // 14, w // 14
    got = np.asarray(vit.interpolate_pos_encoding(ph, pw, h, w))
    assert got.shape == (1, 1 + ph * pw, TINY.embed_dim)
    if hw == (518, 518):
        assert np.array_equal(got, pe)
        return
    grid = pe[0, 1:].reshape(37, 37, -1)
    want = _torch_bicubic(grid, scale_factor=((ph + 0.1) / 37, (pw + 0.1) / 37)).reshape(ph * pw, -1)
    assert np.array_equal(got[0, 0], pe[0, 0])
    np.testing.assert_allclose(got[0, 1:], want, rtol=0, atol=1e-5 * float(np.abs(want).max()))


# ----------------------------------------------------------------------------------------------------------
# the official input rule and output resize

def _official_size(h, w, size):
    """util/transform.py Resize.get_size (keep_aspect_ratio, ensure_multiple_of=14, lower_bound), step by step."""
    sh, sw = size / h, size / w
    if sw > sh:
        sh = sw
    else:
        sw = sh

    def constrain(x):
        y = (np.round(x / 14) * 14).astype(int)
        if y < size:
            y = (np.ceil(x / 14) * 14).astype(int)
        return int(y)

    return constrain(sh * h), constrain(sw * w)


@pytest.mark.parametrize("h,w,size,want", [
    (494, 640, 518, (518, 672)), (360, 480, 518, (518, 686)), (100, 400, 518, (518, 2072)),
    (518, 518, 518, (518, 518)), (640, 494, 518, (672, 518)), (1, 1, 518, (518, 518)),
])
def test_input_size_examples(h, w, size, want):
    assert dav2_input_size(h, w, size) == want


def test_input_size_rule_odd_sizes():
    rng = np.random.default_rng(5)
    cases = [(int(a), int(b), int(s)) for a, b, s in zip(rng.integers(1, 3000, 300), rng.integers(1, 3000, 300),
                                                         rng.choice([518, 392, 700, 1036], 300))]
    cases += [(37, 53, 518), (101, 77, 518), (517, 519, 518), (3, 1000, 518), (259, 777, 392)]
    for h, w, s in cases:
        rows, cols = dav2_input_size(h, w, s)
        assert (rows, cols) == _official_size(h, w, s), (h, w, s)
        assert rows % 14 == 0 and cols % 14 == 0 and min(rows, cols) >= s


@pytest.mark.parametrize("h,w", [(37, 53), (101, 77), (333, 500), (494, 640)])
def test_prepare_input_matches_image2tensor(h, w):
    """``image2tensor`` written out with OpenCV/numpy: BGR->RGB /255, CUBIC resize in float64, ImageNet
    normalisation in float64, float32 (NCHW there, NHWC here)."""
    bgr = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) / 255.0
    rows, cols = _official_size(h, w, 518)
    want = ((cv2.resize(rgb, (cols, rows), interpolation=cv2.INTER_CUBIC) - IMAGENET_MEAN) / IMAGENET_STD)
    got = prepare_input(rgb)
    assert got.shape == (1, rows, cols, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0], want.astype(np.float32))


@pytest.mark.parametrize("src,dst", [((518, 686), (360, 480)), ((392, 518), (391, 517)), ((42, 56), (101, 77)),
                                     ((14, 28), (1, 1))])
def test_resize_output_matches_infer_image(src, dst):
    """``F.interpolate(depth[:, None], (h, w), mode="bilinear", align_corners=True)`` of ``infer_image``."""
    torch = pytest.importorskip("torch")
    d = np.random.default_rng(6).random((2,) + src).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(d)[:, None], dst, mode="bilinear",
                                           align_corners=True)[:, 0].numpy()
    got = np.asarray(jax.jit(resize_output, static_argnums=1)(d, dst))
    assert got.shape == (2,) + dst
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    # and the align_corners=True formula in float64: src = dst * (in - 1) / (out - 1), linear in each axis

    def axis(n_in, n_out):
        s = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        i0 = np.minimum(np.floor(s).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        m = np.zeros((n_out, n_in))
        np.add.at(m, (np.arange(n_out), i0), 1 - (s - i0))
        np.add.at(m, (np.arange(n_out), i1), s - i0)
        return m
    ref = np.einsum("oh,nhw,pw->nop", axis(src[0], dst[0]), d.astype(np.float64), axis(src[1], dst[1]),
                    optimize=True)
    # torch (and hrjax) hold the scale and the source positions in float32: ~dst * 2^-24 px off the exact ones
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
