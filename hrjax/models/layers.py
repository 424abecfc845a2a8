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

# the settings of configure (their meaning is documented there)
from hrjax.cpu_backend import xla_convolutions
from hrjax.models.precision import GROUPED_IMPLS, PRECISIONS
from hrjax.ops import grouped_conv
from hrjax.weights.keys import Layout

HIGHEST = jax.lax.Precision.HIGHEST


def lax_conv(x: jax.Array, w: jax.Array, *, precision: str = "float32", **kwargs) -> jax.Array:
    """``lax.conv_general_dilated`` (NHWC, HWIO) in one of :data:`PRECISIONS`; the result is float32."""
    if precision == "float32":
        arith = {"precision": HIGHEST}
    elif precision == "tf32":
        arith = {"precision": jax.lax.Precision.DEFAULT}
    elif precision == "bfloat16":
        x, w = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
        arith = {"preferred_element_type": jnp.float32}
    else:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return jax.lax.conv_general_dilated(x, w, dimension_numbers=("NHWC", "HWIO", "NHWC"), **arith, **kwargs)


def channels_last(v: jax.Array, ndim: int) -> jax.Array:
    """A per-channel vector shaped to broadcast against an NHWC array (explicit: rank promotion raises)."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def _zeros_param(shape: tuple[int, ...]) -> nnx.Param:
    # Weights are always loaded from a checkpoint; zeros make an un-loaded model obviously wrong and cheap.
    return nnx.Param(jnp.zeros(shape, jnp.float32))


class Conv2d(nnx.Module):
    """``torch.nn.Conv2d`` on NHWC input; ``weight`` is HWIO (in-channels per group)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = True, grouped_impl: str = "auto", precision: str = "float32"):
        if in_ch % groups or out_ch % groups:
            raise ValueError(f"channels {in_ch}->{out_ch} not divisible by groups={groups}")
        check_grouped_impl(grouped_impl)
        self.stride, self.padding, self.groups = stride, padding, groups
        self.grouped_impl = grouped_impl
        self.precision = precision
        self.weight = _zeros_param((kernel, kernel, in_ch // groups, out_ch))
        self.bias = _zeros_param((out_ch,)) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = conv2d(x, self.weight[...], stride=self.stride, padding=self.padding, groups=self.groups,
                   grouped_impl=self.grouped_impl, precision=self.precision)
        if self.bias is not None:
            y = y + channels_last(self.bias[...], y.ndim)
        return y


def check_grouped_impl(impl: str) -> None:
    if impl not in GROUPED_IMPLS:
        raise ValueError(f"grouped_impl must be one of {GROUPED_IMPLS}, got {impl!r}")


def resolve_grouped_impl(impl: str) -> str:
    """The formulation ``impl`` stands for here (hrjax.models.precision): "auto" is "native" on accelerators and
    on a CPU "kernel" when hrjax's grouped convolution builds (hrjax.ops.grouped_conv; the first call on a
    machine compiles it), else "packed" when XLA, not YNNPACK, runs the convolutions (hrjax.cpu_backend), else
    "split". "kernel" where it cannot build is an error."""
    check_grouped_impl(impl)
    on_cpu = jax.default_backend() == "cpu"
    if impl == "kernel" and not on_cpu:
        raise ValueError(f"grouped_impl 'kernel' is hrjax's CPU kernel; JAX runs on {jax.default_backend()} here "
                         "(choose 'auto' or 'native')")
    if impl == "kernel" and not grouped_conv.available():
        raise ValueError("grouped_impl 'kernel': hrjax/ops/grouped_conv.cc could not be built here (see the "
                         "warning above; choose 'auto' or 'packed')")
    if impl == "auto":
        if not on_cpu:
            return "native"
        if grouped_conv.available():
            return "kernel"
        return "packed" if xla_convolutions() else "split"
    return impl


# "packed" (hrjax.models.precision): narrower groups are merged into groups of this many input channels, on
# inputs of at least PACK_MIN_PIXELS pixels (below that XLA:CPU's grouped convolution is as fast either way)
PACK_CHANNELS = 32
PACK_MIN_PIXELS = 64 * 64


def pack_factor(x_shape: tuple[int, ...], w_shape: tuple[int, ...], groups: int) -> int:
    """How many neighbouring groups "packed" merges into one for this convolution (1: none)."""
    cin = w_shape[2]
    if groups == 1 or cin >= PACK_CHANNELS or x_shape[1] * x_shape[2] < PACK_MIN_PIXELS:
        return 1
    p = PACK_CHANNELS // cin
    while groups % p:  # a factor of the group count (32 groups of 8 or 16 channels: 4 or 2)
        p -= 1
    return p


def block_diagonal_groups(w: jax.Array, groups: int, pack: int) -> jax.Array:
    """The HWIO kernel of a ``groups``-group convolution as one of ``groups // pack`` groups: each new group's
    kernel holds its ``pack`` original kernels on the diagonal and exact zeros elsewhere."""
    kh, kw, cin, cout = w.shape
    cout_g = cout // groups
    tiled = jnp.tile(w, (1, 1, pack, 1))                         # input channel i of a new group: old i % cin
    block_in = jnp.arange(pack * cin) // cin                     # which original group an input channel is
    block_out = (jnp.arange(cout) // cout_g) % pack              # ... and an output channel
    return jnp.where(block_in[:, None] == block_out[None, :], tiled, jnp.zeros((), w.dtype))


def conv2d(x: jax.Array, w: jax.Array, *, stride: int, padding: int, groups: int = 1,
           grouped_impl: str = "auto", precision: str = "float32") -> jax.Array:
    """PyTorch ``F.conv2d`` on NHWC ``x`` with an HWIO kernel (in-channels per group) and symmetric padding."""

    def conv(xs: jax.Array, ws: jax.Array, feature_groups: int) -> jax.Array:
        return lax_conv(xs, ws, precision=precision, window_strides=(stride, stride),
                        padding=((padding, padding), (padding, padding)), feature_group_count=feature_groups)

    impl = "native" if groups == 1 else resolve_grouped_impl(grouped_impl)
    if impl == "kernel":
        # float32 arithmetic only ("tf32" is float32 on a CPU); bfloat16 and other shapes take XLA's, packed
        if precision != "bfloat16" and grouped_conv.supported(x, w, groups):
            return grouped_conv.grouped_conv(x, w, stride, padding, groups)
        impl = "packed"
    if impl == "packed":
        pack = pack_factor(x.shape, w.shape, groups)
        return conv(x, block_diagonal_groups(w, groups, pack) if pack > 1 else w, groups // pack)
    if impl == "native":
        return conv(x, w, groups)
    cin, cout = w.shape[2], w.shape[3] // groups
    return jnp.concatenate([conv(x[..., g * cin:(g + 1) * cin], w[..., g * cout:(g + 1) * cout], 1)
                            for g in range(groups)], axis=-1)


def set_grouped_impl(model: nnx.Module, impl: str) -> nnx.Module:
    """Choose the grouped-convolution formulation of every Conv2d in ``model`` (in place; returns it).

    The choice is a static attribute, so it is part of the graphdef: split the model after calling this.
    """
    return configure(model, grouped_impl=impl)


def configure(model: nnx.Module, *, grouped_impl: str | None = None, precision: str | None = None) -> nnx.Module:
    """Set the grouped-conv formulation and/or the arithmetic (:data:`PRECISIONS`) of every convolution in
    ``model`` (in place; returns it). Static attributes: split the model afterwards to get the new graphdef."""
    if grouped_impl is not None:
        check_grouped_impl(grouped_impl)
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    for _, module in nnx.iter_modules(model):
        # only grouped convolutions: setting it on the others (DAv2, the merge net) would change their graphdef
        # and recompile an identical network
        if isinstance(module, Conv2d) and grouped_impl is not None and module.groups > 1:
            module.grouped_impl = grouped_impl
        if hasattr(module, "precision") and precision is not None:
            module.precision = precision
    return model


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
