"""hrjax.cpu_backend: XLA rather than YNNPACK runs the convolutions on CPU, and "auto" follows it."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from hrjax.cpu_backend import XLA_CONVOLUTIONS, YNN_FLAG, use_xla_convolutions, xla_convolutions
from hrjax.models.layers import conv2d, resolve_grouped_impl

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


def test_auto_is_native_on_cpu_only_with_xla_convolutions(monkeypatch):
    assert jax.default_backend() == "cpu"
    monkeypatch.setenv("XLA_FLAGS", XLA_CONVOLUTIONS)
    assert resolve_grouped_impl("auto") == "native"
    monkeypatch.setenv("XLA_FLAGS", f"{YNN_FLAG}=individual_convolution")
    assert resolve_grouped_impl("auto") == "split"
    monkeypatch.delenv("XLA_FLAGS")
    assert resolve_grouped_impl("auto") == "split"
    assert resolve_grouped_impl("native") == "native" and resolve_grouped_impl("split") == "split"


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
