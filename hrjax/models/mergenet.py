"""The merge network of Boosting Monocular Depth: pix2pix ``UnetGenerator`` "unet_1024" (SPEC 4).

NHWC throughout. Input (N, 1024, 1024, 2): channel 0 = the low-res/base ("outer") estimate, channel 1 = the
high-res/patch ("inner") estimate, each normalised to [-1, 1] (:func:`normalize_pair`). Output (N, 1024, 1024, 1),
the tanh output in [-1, 1]; :func:`to_unit` maps it to [0, 1] where the reference does.

The module tree mirrors PyTorch's, so ``key_table(UnetGenerator())`` yields the checkpoint keys directly:
``UnetGenerator.model`` is the outermost ``UnetSkipConnectionBlock``, whose ``model`` is an ``nnx.List`` laid
out like the reference ``nn.Sequential`` (parameter-free slots are :class:`Stateless`):

- outermost: ``[down, sub, ReLU, up(+bias), Tanh]``
- intermediate: ``[LeakyReLU, down, Identity, sub, ReLU, up, Identity]``, output ``concat([x, y])`` (skip first)
- innermost: ``[LeakyReLU, down, ReLU, up, Identity]``, output ``concat([x, y])``

``norm='none'`` (every norm slot an Identity, no conv bias except the outermost up conv), no dropout.
The in-place LeakyReLU quirk of the reference (the skip carries LeakyReLU(x), not x) has no effect because the
parent applies ReLU to the concatenation first (SPEC 4.2), so the skip is x.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from hrjax.models.conv_transpose import DEFAULT_IMPL, ConvTranspose2d
from hrjax.models.layers import Conv2d, Stateless, relu

MERGE_SIZE = 1024


# Module-level functions (not lambdas), so two builds of the net have equal graphdefs.
def leaky_relu_02(x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, x * 0.2)


def identity(x: jax.Array) -> jax.Array:
    return x


def tanh(x: jax.Array) -> jax.Array:
    return jnp.tanh(x)


class UnetSkipConnectionBlock(nnx.Module):
    """One U-Net level; ``model`` is an ``nnx.List`` with the reference ``nn.Sequential`` indices."""

    def __init__(self, outer_nc: int, inner_nc: int, *, input_nc: int | None = None,
                 submodule: "UnetSkipConnectionBlock | None" = None, outermost: bool = False,
                 innermost: bool = False, impl: str = DEFAULT_IMPL):
        input_nc = outer_nc if input_nc is None else input_nc
        self.outermost = outermost
        down = Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=False)
        if outermost:
            up = ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=True, impl=impl)
            layers = [down, submodule, Stateless(relu), up, Stateless(tanh)]
        elif innermost:
            up = ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=False, impl=impl)
            layers = [Stateless(leaky_relu_02), down, Stateless(relu), up, Stateless(identity)]
        else:
            up = ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=False, impl=impl)
            layers = [Stateless(leaky_relu_02), down, Stateless(identity), submodule, Stateless(relu), up,
                      Stateless(identity)]
        self.model = nnx.List(layers)

    def __call__(self, x: jax.Array, impl: str | None = None) -> jax.Array:
        y = x
        for layer in self.model:
            if isinstance(layer, (ConvTranspose2d, UnetSkipConnectionBlock)):
                y = layer(y, impl)
            else:
                y = layer(y)
        if self.outermost:
            return y
        return jnp.concatenate([x, y], axis=-1)


class UnetGenerator(nnx.Module):
    """pix2pix ``UnetGenerator``; the defaults are the merge net's unet_1024 (2 -> 1 channels, ngf 64, 10 downs).

    ``impl`` is the default transposed-conv formulation (``"phase"`` or ``"dilated"``, see
    :mod:`hrjax.models.conv_transpose`); ``__call__(x, impl=...)`` overrides it.
    """

    def __init__(self, input_nc: int = 2, output_nc: int = 1, ngf: int = 64, num_downs: int = 10, *,
                 input_size: int | None = None, impl: str = DEFAULT_IMPL):
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5, got {num_downs}")
        # The (square) size the pipeline runs it at, a multiple of 2**num_downs: by default 2**num_downs, which for
        # unet_1024 is the reference's pix2pixsize 1024 (SPEC 4.1); a net trained with ``train-merge --net-size``
        # runs at its training size (the store's "architecture" records it).
        self.input_size = (1 << num_downs) if input_size is None else int(input_size)
        if self.input_size <= 0 or self.input_size % (1 << num_downs):
            raise ValueError(f"input_size {input_size} must be a positive multiple of 2^num_downs = {1 << num_downs}")
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, impl=impl)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, impl=impl)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, impl=impl)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, impl=impl)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, impl=impl)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block,
                                             outermost=True, impl=impl)
        self.num_downs = num_downs

    def __call__(self, x: jax.Array, impl: str | None = None) -> jax.Array:
        m = 1 << self.num_downs
        if x.ndim != 4 or x.shape[1] % m or x.shape[2] % m:
            raise ValueError(f"expected NHWC input with H, W multiples of {m}, got shape {x.shape}")
        return self.model(x, impl)


# --- input / output mapping (SPEC 4.3) ---------------------------------------------------------------------

def normalize_map(x: jax.Array) -> jax.Array:
    """Min-max one map (or a batch of maps, shape (..., H, W), each on its own) to [0, 1], then ``x*2 - 1``.

    Same operations as the reference ``set_input``: ``(x - min) / (max - min) * 2 - 1`` in float32.
    A constant map makes the reference divide 0/0 and feed NaN to the network (SPEC 4.3, quirk Q8);
    hrjax maps a constant map to 0 instead, the middle of [-1, 1], and never produces NaN here.
    """
    x = jnp.asarray(x, jnp.float32)
    lo = jnp.min(x, axis=(-2, -1), keepdims=True)
    hi = jnp.max(x, axis=(-2, -1), keepdims=True)
    rng = hi - lo
    flat = rng <= 0
    den = jnp.where(flat, jnp.ones_like(rng), rng)
    # A true division like torch's: XLA rewrites ``a / broadcast(b)`` into ``a * broadcast(1 / b)`` (up to 1 ulp
    # off, and max -> 0.9999999); the barrier keeps the divisor a full-size array so the divide stays a divide.
    unit = (x - lo) / jax.lax.optimization_barrier(jnp.broadcast_to(den, x.shape))
    return jnp.where(flat, jnp.zeros_like(unit), unit * 2 - 1)


def normalize_pair(low: jax.Array, high: jax.Array) -> jax.Array:
    """(N, H, W) low ("outer") and high ("inner") maps -> the network input (N, H, W, 2), each normalised."""
    return jnp.stack([normalize_map(low), normalize_map(high)], axis=-1)


def to_unit(y: jax.Array) -> jax.Array:
    """The tanh output in [-1, 1] -> [0, 1]: ``(y + 1) / 2`` as the reference does after the merge."""
    return (y + 1) / 2


def input_size(graphdef: nnx.GraphDef, state: nnx.State) -> int:
    """The input size of a split merge net (``UnetGenerator.input_size``): 1024 for the official unet_1024, else
    what its store's architecture says. Every map it merges is CUBIC-resized to this square first (SPEC 3.1, 5.4)."""
    return nnx.merge(graphdef, state).input_size


# --- pure, jitted entry points (state passed explicitly; split the model once with nnx.split) -------------

@partial(jax.jit, static_argnames=("graphdef", "impl"))
def forward(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array, impl: str | None = None) -> jax.Array:
    """Raw network: NHWC (N, H, W, 2) in [-1, 1] -> (N, H, W, 1) tanh output."""
    net = nnx.merge(graphdef, state)
    return net(x, impl)


@partial(jax.jit, static_argnames=("graphdef", "impl"))
def merge(graphdef: nnx.GraphDef, state: nnx.State, low: jax.Array, high: jax.Array,
          impl: str | None = None) -> jax.Array:
    """Batched merge of low- and high-resolution estimates (the merge network's forward pass).

    Each map is normalised on its own (:func:`normalize_map`); apply :func:`to_unit` where the reference maps
    the output to [0, 1].

    Args:
      graphdef, state: the merge network, split.
      low, high: (N, 1024, 1024) float32 estimates (the outer and inner input).
      impl: the transposed-convolution formulation (:mod:`hrjax.models.conv_transpose`; None: the default).

    Returns:
      The raw tanh output, (N, 1024, 1024).
    """
    if low.shape != high.shape or low.ndim != 3:
        raise ValueError(f"low and high must both be (N, H, W); got {low.shape} and {high.shape}")
    net = nnx.merge(graphdef, state)
    return net(normalize_pair(low, high), impl)[..., 0]
