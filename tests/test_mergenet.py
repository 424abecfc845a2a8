"""Merge network (SPEC 4): transposed conv, key table, golden parity, batching, strict conversion, normalisation."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hrjax.models.conv_transpose import IMPLS, IOHW_TO_FLIPPED_HWIO, ConvTranspose2d, conv_transpose
from hrjax.models.mergenet import (
    UnetGenerator, forward, merge, normalize_map, normalize_pair, to_unit)
from hrjax.weights.keys import CheckpointMismatch, key_table

MERGE_TOL = 2e-5  # golden README section 6, metric 'range'


def range_err(cand: np.ndarray, gold: np.ndarray) -> float:
    return float(np.max(np.abs(cand - gold)) / (np.max(gold) - np.min(gold)))


# --- ConvTranspose2d ------------------------------------------------------------------------------------------

def conv_transpose_reference(x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """Definition of a transposed conv, NCHW / W[in, out, kh, kw], float64 scatter-add:
    every input pixel (i, j) adds ``x[c, i, j] * W[c, o]`` at output ``(i*s - p + a, j*s - p + b)``."""
    n, c, h, wd = x.shape
    _, o, k, _ = w.shape
    full = np.zeros((n, o, (h - 1) * stride + k, (wd - 1) * stride + k))
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    for i in range(h):
        for j in range(wd):
            full[:, :, i * stride:i * stride + k, j * stride:j * stride + k] += np.einsum(
                "nc,cokl->nokl", x64[:, :, i, j], w64)
    return full[:, :, padding:full.shape[2] - padding, padding:full.shape[3] - padding]


def _run_layer(x_nchw, w_iohw, *, k_stride=2, padding=1, impl, bias=None):
    """Through the module, with the weight converted by the layer's own torch_layout."""
    cin, cout, k, _ = w_iohw.shape
    layer = ConvTranspose2d(cin, cout, k, stride=k_stride, padding=padding, bias=bias is not None, impl=impl)
    layer.weight[...] = jnp.asarray(ConvTranspose2d.torch_layout["weight"].to_hrjax(w_iohw).copy())
    if bias is not None:
        layer.bias[...] = jnp.asarray(bias)
    y = layer(jnp.asarray(x_nchw.transpose(0, 2, 3, 1)))
    return np.asarray(y).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("k,p", [(4, 1), (2, 0), (6, 2)])
def test_conv_transpose_matches_definition_and_torch(impl, k, p):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(k * 10 + p)
    x = rng.standard_normal((2, 5, 6, 7)).astype(np.float32)
    w = rng.standard_normal((5, 3, k, k)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    ref = conv_transpose_reference(x, w, 2, p) + b[None, :, None, None]
    ref_t = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                                 stride=2, padding=p).numpy()
    y = _run_layer(x, w, padding=p, impl=impl, bias=b)
    assert y.shape == ref.shape == ref_t.shape == (2, 3, 12, 14)
    scale = np.abs(ref).max()
    assert np.abs(y - ref).max() <= 1e-6 * scale
    assert np.abs(y - ref_t).max() <= 1e-6 * scale
    assert np.abs(ref_t - ref).max() <= 1e-6 * scale  # the reference itself is right


def test_conv_transpose_formulations_agree():
    """Phase and dilated formulations on merge-net-like channel counts: float32 round-off only."""
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.standard_normal((2, 16, 16, 128)).astype(np.float32))
    wf = jnp.asarray(IOHW_TO_FLIPPED_HWIO.to_hrjax(
        (rng.standard_normal((128, 64, 4, 4)) / np.sqrt(512)).astype(np.float32)).copy())
    a = np.asarray(conv_transpose(x, wf, stride=2, padding=1, impl="phase"))
    b = np.asarray(conv_transpose(x, wf, stride=2, padding=1, impl="dilated"))
    assert a.shape == (2, 32, 32, 64)
    assert np.abs(a - b).max() <= 2e-6 * np.abs(b).max()


def test_conv_transpose_rejects_bad_impl():
    with pytest.raises(ValueError, match="formulation"):
        ConvTranspose2d(2, 2, 4, stride=2, padding=1, impl="fft")
    with pytest.raises(ValueError, match="phase formulation"):
        conv_transpose(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), stride=2, padding=1, impl="phase")


# --- key table ---------------------------------------------------------------------------------------------------

def test_key_table_matches_manifest(golden):
    manifest = json.loads((golden / "manifests" / "mergenet.json").read_text())
    rows = key_table(nnx.eval_shape(UnetGenerator))
    assert [r.key for r in rows] and len(rows) == len(manifest) == 21
    assert {r.key: list(r.torch_shape) for r in rows} == {e["key"]: e["shape"] for e in manifest}
    by_key = {r.key: r for r in rows}
    # The converted layouts: conv HWIO, transposed conv flipped HWIO, the only bias is the outermost one.
    assert by_key["model.model.0.weight"].shape == (4, 4, 2, 64)
    assert by_key["model.model.3.weight"].shape == (4, 4, 128, 1)
    assert [r.key for r in rows if r.key.endswith("bias")] == ["model.model.3.bias"]


# --- golden parity -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def merge_model(models):
    """The merge net of the session's converted store, (graphdef, state)."""
    return models.merge_graphdef, models.merge_state


@pytest.fixture(scope="module")
def merge_golden(golden):
    with np.load(golden / "mergenet_forward.npz") as z:
        return z["merge_in"].transpose(0, 2, 3, 1).copy(), z["merge_out"][:, 0].copy()


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_matches_golden(merge_model, merge_golden, impl, record_property):
    graphdef, state = merge_model
    x, gold = merge_golden
    y = np.asarray(forward(graphdef, state, jnp.asarray(x), impl=impl))
    assert y.shape == (1, 1024, 1024, 1)
    err = range_err(y[..., 0], gold)
    print(f"\nmergenet parity ({impl}): range err {err:.3g} (tol {MERGE_TOL})")
    record_property(f"mergenet_range_err_{impl}", err)
    assert err <= MERGE_TOL


def test_batched_merge_equals_single_merges():
    """Batching the merge changes nothing beyond float32 round-off. A small U-Net of the same code (5 levels,
    128^2, random init) keeps this quick; the full-size net is batched in the pipeline's invariance tests."""
    graphdef, state = nnx.split(UnetGenerator(ngf=8, num_downs=5))
    rng = np.random.default_rng(3)
    # random weights with unit-gain scaling (HWIO kernels: fan-in = H*W*I), like the golden weight rule
    state = jax.tree.map(lambda v: jnp.asarray(rng.standard_normal(v.shape) / np.sqrt(
        np.prod(v.shape[:-1]) if v.ndim == 4 else 10.0), jnp.float32), state)
    n = 128
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n

    def smooth(seed_shift):  # a depth-like map: smooth ramps plus noise, distinct ranges per map
        a, b, c = rng.uniform(-2, 2, 3)
        return (seed_shift + a * xx + b * yy + c * np.sin(6 * xx * yy)
                + 0.05 * rng.standard_normal((n, n))).astype(np.float32)

    low = np.stack([smooth(s) for s in (0.0, 10.0, -3.0)])
    high = np.stack([smooth(s) * 7 for s in (1.0, 0.0, 5.0)])
    batched = np.asarray(merge(graphdef, state, jnp.asarray(low), jnp.asarray(high)))
    assert batched.shape == (3, n, n)
    singles = np.concatenate([np.asarray(merge(graphdef, state, jnp.asarray(low[i:i + 1]),
                                               jnp.asarray(high[i:i + 1]))) for i in range(3)])
    assert np.all(np.isfinite(batched))
    # The three outputs differ from each other, and batching changes nothing beyond float32 round-off.
    assert np.abs(batched[0] - batched[1]).max() > 1e-2
    assert np.abs(batched - singles).max() <= 1e-6


# --- converter strictness ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mergenet_tensors(synth_state_dicts):
    return synth_state_dicts["mergenet"]


def _bad(t):
    inner = "model.model.1.model.3.model.5.weight"
    return {
        "missing": ({k: v for k, v in t.items() if k != inner}, inner, "missing"),
        "extra": ({**t, "model.model.1.model.7.bias": np.zeros(64, np.float32)},
                  "model.model.1.model.7.bias", "unexpected"),
        "misshaped": ({**t, inner: t[inner][:, :64]}, inner, "misshaped"),
    }


@pytest.mark.parametrize("case", ["missing", "extra", "misshaped"])
def test_strict_match_names_each_bad_key(mergenet_tensors, case):
    """The converter's strict check, in memory: each kind of damage is refused and the key named."""
    from hrjax.weights.keys import match_state_dict

    tensors, key, field = _bad(mergenet_tensors)[case]
    with pytest.raises(CheckpointMismatch) as info:
        match_state_dict(key_table(nnx.eval_shape(UnetGenerator)), tensors, what="checkpoint", from_torch=True)
    assert key in str(info.value)
    offending = getattr(info.value, field)
    assert [e[0] if isinstance(e, tuple) else e for e in offending] == [key]


def test_converter_refuses_a_bad_file_and_writes_nothing(mergenet_tensors, tmp_path):
    """The same check through convert_checkpoint on a file: refused, and no store is left behind."""
    torch = pytest.importorskip("torch")
    from convert import convert_checkpoint

    tensors, key, _ = _bad(mergenet_tensors)["missing"]
    src = tmp_path / "latest_net_G.pth"
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, src)
    wd = tmp_path / "weights"
    with pytest.raises(CheckpointMismatch, match=key):
        convert_checkpoint("mergenet", src, wd, allow_unknown=True)
    assert not (wd / "mergenet").exists()


# --- normalisation (SPEC 4.3) ------------------------------------------------------------------------------------

def test_normalize_map_each_map_to_minus_one_one():
    rng = np.random.default_rng(0)
    maps = np.stack([rng.uniform(3, 9, (8, 8)), rng.uniform(-1, 0, (8, 8))]).astype(np.float32)
    out = np.asarray(normalize_map(maps))
    for m, o in zip(maps, out):
        assert o.min() == -1.0 and o.max() == 1.0
        # The reference's float32 ops, bit for bit (a true division, not a multiply by the reciprocal).
        ref = (m - m.min()) / (m.max() - m.min()) * np.float32(2) - np.float32(1)
        np.testing.assert_array_equal(o, ref)
    pair = np.asarray(normalize_pair(maps[:1], maps[1:]))
    assert pair.shape == (1, 8, 8, 2)
    np.testing.assert_array_equal(pair[0, ..., 0], out[0])
    np.testing.assert_array_equal(pair[0, ..., 1], out[1])
    np.testing.assert_array_equal(np.asarray(to_unit(jnp.asarray([-1.0, 0.0, 1.0]))), [0.0, 0.5, 1.0])


def test_normalize_constant_map_has_no_nan():
    """The reference gives 0/0 = NaN here (SPEC 4.3, Q8); hrjax maps a constant map to 0."""
    const = np.full((2, 16, 16), 0.37, np.float32)
    out = np.asarray(normalize_map(const))
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out, 0.0)
    # A constant map next to a varying one: the varying one is unaffected.
    ramp = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    pair = np.asarray(normalize_pair(jnp.asarray(const[:1]), jnp.asarray(ramp[None])))
    assert not np.isnan(pair).any()
    np.testing.assert_array_equal(pair[0, ..., 0], 0.0)
    assert pair[0, ..., 1].min() == -1.0 and pair[0, ..., 1].max() == 1.0


def test_unet_rejects_bad_input_and_impl():
    net = UnetGenerator(ngf=1, num_downs=5)
    graphdef, state = nnx.split(net)
    with pytest.raises(ValueError, match="multiples of 32"):
        forward(graphdef, state, jnp.zeros((1, 48, 48, 2)))
    with pytest.raises(ValueError, match="formulation"):
        UnetGenerator(ngf=1, num_downs=5, impl="nope")
    assert forward(graphdef, state, jnp.zeros((2, 64, 32, 2))).shape == (2, 64, 32, 1)
