"""Merge-net training (SPEC-TRAINING 4-6, 9): networks, schedule, the jitted step, checkpoints and resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrjax.train.loop import TrainError, train
from hrjax.train.nets import NetConfig, NetDef
from hrjax.train.step import Trainer, bilinear_matrix, lr_factor, resize_bilinear, schedule
from hrjax.train.synthetic import tiny_config, write_synthetic_dataset


def test_network_shapes_and_parameter_counts():
    cfg = NetConfig()
    g, d = NetDef(cfg.build_g), NetDef(cfg.build_d)
    assert g.n_params() == 79_564_801
    assert d.n_params() == 2_763_841
    assert sorted(d.shapes) == ["model.0.bias", "model.0.weight", "model.11.bias", "model.11.weight",
                                "model.2.weight", "model.5.weight", "model.8.weight"]
    params = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in d.shapes.items()}
    out = jax.eval_shape(d.apply, params, jax.ShapeDtypeStruct((2, 1024, 1024, 3), jnp.float32))
    assert out.shape == (2, 126, 126, 1)
    gp = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in g.shapes.items()}
    x = jax.ShapeDtypeStruct((1, 1024, 1024, 2), jnp.float32)
    assert jax.eval_shape(g.apply, gp, x).shape == (1, 1024, 1024, 1)


def test_init_is_normal_002_with_zero_bias():
    d = NetDef(NetConfig(ndf=16).build_d)
    p = d.init(jax.random.PRNGKey(0))
    w = np.concatenate([np.asarray(v).ravel() for k, v in p.items() if k.endswith("weight")])
    assert abs(w.std() - 0.02) < 1e-3 and abs(w.mean()) < 1e-3
    assert all(np.all(np.asarray(v) == 0) for k, v in p.items() if k.endswith("bias"))


def test_lr_schedule_boundaries():
    S = 7
    assert lr_factor(0, S, 100, 100) == 1.0
    assert lr_factor(98 * S + 6, S, 100, 100) == 1.0             # last step of epoch 99
    assert lr_factor(99 * S, S, 100, 100) == pytest.approx(100 / 101, rel=1e-14)    # epoch 100
    assert lr_factor(149 * S, S, 100, 100) == pytest.approx(50 / 101, rel=1e-14)     # epoch 150
    assert lr_factor(198 * S, S, 100, 100) == pytest.approx(1 / 101, rel=1e-12)      # epoch 199
    assert lr_factor(199 * S, S, 100, 100) == 0.0                 # epoch 200: lr 0
    sched = jax.jit(schedule(1e-4, S, 100, 100))
    for t, f in [(0, 1.0), (99 * S - 1, 1.0), (99 * S, 100 / 101), (149 * S + 3, 50 / 101), (198 * S, 1 / 101),
                 (199 * S, 0.0), (200 * S + 5, 0.0)]:
        assert float(sched(jnp.int32(t))) == pytest.approx(float(np.float32(1e-4 * f)), rel=1e-7, abs=0), t
    assert float(jax.jit(schedule(2e-6, S, 100, 100))(jnp.int32(99 * S))) == float(np.float32(2e-6 * 100 / 101))


def test_bilinear_upsampling_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((2, 21, 21, 3)).astype(np.float32)
    got = np.asarray(resize_bilinear(jnp.asarray(x), 32))
    want = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(32, 32), mode="bilinear",
                                           align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, want, atol=2e-6)
    np.testing.assert_allclose(bilinear_matrix(672, 1024).sum(1), 1.0)


def test_steps_reduce_l1_on_a_fixed_batch(tmp_path):
    from hrjax.train.data import load_sample, open_dataset

    write_synthetic_dataset(tmp_path, n=4, size=32)
    ds = open_dataset(tmp_path)
    cfg = tiny_config(epochs=100, decay_epochs=0, lr_g=1e-3)   # a tiny net: a larger lr shows the trend sooner
    tr = Trainer(cfg, steps_per_epoch=1)
    assert tr.mesh.devices.size == min(4, jax.local_device_count())        # data parallel over the batch
    maps, w = tr.put_batch(np.stack([load_sample(ds, i, radius=4) for i in range(4)]), np.ones(4, np.float32))
    state = tr.init_state()
    l1 = []
    for _ in range(30):
        state, m = tr.step(state, maps, w)
        l1.append(float(m["G_L1"]))
    assert int(state["step"]) == 30
    assert l1[-1] < 0.8 * l1[0], l1
    assert np.all(np.diff(l1[:10]) < 0), l1
    assert all(np.isfinite(l1))


def test_resume_is_bitwise_and_logs_are_continuous(tmp_path):
    data = write_synthetic_dataset(tmp_path / "data", n=6, size=32)
    cfg = tiny_config()             # 6 samples, batch 4: 2 steps per epoch (the second padded), 2 epochs
    kw = dict(log_every=1, workers=2, save_every=0, export=True)
    full = train(data, tmp_path / "a", cfg, **kw)
    assert full.step == 4 == full.total_steps
    first = train(data, tmp_path / "b", cfg, max_steps=2, **kw)
    assert first.step == 2
    with pytest.raises(TrainError, match="already holds checkpoints"):
        train(data, tmp_path / "b", cfg, **kw)
    with pytest.raises(TrainError, match="batch_size"):
        train(data, tmp_path / "b", tiny_config(batch_size=2), resume=True, **kw)
    rest = train(data, tmp_path / "b", cfg, resume=True, **kw)
    assert rest.resumed_from == 2 and rest.step == 4
    a, b = jax.device_get(full.state), jax.device_get(rest.state)
    la, lb = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (path, x), (_, y) in zip(la, lb):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)
    # 2 epochs with 1 of decay: factor 1 - 1/2 in epoch 1 and 0 in epoch 2 (only the Adam moments move)
    logs = [[json.loads(s) for s in (tmp_path / d / "train_log.jsonl").read_text().splitlines()] for d in "ab"]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4]
    assert logs[0] == [dict(r, sec_per_step=logs[0][i]["sec_per_step"]) for i, r in enumerate(logs[1])]
    assert [r["lr_g"] for r in logs[0]] == [pytest.approx(5e-5), pytest.approx(5e-5), 0.0, 0.0]
    # exports of both runs hold the same generator
    from hrjax.weights.store import load_flat
    fa, _ = load_flat(tmp_path / "a" / "weights", "mergenet")
    fb, _ = load_flat(tmp_path / "b" / "weights", "mergenet")
    assert fa.keys() == fb.keys() == a["g"].keys()
    assert all(np.array_equal(fa[k], fb[k]) and np.array_equal(fa[k], a["g"][k]) for k in fa)
