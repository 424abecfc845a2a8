"""LeReS ResNeXt-101: parity with the reference golden (through the converter), key table, strict converter."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

import cli
from convert import unwrap_state_dict
from hrjax.models import leres
from hrjax.models.layers import set_grouped_impl
from hrjax.weights import catalog, store
from hrjax.weights.keys import CheckpointMismatch, key_table, match_state_dict
from hrjax.weights.load import fix_it_commands, load_model

N_TENSORS = 600                      # float32 entries of manifests/leres_res101.json (712 with the counters)
N_VALUES = 115_568_177 - 112         # golden README 7, less the 112 BatchNorm num_batches_tracked entries


def range_err(cand, gold):
    cand, gold = np.asarray(cand, np.float64), np.asarray(gold, np.float64)
    return float(np.abs(cand - gold).max() / (gold.max() - gold.min()))


@pytest.fixture(scope="module")
def leres_model(leres_weights_dir):
    """(graphdef, state) of the synthetic LeReS as stored by the converter, loaded like every model."""
    return load_model("leres_res101", leres_weights_dir)


def test_key_table_matches_manifest(golden):
    manifest = json.loads((golden / "manifests" / "leres_res101.json").read_text())
    want = {e["key"]: tuple(e["shape"]) for e in manifest if e["dtype"] == "float32"}
    rows = {r.key: r.torch_shape for r in key_table(nnx.eval_shape(leres.LeReS))}
    assert rows == want
    assert len(rows) == N_TENSORS and sum(np.prod(s) for s in rows.values()) == N_VALUES


# One input per grouped-conv formulation (hrjax.models.layers.GROUPED_IMPLS). "kernel", what "auto" runs on the
# tests' CPU backend, runs by default; packed, native and split (~4x the compile time) are heavy: the blocks are
# MiDaS's (hrjax.models.resnext), whose packed parity runs by default in test_midas.
@pytest.mark.parametrize("tag,grouped_impl", [("448", "kernel"),
                                              pytest.param("448", "packed", marks=pytest.mark.heavy),
                                              pytest.param("448", "native", marks=pytest.mark.heavy),
                                              pytest.param("320x448", "split", marks=pytest.mark.heavy)])
def test_parity_with_reference(golden, leres_model, tag, grouped_impl):
    graphdef, state = leres_model
    gd, _ = nnx.split(set_grouped_impl(nnx.merge(graphdef, state), grouped_impl))
    gold = np.load(golden / "leres_res101_forward.npz")
    x = gold[f"input_{tag}"].transpose(0, 2, 3, 1)
    feats = jax.device_get(jax.jit(lambda st, im: nnx.merge(gd, st).features(im))(state, x))
    err = range_err(feats["out"], gold[f"output_{tag}"][:, 0])
    print(f"LeReS {tag} ({grouped_impl}): output max|diff|/range = {err:.2e}")
    assert err <= 5e-5  # golden README 7 (float32 noise 2.2e-6)
    out = feats["out"].astype(np.float64)
    stats = np.array([out.mean(), out.std(), out.min(), out.max()])
    assert np.max(np.abs(stats - gold[f"output_{tag}_stats"]) / (1 + np.abs(gold[f"output_{tag}_stats"]))) <= 1e-4
    if tag != "448":
        return  # the intermediates are stored for the first input only
    # forward hooks of the reference: encoder_modules returns a list, the hook kept its first map (layer1)
    for name, t in (("encoder_modules", feats["encoder_0"]), ("decoder_modules", feats["decoder"])):
        t = np.asarray(t, np.float64).transpose(0, 3, 1, 2)
        g = gold[f"stage_depth_model_{name}_stats"]
        assert np.max(np.abs(np.array([t.mean(), t.std(), t.min(), t.max()]) - g) / (1 + np.abs(g))) <= 1e-4, name
        first = gold[f"stage_depth_model_{name}_first"]
        assert first.shape[1] <= 4 and t.shape[2:] == first.shape[2:], name
        assert range_err(t[:, :first.shape[1]], first) <= 1e-4, name
    assert [feats[f"encoder_{k}"].shape[1:] for k in range(4)] == [
        (112, 112, 256), (56, 56, 512), (28, 28, 1024), (14, 14, 2048)]


def test_predict_checks_and_batches(leres_model):
    """Batch 2 == two single passes (a small input, the native grouped conv: batching is formulation-free);
    a size the decoder cannot line up is refused before tracing."""
    graphdef, state = leres_model
    gd = nnx.split(set_grouped_impl(nnx.merge(graphdef, state), "native"))[0]
    predict = leres.predictor(gd)
    x = np.random.default_rng(0).standard_normal((2, 32, 64, 3)).astype(np.float32)
    batched = np.asarray(predict(state, x))
    assert batched.shape == (2, 32, 64)
    singles = np.stack([np.asarray(predict(state, x[i:i + 1]))[0] for i in range(2)])
    np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-5 * float(np.ptp(singles)))
    with pytest.raises(ValueError, match="multiples of 32"):
        predict(state, np.zeros((1, 48, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        predict(state, np.zeros((1, 64, 64), np.float32))


def test_store_metadata(leres_weights_dir, leres_checkpoint):
    info = store.read_info(leres_weights_dir, "leres_res101")
    assert info.source_name == leres_checkpoint.name and info.source_check == "allow-unknown"
    assert info.n_tensors == N_TENSORS and info.n_values == N_VALUES


def test_cli_convert_gives_the_same_store(tmp_path, leres_checkpoint, leres_weights_dir):
    """``hrjax weights convert --model leres_res101 --source res101.pth``: the official layout (wrapped under
    "depth_model", "module." on every key) converts to exactly the arrays of the API's conversion."""
    from typer.testing import CliRunner

    args = ["weights", "convert", "--model", "leres_res101", "--source", str(leres_checkpoint),
            "--weights-dir", str(tmp_path)]
    r = CliRunner().invoke(cli.app, args)
    assert r.exit_code == 1 and "not that of the official leres_res101 checkpoint" in r.output  # not the sha
    r = CliRunner().invoke(cli.app, args + ["--allow-unknown"])
    assert r.exit_code == 0, r.output
    assert (store.read_info(tmp_path, "leres_res101").arrays_sha256
            == store.read_info(leres_weights_dir, "leres_res101").arrays_sha256)


def test_catalogue_entry():
    ck = catalog.get("leres_res101").checkpoint
    assert ck.file_name == "res101.pth"
    assert ck.sha256 == "1d696b2ef3e8336b057d0c15bc82d2fecef821bfebe5ef9d7671a5ec5dde520b"
    assert ck.urls and all(u.startswith("https://") for u in ck.urls)
    assert (ck.state_dict_entry, ck.optional_prefix) == ("depth_model", "module.")
    assert "hrjax weights convert --model leres_res101 --source PATH/TO/res101.pth" in fix_it_commands(
        "leres_res101")


# ---------------------------------------------------------------------------------------------------------
# the converter's checks, in memory: unwrap_state_dict + match_state_dict are exactly what convert_checkpoint
# runs on the file's tensors (numpy arrays stand in for them)


def _official(sd, prefix="module."):
    return {"depth_model": {prefix + k: v for k, v in sd.items()}, "shift_model": {}, "focal_model": {}}


def _convert(obj):
    ck = catalog.get("leres_res101").checkpoint
    sd = unwrap_state_dict(obj, "checkpoint", state_dict_entry=ck.state_dict_entry,
                           optional_prefix=ck.optional_prefix)
    net = nnx.eval_shape(catalog.get("leres_res101").build)
    return match_state_dict(key_table(net), sd, what="checkpoint", from_torch=True)


@pytest.mark.parametrize("prefix", ["module.", ""])
def test_converter_accepts_both_official_layouts(leres_state_dict, prefix):
    """With or without nn.DataParallel's prefix (the official loader strips it when present), with or without
    the BatchNorm counters."""
    matched = _convert(_official(leres_state_dict, prefix))
    assert len(matched) == N_TENSORS
    key = "depth_model.decoder_modules.ffm1.ftb2.conv_branch.4.weight"
    np.testing.assert_array_equal(matched[key], leres_state_dict[key].transpose(2, 3, 1, 0))
    without = {k: v for k, v in leres_state_dict.items() if not k.endswith("num_batches_tracked")}
    assert _convert(_official(without, prefix)).keys() == matched.keys()


@pytest.mark.parametrize("damage", ["missing", "unexpected", "misshaped"])
def test_converter_rejects_damaged_checkpoint(leres_state_dict, damage):
    sd = dict(leres_state_dict)
    key = "depth_model.encoder_modules.encoder.layer3.17.conv2.weight"
    if damage == "missing":
        del sd[key]
    elif damage == "unexpected":
        key = "depth_model.decoder_modules.ffm3.ftb1.conv1.weight"
        sd[key] = np.zeros((3, 3), np.float32)
    else:
        key = "depth_model.decoder_modules.outconv.adapt_conv.3.weight"
        sd[key] = np.zeros((1, 128, 1, 1), np.float32)  # true shape: (1, 128, 3, 3)
    with pytest.raises(CheckpointMismatch, match=f"{damage.replace('misshaped', 'mis-shaped')} keys") as err:
        _convert(_official(sd))
    assert key in str(err.value)


def test_converter_rejects_other_layouts(leres_state_dict):
    # a bare state_dict (MiDaS-style) is not the official layout: the missing entry is named
    with pytest.raises(ValueError, match="no 'depth_model' entry"):
        _convert(dict(leres_state_dict))
    # the DepthModel's own state_dict (keys without "depth_model."): every key is named missing / unexpected
    inner = {k.removeprefix("depth_model."): v for k, v in leres_state_dict.items()}
    with pytest.raises(CheckpointMismatch) as err:
        _convert({"depth_model": inner})
    assert err.value.missing and err.value.unexpected and "encoder_modules.encoder.conv1.weight" in str(err.value)
    # "module." on only some keys is not stripped (as strip_prefix_if_present): those keys are named
    partial = {("module." + k if "decoder_modules" in k else k): v for k, v in leres_state_dict.items()}
    with pytest.raises(CheckpointMismatch) as err:
        _convert({"depth_model": partial})
    assert "module.depth_model.decoder_modules.conv1.weight" in err.value.unexpected
    assert "depth_model.decoder_modules.conv1.weight" in err.value.missing
    assert not [k for k in err.value.missing if "encoder_modules" in k]
