"""One pix2pix4depth optimisation step as a pure jitted function (SPEC-TRAINING 5, 6, 9).

``state, metrics = step(state, maps, weights)``: the state is a plain pytree
``{"g": flat G params, "d": flat D params, "opt_g": optax state, "opt_d": optax state, "step": int32}``;
``maps`` is the loader's (B, H, W, 3) ``[outer', inner', T]`` batch in [-1, 1] at the data size, ``weights``
(B,) marks real samples (1) and padding (0). Inside, in this order:

1. bilinear (align_corners=False) upsampling of the three maps to the network size (1024);
2. ``fake = G(real_A)``; D loss ``0.5*(BCE(D([A, stop_grad(fake)]), 0) + BCE(D([A, B]), 1))``; Adam step on D;
3. G loss ``BCE(D_new([A, G(A)]), 1) + 1000*mean|G(A) - B|`` with the **updated** D; Adam step on G.

BCE is with logits, averaged over all (real) logits; L1 over all (real) pixels. Adam: b1 0.5, b2 0.999,
eps 1e-8 (optax placement of eps, see SPEC-TRAINING 8), lr 1e-4 (G) and 2e-6 (D) times the linear factor
:func:`lr_factor`. Data parallel: the batch is sharded over a 1-D ``data`` mesh, everything else replicated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hrjax.pipeline.batching import DATA_AXIS, data_mesh

from hrjax.train.nets import NetConfig, NetDef

HIGHEST = jax.lax.Precision.HIGHEST


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the reference's effective options are the defaults)."""

    net: NetConfig = NetConfig()
    net_size: int = 1024          # maps are upsampled to this before G and D
    gf_radius: int = 64
    gf_eps: float = 1e-8
    lr_g: float = 1e-4
    lr_d: float = 2e-6
    beta1: float = 0.5
    beta2: float = 0.999
    adam_eps: float = 1e-8
    lambda_l1: float = 1000.0
    epochs: int = 200             # n_epochs + n_epochs_decay
    decay_epochs: int = 100       # n_epochs_decay
    batch_size: int = 1
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.decay_epochs <= self.epochs or self.epochs < 1:
            raise ValueError(f"need 0 <= decay_epochs <= epochs and epochs >= 1 (got {self.decay_epochs}, "
                             f"{self.epochs})")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.net_size % (1 << self.net.num_downs):
            raise ValueError(f"net_size {self.net_size} must be a multiple of 2^num_downs = {1 << self.net.num_downs}")

    @property
    def n_epochs(self) -> int:
        """Epochs at the full learning rate before the linear decay (the reference's ``n_epochs``)."""
        return self.epochs - self.decay_epochs

    def init_keys(self) -> tuple[jax.Array, jax.Array]:
        """(G-init key, D-init key): ``fold_in(PRNGKey(seed), 1)`` and ``2`` (the data key uses tag 3)."""
        root = jax.random.PRNGKey(self.seed)
        return jax.random.fold_in(root, 1), jax.random.fold_in(root, 2)


# --- learning-rate schedule (SPEC-TRAINING 6) ---------------------------------------------------------------

def lr_factor(t: int, steps_per_epoch: int, n_epochs: int, decay_epochs: int) -> float:
    """The factor on the base lr at optax update count ``t`` (0-based), in float64: with E = t // S + 1
    (the 1-based epoch), ``1 - max(0, E + 1 - n_epochs) / (decay_epochs + 1)``."""
    e = int(t) // steps_per_epoch + 1
    return 1.0 - max(0, e + 1 - n_epochs) / (decay_epochs + 1)


def lr_table(base: float, n_epochs: int, decay_epochs: int) -> np.ndarray:
    """float32 lr of each epoch 1 .. n_epochs + decay_epochs, computed in float64 and rounded once."""
    return np.array([base * lr_factor(e - 1, 1, n_epochs, decay_epochs)
                     for e in range(1, n_epochs + decay_epochs + 1)], np.float32)


def schedule(base: float, steps_per_epoch: int, n_epochs: int, decay_epochs: int) -> optax.Schedule:
    """The per-epoch linear schedule as an optax schedule of the update count (SPEC-TRAINING 6, 9).

    A lookup in :func:`lr_table` (indexed by the epoch, clamped to the last one), so every value is the
    float64 formula rounded once to float32: the last epoch is exactly 0, as in the reference.
    """
    table = lr_table(base, n_epochs, decay_epochs)

    def sched(count):
        e = jnp.minimum(jnp.asarray(count, jnp.int32) // steps_per_epoch, len(table) - 1)
        return jnp.asarray(table)[e]
    return sched


def optimizers(cfg: TrainConfig, steps_per_epoch: int) -> tuple[optax.GradientTransformation, ...]:
    kw = dict(b1=cfg.beta1, b2=cfg.beta2, eps=cfg.adam_eps)
    tx_g = optax.adam(schedule(cfg.lr_g, steps_per_epoch, cfg.n_epochs, cfg.decay_epochs), **kw)
    tx_d = optax.adam(schedule(cfg.lr_d, steps_per_epoch, cfg.n_epochs, cfg.decay_epochs), **kw)
    return tx_g, tx_d


# --- resize and losses ------------------------------------------------------------------------------------

@lru_cache(maxsize=16)
def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) torch ``interpolate(mode='bilinear', align_corners=False)`` along one axis:
    ``src = (dst + 0.5) * n_in / n_out - 0.5`` clamped at 0, taps floor(src) and the next (clamped)."""
    m = np.zeros((n_out, n_in), np.float64)
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = src - i0
    np.add.at(m, (np.arange(n_out), i0), 1.0 - f)
    np.add.at(m, (np.arange(n_out), i1), f)
    return m


def resize_bilinear(x: jax.Array, size: int) -> jax.Array:
    """(B, H, W, C) -> (B, size, size, C), torch bilinear with align_corners=False (SPEC-TRAINING 3.5)."""
    _, h, w, _ = x.shape
    if (h, w) == (size, size):
        return x
    ry = jnp.asarray(bilinear_matrix(h, size), jnp.float32)
    rx = jnp.asarray(bilinear_matrix(w, size), jnp.float32)
    t = jnp.einsum("oh,bhwc->bowc", ry, x, precision=HIGHEST)
    return jnp.einsum("pw,bowc->bopc", rx, t, precision=HIGHEST)


def _wmean(x: jax.Array, w: jax.Array) -> jax.Array:
    """Mean over the real samples: sum(x * w) / (sum(w) * elements per sample)."""
    per = x.reshape(x.shape[0], -1).sum(axis=1)
    return jnp.sum(per * w) / (jnp.sum(w) * np.float32(np.prod(x.shape[1:])))


def bce_logits(logits: jax.Array, label: float, w: jax.Array) -> jax.Array:
    return _wmean(optax.sigmoid_binary_cross_entropy(logits, jnp.full(logits.shape, label, logits.dtype)), w)


# --- the step ---------------------------------------------------------------------------------------------

class Trainer:
    """Builds the pure functions of one configuration: ``init_state`` and the jitted ``step``."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, devices=None, *, data_size: int | None = None):
        self.cfg = cfg
        self.steps_per_epoch = steps_per_epoch
        self.g = NetDef(cfg.net.build_g)
        self.d = NetDef(cfg.net.build_d)
        self.tx_g, self.tx_d = optimizers(cfg, steps_per_epoch)
        self.sched_g = schedule(cfg.lr_g, steps_per_epoch, cfg.n_epochs, cfg.decay_epochs)
        self.mesh = training_mesh(cfg.batch_size, devices)
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P(DATA_AXIS))
        self.step = jax.jit(self._step, in_shardings=(self.replicated, self.batch_sharding, self.batch_sharding),
                            out_shardings=(self.replicated, self.replicated), donate_argnums=0)

    # state ----------------------------------------------------------------------------------------------
    def init_state(self) -> dict:
        return jax.jit(self._init_pure, out_shardings=self.replicated)()

    def abstract_state(self) -> dict:
        """Shapes, dtypes and (replicated) shardings of the state: the restore target of a checkpoint."""
        shapes = jax.eval_shape(self._init_pure)
        return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated), shapes)

    def _init_pure(self) -> dict:
        with jax.numpy_dtype_promotion("standard"):
            return self._init_body()

    def _init_body(self) -> dict:
        kg, kd = self.cfg.init_keys()
        g, d = self.g._init(kg), self.d._init(kd)
        return {"g": g, "d": d, "opt_g": self.tx_g.init(g), "opt_d": self.tx_d.init(d),
                "step": jnp.zeros((), jnp.int32)}

    def put_batch(self, maps: np.ndarray, weights: np.ndarray) -> tuple[jax.Array, jax.Array]:
        return (jax.device_put(np.asarray(maps, np.float32), self.batch_sharding),
                jax.device_put(np.asarray(weights, np.float32), self.batch_sharding))

    # step -----------------------------------------------------------------------------------------------
    def _step(self, state: dict, maps: jax.Array, w: jax.Array) -> tuple[dict, dict]:
        # optax's Adam mixes Python floats and int32 counts, which strict dtype promotion (the tests') rejects.
        with jax.numpy_dtype_promotion("standard"):
            return self._step_body(state, maps, w)

    def _step_body(self, state: dict, maps: jax.Array, w: jax.Array) -> tuple[dict, dict]:
        cfg = self.cfg
        x = resize_bilinear(maps, cfg.net_size)
        real_a, real_b = x[..., :2], x[..., 2:]
        fake = self.g.apply(state["g"], real_a)

        def loss_d(pd):
            p_fake = self.d.apply(pd, jnp.concatenate([real_a, jax.lax.stop_gradient(fake)], axis=-1))
            p_real = self.d.apply(pd, jnp.concatenate([real_a, real_b], axis=-1))
            d_fake, d_real = bce_logits(p_fake, 0.0, w), bce_logits(p_real, 1.0, w)
            return 0.5 * (d_fake + d_real), (d_fake, d_real)

        (_, (d_fake, d_real)), grad_d = jax.value_and_grad(loss_d, has_aux=True)(state["d"])
        upd_d, opt_d = self.tx_d.update(grad_d, state["opt_d"], state["d"])
        pd = optax.apply_updates(state["d"], upd_d)

        def loss_g(pg):
            fk = self.g.apply(pg, real_a)
            gan = bce_logits(self.d.apply(pd, jnp.concatenate([real_a, fk], axis=-1)), 1.0, w)
            l1 = jnp.float32(cfg.lambda_l1) * _wmean(jnp.abs(fk - real_b), w)
            return gan + l1, (gan, l1)

        (_, (g_gan, g_l1)), grad_g = jax.value_and_grad(loss_g, has_aux=True)(state["g"])
        upd_g, opt_g = self.tx_g.update(grad_g, state["opt_g"], state["g"])
        pg = optax.apply_updates(state["g"], upd_g)
        t = state["step"]
        metrics = {"G_GAN": g_gan, "G_L1": g_l1, "D_real": d_real, "D_fake": d_fake, "lr_g": self.sched_g(t)}
        return {"g": pg, "d": pd, "opt_g": opt_g, "opt_d": opt_d, "step": t + 1}, metrics


def training_mesh(batch: int, devices=None) -> Mesh:
    """The pipeline's data mesh (:func:`hrjax.pipeline.batching.data_mesh`) over the most local devices that
    divide ``batch`` (batch 1 -> one device)."""
    devices = list(devices if devices is not None else jax.local_devices())
    k = max(n for n in range(1, len(devices) + 1) if batch % n == 0)
    return data_mesh(devices[:k])
