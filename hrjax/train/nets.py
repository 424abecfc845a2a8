"""The networks as trained (SPEC-TRAINING 4): the generator (hrjax's ``UnetGenerator``) and the 70x70 PatchGAN
discriminator, their N(0, 0.02) initialisation, and the flat {PyTorch key: array} parameter form.

Training keeps each network's parameters as a flat dict keyed by the PyTorch state_dict key (hrjax layout,
see :mod:`hrjax.weights.keys`), so checkpoints have plain string keys and the generator exports to the
weights store unchanged. :class:`NetDef` turns such a dict back into a module inside jitted code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hrjax.models.layers import Conv2d, Stateless
from hrjax.models.mergenet import UnetGenerator, identity, leaky_relu_02
from hrjax.weights.keys import KeyRow, key_table

INIT_STD = 0.02


class NLayerDiscriminator(nnx.Module):
    """pix2pix ``NLayerDiscriminator(input_nc, ndf, n_layers, norm=none)``: the 70x70 PatchGAN (SPEC-TRAINING 4).

    k4/p1 convs: ``input_nc -> ndf`` s2 (+bias), then ``n_layers - 1`` s2 convs doubling the width (capped at
    8*ndf), one s1 conv, and a s1 conv to 1 logit (+bias); LeakyReLU(0.2) after all but the last. With
    norm='none' the middle convs have no bias and every norm slot is an Identity, so the ``model`` list keeps
    the reference ``nn.Sequential`` indices: keys ``model.0.weight``, ``model.0.bias``, ``model.2.weight``,
    ``model.5.weight``, ``model.8.weight``, ``model.11.weight``, ``model.11.bias`` for n_layers=3.
    There are no normalisation statistics, so train and eval modes are the same network.
    NHWC in (N, H, W, input_nc), out (N, H', W', 1) logits; 1024 -> 126.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3):
        layers: list = [Conv2d(input_nc, ndf, 4, stride=2, padding=1, bias=True), Stateless(leaky_relu_02)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=False), Stateless(identity),
                       Stateless(leaky_relu_02)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=False), Stateless(identity),
                   Stateless(leaky_relu_02)]
        layers += [Conv2d(ndf * mult, 1, 4, stride=1, padding=1, bias=True)]
        self.model = nnx.List(layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.model:
            x = layer(x)
        return x


@dataclass(frozen=True)
class NetConfig:
    """Architecture of both nets. The defaults are the reference's (unet_1024, ngf 64; PatchGAN ndf 64, 3 layers)."""

    ngf: int = 64
    num_downs: int = 10
    ndf: int = 64
    n_layers_d: int = 3

    def build_g(self) -> UnetGenerator:
        return UnetGenerator(2, 1, self.ngf, self.num_downs)

    def build_d(self) -> NLayerDiscriminator:
        return NLayerDiscriminator(3, self.ndf, self.n_layers_d)


Flat = dict[str, jax.Array]


def key_rows(model: nnx.Module) -> list[KeyRow]:
    """:func:`hrjax.weights.keys.key_table` (works for abstract models from ``nnx.eval_shape`` too)."""
    return key_table(model)


class NetDef:
    """A module's structure (graphdef + key -> path table) to rebuild it from a flat {key: array} dict."""

    def __init__(self, build: Callable[[], nnx.Module]):
        module = nnx.eval_shape(build)
        self.rows = key_rows(module)
        self.graphdef, abstract = nnx.split(module)
        self._template = list(nnx.to_flat_state(abstract))
        by_path = {tuple(r.path): r.key for r in self.rows}
        self._keys = [by_path[tuple(p)] for p, _ in self._template]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {r.key: r.shape for r in self.rows}

    def state(self, flat: Flat) -> nnx.State:
        return nnx.from_flat_state([(p, v.replace(flat[k])) for (p, v), k in zip(self._template, self._keys)])

    def apply(self, flat: Flat, x: jax.Array) -> jax.Array:
        return nnx.merge(self.graphdef, self.state(flat))(x)

    def init(self, key: jax.Array) -> Flat:
        """N(0, 0.02^2) for every conv/transposed-conv weight, zeros for every bias (SPEC-TRAINING 4)."""
        return jax.jit(self._init)(key)

    def _init(self, key: jax.Array) -> Flat:
        # One draw for all weights (cheap to compile), cut into the tensors in key-table order.
        weights = [r for r in self.rows if not r.key.endswith("bias")]
        total = int(sum(np.prod(r.shape) for r in weights))
        z = INIT_STD * jax.random.normal(key, (total,), jnp.float32)
        out, start = {}, 0
        for row in self.rows:
            if row.key.endswith("bias"):
                out[row.key] = jnp.zeros(row.shape, jnp.float32)
            else:
                size = int(np.prod(row.shape))
                out[row.key] = z[start:start + size].reshape(row.shape)
                start += size
        return out

    def n_params(self) -> int:
        return int(sum(np.prod(s) for s in self.shapes.values()))
