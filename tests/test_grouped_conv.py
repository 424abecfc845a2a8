"""hrjax.ops.grouped_conv: hrjax's CPU grouped convolution against XLA's, its build, and where it steps aside."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrjax.models.layers import conv2d, resolve_grouped_impl
from hrjax.ops import grouped_conv


def _native(x, w, stride, padding, groups):
    return conv2d(x, w, stride=stride, padding=padding, groups=groups, grouped_impl="native")


def _pair(rng, n, hw, channels, groups, width=None):
    x = jnp.asarray(rng.standard_normal((n, *hw, channels)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, channels // groups, width or channels)) * 0.1, jnp.float32)
    return x, w


@pytest.fixture(scope="module", autouse=True)
def built():
    if grouped_conv.compiler() is None:
        pytest.skip("no C++ compiler: hrjax's grouped convolution cannot be built here")
    assert grouped_conv.available()


# every group width it has code for, both strides, paddings 0-2, odd sizes (a row's last pixels run one by one),
# batches; MiDaS's own shapes are covered by the network parity tests (test_midas, test_leres)
@pytest.mark.parametrize("n,hw,channels,groups,stride,padding", [
    (2, (13, 17), 256, 32, 1, 1),     # 8 channels per group, read in place
    (1, (30, 31), 512, 32, 2, 1),     # 16, stride 2
    (1, (9, 10), 1024, 32, 1, 1),     # 32: copied and padded in the kernel
    (3, (7, 5), 1024, 32, 2, 1),
    (1, (6, 6), 1024, 32, 1, 0),
    (2, (11, 6), 2048, 32, 1, 2),     # 64
    (1, (25, 26), 2048, 32, 2, 1),
    (1, (5, 7), 64, 8, 1, 1),         # 8 groups of 8
])
def test_equals_xla_under_jit_and_without(n, hw, channels, groups, stride, padding):
    x, w = _pair(np.random.default_rng(0), n, hw, channels, groups)
    want = np.asarray(_native(x, w, stride, padding, groups))
    scale = np.abs(want).max()
    eager = grouped_conv.grouped_conv(x, w, stride, padding, groups)
    jitted = jax.jit(grouped_conv.grouped_conv, static_argnums=(2, 3, 4))(x, w, stride, padding, groups)
    for got in (eager, jitted):
        assert got.shape == want.shape and got.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-6 * scale)


def test_conv2d_runs_it_for_kernel_and_auto_and_not_for_bfloat16():
    x, w = _pair(np.random.default_rng(1), 1, (8, 8), 1024, 32)
    conv = jax.jit(lambda x, w, impl, prec: conv2d(x, w, stride=1, padding=1, groups=32, grouped_impl=impl,
                                                   precision=prec), static_argnums=(2, 3))
    assert resolve_grouped_impl("auto") == "kernel"
    for impl in ("kernel", "auto"):
        assert grouped_conv.TARGET in conv.lower(x, w, impl, "float32").as_text()
        np.testing.assert_allclose(np.asarray(conv(x, w, impl, "float32")), np.asarray(_native(x, w, 1, 1, 32)),
                                   rtol=0, atol=1e-5)
    assert grouped_conv.TARGET not in conv.lower(x, w, "kernel", "bfloat16").as_text()  # XLA's, packed
    assert grouped_conv.TARGET not in conv.lower(x, w, "packed", "float32").as_text()


def test_shapes_it_has_no_code_for_take_xla():
    rng = np.random.default_rng(2)
    for channels, groups in ((128, 32), (256, 2)):  # 4 channels per group; 128 per group
        x, w = _pair(rng, 1, (6, 6), channels, groups)
        assert not grouped_conv.supported(x, w, groups)
        got = jax.jit(lambda x, w, g=groups: conv2d(x, w, stride=1, padding=1, groups=g, grouped_impl="kernel"))
        assert grouped_conv.TARGET not in got.lower(x, w).as_text()
        np.testing.assert_allclose(np.asarray(got(x, w)), np.asarray(_native(x, w, 1, 1, groups)), atol=1e-5)
    x, w = _pair(rng, 1, (6, 6), 256, 32, width=512)  # more outputs than inputs per group
    assert not grouped_conv.supported(x, w, 32)


def test_gradients_and_vmap_are_xlas():
    x, w = _pair(np.random.default_rng(3), 2, (6, 7), 1024, 32)

    def loss(conv):
        return lambda x, w: (conv(x, w, 1, 1, 32) ** 2).sum()

    got = jax.grad(loss(grouped_conv.grouped_conv), argnums=(0, 1))(x, w)
    want = jax.grad(loss(_native), argnums=(0, 1))(x, w)
    for g, h in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(h), rtol=1e-5, atol=1e-4)
    batched = jax.vmap(lambda a: grouped_conv.grouped_conv(a, w, 2, 1, 32))(x[None])
    np.testing.assert_allclose(np.asarray(batched[0]), np.asarray(_native(x, w, 2, 1, 32)), atol=1e-5)


def test_the_library_name_follows_source_and_compiler(tmp_path, monkeypatch):
    cxx = grouped_conv.compiler()
    monkeypatch.setenv(grouped_conv.ENV_KERNEL_DIR, str(tmp_path))
    path = grouped_conv.library_path(cxx)
    assert path.parent == tmp_path and path.suffix == ".so"
    assert grouped_conv.library_path(cxx) == path
    monkeypatch.setattr(grouped_conv, "FLAGS", (*grouped_conv.FLAGS, "-DSOMETHING_ELSE"))
    assert grouped_conv.library_path(cxx) != path


def test_a_failed_build_says_why_and_leaves_nothing(tmp_path):
    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++\n")
    out = tmp_path / "lib" / "x.so"
    with pytest.raises(RuntimeError, match="broken.cc"):
        grouped_conv.build(grouped_conv.compiler(), out, source=broken)
    assert list(out.parent.iterdir()) == []


def test_without_a_compiler_auto_falls_back_with_a_warning(tmp_path):
    """A fresh process: ``available`` is decided once per process (and the target registered once)."""
    code = ("import warnings, jax\n"
            "from hrjax.models.layers import resolve_grouped_impl\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    print(resolve_grouped_impl('auto'))\n"
            "print(caught[0].message)\n"
            "try:\n"
            "    resolve_grouped_impl('kernel')\n"
            "except ValueError as e:\n"
            "    print(e)\n")
    env = dict(os.environ, CXX="no-such-compiler", HRJAX_KERNEL_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "packed"
    assert "no C++ compiler found" in lines[1]
    assert "grouped_impl 'kernel': hrjax/ops/grouped_conv.cc could not be built here" in lines[2]
    assert list(tmp_path.iterdir()) == []
