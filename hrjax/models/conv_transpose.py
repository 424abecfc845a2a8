"""``torch.nn.ConvTranspose2d`` (k4 s2 p1 in practice) on NHWC input, in two exact formulations.

PyTorch stores the weight as ``W[in, out, kh, kw]``. A transposed convolution with stride s and padding p is
the plain correlation of the input dilated by s (s-1 zeros between pixels), padded by ``k-1-p`` on every side,
with the spatially flipped, in/out-swapped kernel ``Wf[a, b, i, o] = W[i, o, k-1-a, k-1-b]`` (SPEC 4.2). hrjax
stores exactly that ``Wf`` (HWIO), so the converter does a transpose plus a flip (``torch_layout`` below).

Formulations (both exact up to float32 summation order):

- ``"dilated"``: ``lax.conv_general_dilated`` with ``lhs_dilation=s`` and padding ``k-1-p``. Three quarters of
  the multiply-adds hit inserted zeros.
- ``"phase"`` (sub-pixel / polyphase, stride 2 only, ``k - 2p == 2``): output pixel ``(2m+r, 2n+q)`` only sees
  the kernel taps ``Wf[r::2, q::2]`` (for k4 p1; a 2x2 kernel) applied to the undilated input, one pixel higher
  for ``r = 0`` than for ``r = 1`` (the same for columns). So one 2x2 correlation of the input padded by 1,
  with the four phase kernels side by side as 4*out channels, gives all four phases as shifted slices, which
  are then interleaved. No multiply-add hits a zero. On the 2-core CPU it is 1.2-2x faster than ``"dilated"``
  on the wide up convs (only the 128->1 outermost one is slower, ~44 vs ~20 ms), ~1.25x on the whole merge net,
  and needs much less memory there (bench/bench_mergenet.py). The default.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hrjax.models.layers import lax_conv
from hrjax.weights.keys import Layout
IMPLS = ("phase", "dilated")
DEFAULT_IMPL = "phase"


def conv_transpose_dilated(x: jax.Array, wf: jax.Array, *, stride: int, padding: int,
                           precision: str = "float32") -> jax.Array:
    """Transposed conv of NHWC ``x`` with the flipped HWIO kernel ``wf`` as a correlation of the dilated input."""
    k = wf.shape[0]
    e = k - 1 - padding
    return lax_conv(x, wf, precision=precision, window_strides=(1, 1), padding=((e, e), (e, e)),
                    lhs_dilation=(stride, stride))


def conv_transpose_phase(x: jax.Array, wf: jax.Array, *, stride: int, padding: int,
                         precision: str = "float32") -> jax.Array:
    """The same result as :func:`conv_transpose_dilated` from the four stride phases (stride 2, k - 2p == 2)."""
    k = wf.shape[0]
    if stride != 2 or k - 2 * padding != 2 or k % 2 or wf.shape[1] != k:
        raise ValueError(f"phase formulation needs stride 2 and k - 2p == 2 (got k={k}, s={stride}, p={padding})")
    # Output row 2m+r reads dilated-padded rows 2m+r+a (a = 0..k-1) with e = k-1-p; that row holds input pixel
    # m + (r+a-e)/2 when r+a-e is even and zero otherwise. So phase r uses only the taps a = a0, a0+2, ...
    # (a0 = (e-r) mod 2), on the k/2 input rows starting at m - lo (lo = (e-r-a0)/2). The same for columns.
    # All four phases read the same k/2 x k/2 windows of the input, only shifted, so one correlation with the
    # four phase kernels side by side (4*out channels) computes them all; each phase is then a shifted slice.
    e = k - 1 - padding
    n_taps = k // 2
    taps = [(e - r) % 2 for r in range(2)]
    los = [(e - r - taps[r]) // 2 for r in range(2)]
    pad_lo = max(los)
    pad_hi = max(n_taps - 1 - lo for lo in los)
    c_in, c_out = wf.shape[2], wf.shape[3]
    kern = jnp.stack([wf[taps[r]::2, taps[q]::2] for r in range(2) for q in range(2)], axis=3)
    kern = kern.reshape(n_taps, n_taps, c_in, 4 * c_out)
    y = lax_conv(x, kern, precision=precision, window_strides=(1, 1),
                 padding=((pad_lo, pad_hi), (pad_lo, pad_hi)))
    n, h, w, _ = x.shape
    y = y.reshape(n, y.shape[1], y.shape[2], 2, 2, c_out)
    # Window t of the padded input starts at input row t - pad_lo; phase r at output m needs t = m - lo_r + pad_lo.
    rows = []
    for r in range(2):
        sr = pad_lo - los[r]
        rows.append(jnp.stack([y[:, sr:sr + h, pad_lo - los[q]:pad_lo - los[q] + w, r, q] for q in range(2)],
                              axis=3))                  # (N, H, W, 2[q], C)
    return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, c_out)   # (N, H, 2[r], W, 2[q], C) -> interleaved


def conv_transpose(x: jax.Array, wf: jax.Array, *, stride: int, padding: int, impl: str,
                   precision: str = "float32") -> jax.Array:
    if impl == "phase":
        return conv_transpose_phase(x, wf, stride=stride, padding=padding, precision=precision)
    if impl == "dilated":
        return conv_transpose_dilated(x, wf, stride=stride, padding=padding, precision=precision)
    raise ValueError(f"unknown conv-transpose formulation {impl!r}; expected one of {IMPLS}")


class ConvTranspose2d(nnx.Module):
    """``torch.nn.ConvTranspose2d`` (groups 1, dilation 1, output_padding 0) on NHWC input.

    ``weight`` is the flipped kernel in HWIO (see the module docstring). ``impl`` picks the formulation
    (``"phase"`` or ``"dilated"``); ``__call__(x, impl=...)`` overrides it per call.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 bias: bool = True, impl: str = DEFAULT_IMPL, precision: str = "float32"):
        if impl not in IMPLS:
            raise ValueError(f"unknown conv-transpose formulation {impl!r}; expected one of {IMPLS}")
        self.stride, self.padding, self.impl = stride, padding, impl
        self.precision = precision  # hrjax.models.layers.PRECISIONS; set with layers.configure
        self.weight = nnx.Param(jnp.zeros((kernel, kernel, in_ch, out_ch), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32)) if bias else None

    def __call__(self, x: jax.Array, impl: str | None = None) -> jax.Array:
        y = conv_transpose(x, self.weight[...], stride=self.stride, padding=self.padding,
                           impl=impl or self.impl, precision=self.precision)
        if self.bias is not None:
            y = y + self.bias[...].reshape(1, 1, 1, -1)
        return y


# PyTorch [in, out, kh, kw] -> HWIO [kh, kw, in, out], then flip kh and kw.
IOHW_TO_FLIPPED_HWIO = Layout(perm=(2, 3, 0, 1), flip_axes=(0, 1))
ConvTranspose2d.torch_layout = {"weight": IOHW_TO_FLIPPED_HWIO}
