"""hrjax.cpu_backend: XLA rather than YNNPACK runs the convolutions on CPU, and "auto" follows it."""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrjax.cpu_backend import XLA_CONVOLUTIONS, YNN_FLAG, use_xla_convolutions, xla_convolutions
from hrjax.models.layers import (PACK_CHANNELS, PACK_MIN_PIXELS, block_diagonal_groups, conv2d, pack_factor,
                                 resolve_grouped_impl)

# a 3x3 convolution, compiled, and its optimised HLO printed (YNNPACK takes dense ones from ~16x16x32 up)
_CONV_HLO = """
import jax, jax.numpy as jnp
from hrjax.models.layers import conv2d
f = jax.jit(lambda x, w: conv2d(x, w, stride=1, padding=1))
print(f.lower(jnp.ones((1, 16, 16, 32)), jnp.ones((3, 3, 32, 32))).compile().as_text())
"""


def test_the_flag_is_added_once_and_never_overrides_the_users():
    env = {}
    assert use_xla_convolutions(env) and env["XLA_FLAGS"] == XLA_CONVOLUTIONS
    assert use_xla_convolutions(env) and env["XLA_FLAGS"] == XLA_CONVOLUTIONS
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    use_xla_convolutions(env)
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=8 {XLA_CONVOLUTIONS}"
    users = {"XLA_FLAGS": f"{YNN_FLAG}=individual_dot,individual_convolution"}
    assert not use_xla_convolutions(users)  # the user's choice stays, and says YNNPACK runs the convolutions
    assert users["XLA_FLAGS"] == f"{YNN_FLAG}=individual_dot,individual_convolution"
    assert xla_convolutions({"XLA_FLAGS": f"{YNN_FLAG}="})  # nothing on YNNPACK
    assert not xla_convolutions({})  # jaxlib's default: convolutions on YNNPACK


def test_auto_is_the_kernel_else_packed_with_xla_convolutions(monkeypatch):
    """Where hrjax's grouped convolution cannot build (no compiler: test_grouped_conv), "auto" follows the flag."""
    from hrjax.ops import grouped_conv

    assert jax.default_backend() == "cpu"
    assert resolve_grouped_impl("auto") == "kernel"
    monkeypatch.setattr(grouped_conv, "available", lambda: False)
    monkeypatch.setenv("XLA_FLAGS", XLA_CONVOLUTIONS)
    assert resolve_grouped_impl("auto") == "packed"
    monkeypatch.setenv("XLA_FLAGS", f"{YNN_FLAG}=individual_convolution")
    assert resolve_grouped_impl("auto") == "split"
    monkeypatch.delenv("XLA_FLAGS")
    assert resolve_grouped_impl("auto") == "split"
    for impl in ("native", "split", "packed"):
        assert resolve_grouped_impl(impl) == impl


def test_the_flag_takes_convolutions_off_ynnpack():
    """In this process (conftest called use_xla_convolutions before JAX started) no convolution is a YNNPACK
    fusion; in a process started without the flag they are: the flag is real and jaxlib's default still needs it
    (if this half fails, jaxlib changed and hrjax.cpu_backend's measurements are to be redone)."""
    assert xla_convolutions()
    x, w = jnp.ones((1, 16, 16, 32)), jnp.ones((3, 3, 32, 32))
    here = jax.jit(lambda x, w: conv2d(x, w, stride=1, padding=1))
    assert "__ynn_fusion" not in here.lower(x, w).compile().as_text()

    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(YNN_FLAG))
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    out = subprocess.run([sys.executable, "-c", _CONV_HLO], env=env, capture_output=True, text=True, check=True)
    assert "__ynn_fusion" in out.stdout


def test_the_command_line_sets_it_before_jax_starts(monkeypatch):
    from hrjax import cli

    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    monkeypatch.setattr(sys, "argv", ["hrjax", "--version"])
    with pytest.raises(SystemExit):
        cli.main()
    assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8", XLA_CONVOLUTIONS]


@pytest.mark.parametrize("hw,channels,stride", [((64, 72), 256, 1), ((66, 64), 512, 2), ((96, 96), 256, 2),
                                                ((40, 40), 256, 1), ((64, 64), 1024, 1)])
def test_packed_grouped_conv_equals_native(hw, channels, stride):
    """"packed" (narrow groups merged under block-diagonal kernels) is the native grouped convolution; where it
    applies is decided by the group width and the input size (layers.pack_factor)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, *hw, channels)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, channels // 32, channels)), jnp.float32)
    native, packed = (jax.jit(lambda x, w, i=impl: conv2d(x, w, stride=stride, padding=1, groups=32, grouped_impl=i))
                      for impl in ("native", "packed"))
    want = np.asarray(native(x, w))
    np.testing.assert_allclose(np.asarray(packed(x, w)), want, rtol=0, atol=1e-5 * np.abs(want).max())
    expect = 1 if channels // 32 >= PACK_CHANNELS or hw[0] * hw[1] < PACK_MIN_PIXELS else PACK_CHANNELS * 32 // channels
    assert pack_factor(x.shape, w.shape, 32) == expect
    groups_in_hlo = re.findall(r"feature_group_count\s*=\s*(\d+)", packed.lower(x, w).as_text())
    assert groups_in_hlo == ([str(32 // expect)] if expect > 1 else ["32"])


def test_block_diagonal_kernel_holds_each_group_on_its_block():
    w = jnp.arange(1, 1 + 3 * 3 * 2 * 8, dtype=jnp.float32).reshape(3, 3, 2, 8)   # 4 groups, 2 in / 2 out each
    packed = np.asarray(block_diagonal_groups(w, groups=4, pack=2))                 # 2 groups of 4 in / 4 out
    assert packed.shape == (3, 3, 4, 8)
    for o in range(8):
        block = (o // 2) % 2
        rows = slice(2 * block, 2 * block + 2)
        np.testing.assert_array_equal(packed[:, :, rows, o], np.asarray(w[:, :, :, o]))
        assert not packed[:, :, [i for i in range(4) if i // 2 != block], o].any()
