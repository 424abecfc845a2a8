"""PyTorch-compatible building blocks for Flax NNX (NHWC activations).

Parameter leaf names are the PyTorch ones (``weight``, ``bias``, ``running_mean``, ``running_var``) so that
a module's attribute path *is* its checkpoint key: ``pretrained.layer3.17.conv2.weight`` in the state_dict is
``model.pretrained.layer3[17].conv2.weight`` here. Only the layout differs and the converters transpose it:
conv kernels are stored HWIO (PyTorch: OIHW), transposed-conv kernels HWIO as well (PyTorch: IOHW).

Every convolution takes explicit PyTorch-style symmetric padding; never 'SAME'.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hrjax.weights.keys import Layout

HIGHEST = jax.lax.Precision.HIGHEST


def channels_last(v: jax.Array, ndim: int) -> jax.Array:
    """A per-channel vector shaped to broadcast against an NHWC array (explicit: rank promotion raises)."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def _zeros_param(shape: tuple[int, ...]) -> nnx.Param:
    # Weights are always loaded from a checkpoint; zeros make an un-loaded model obviously wrong and cheap.
    return nnx.Param(jnp.zeros(shape, jnp.float32))


class Conv2d(nnx.Module):
    """``torch.nn.Conv2d`` on NHWC input; ``weight`` is HWIO (in-channels per group)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = True):
        if in_ch % groups or out_ch % groups:
            raise ValueError(f"channels {in_ch}->{out_ch} not divisible by groups={groups}")
        self.stride, self.padding, self.groups = stride, padding, groups
        self.weight = _zeros_param((kernel, kernel, in_ch // groups, out_ch))
        self.bias = _zeros_param((out_ch,)) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.padding
        y = jax.lax.conv_general_dilated(
            x, self.weight[...], window_strides=(self.stride, self.stride), padding=((p, p), (p, p)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=self.groups, precision=HIGHEST)
        if self.bias is not None:
            y = y + channels_last(self.bias[...], y.ndim)
        return y


class BatchNorm2d(nnx.Module):
    """``torch.nn.BatchNorm2d`` in inference mode (running statistics, eps 1e-5, SPEC 6.1)."""

    def __init__(self, ch: int, *, eps: float = 1e-5):
        self.eps = eps
        self.weight = _zeros_param((ch,))
        self.bias = _zeros_param((ch,))
        self.running_mean = nnx.BatchStat(jnp.zeros((ch,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((ch,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        # Same association as PyTorch's eval kernel: (x - mean) * (weight / sqrt(var + eps)) + bias.
        scale = self.weight[...] * jax.lax.rsqrt(self.running_var[...] + self.eps)
        return ((x - channels_last(self.running_mean[...], x.ndim)) * channels_last(scale, x.ndim)
                + channels_last(self.bias[...], x.ndim))


def relu(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0.0)


def max_pool_3x3_s2_p1(x: jax.Array) -> jax.Array:
    """``nn.MaxPool2d(3, 2, 1)``: padding counts as -inf, like PyTorch."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                 ((0, 0), (1, 1), (1, 1), (0, 0)))


class Stateless(nnx.Module):
    """A parameter-free slot (ReLU, pooling, Identity) that keeps PyTorch's Sequential indices aligned."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)


def run_sequential(layers: nnx.List, x: jax.Array) -> jax.Array:
    """Apply ``layers`` in order, like ``torch.nn.Sequential`` (nested lists are nested Sequentials)."""
    for layer in layers:
        x = run_sequential(layer, x) if isinstance(layer, nnx.List) else layer(x)
    return x


# torch -> hrjax layout of each parameter leaf, by owning module class (read by hrjax.weights.keys).
OIHW_TO_HWIO = Layout(perm=(2, 3, 1, 0))
Conv2d.torch_layout = {"weight": OIHW_TO_HWIO}
