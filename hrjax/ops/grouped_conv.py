"""A grouped convolution of our own for XLA:CPU ("kernel" in hrjax.models.precision.GROUPED_IMPLS).

XLA:CPU runs ResNeXt's 32-group 3x3 convolutions 2-4x slower per FLOP than torch's oneDNN kernel, and no flag
or formulation measured makes up for it (docs/benchmarks.md, "CPU convolutions"): the grouped convolutions were
the whole of hrjax's gap to torch on a MiDaS pass. ``grouped_conv.cc`` (next to this file) is a direct
convolution for those shapes, handed to XLA through its FFI and run on XLA's intra-op threads. It is compiled
on first use with the system's C++ compiler (``$CXX``, else ``c++``, ``g++`` or ``clang++``) for this machine's
CPU (``-march=native``) against the FFI headers jaxlib ships, and kept in :func:`kernel_dir` under a name that
changes with the source, the compiler, jaxlib and the CPU, so a home folder shared by different machines is safe.
Without a compiler, or if the build fails, :func:`available` is False and "auto" keeps XLA's convolution.

The result is XLA's to float32 rounding (the same sums, the same order: mostly bit for bit). Gradients, for code
that differentiates through a network, are XLA's convolution's.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = Path(__file__).with_name("grouped_conv.cc")
TARGET = "hrjax_grouped_conv"
ENV_KERNEL_DIR = "HRJAX_KERNEL_DIR"
GROUP_WIDTHS = (8, 16, 32, 64)  # channels per group the kernel has code for (as many in as out)
COPY_WIDTH = 32  # groups this wide or wider are copied and zero-padded in the kernel; narrower ones come padded
_BUILD_LOCK = threading.Lock()  # one build and one registration per process, whichever thread traces first
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-std=c++17", "-shared", "-fPIC")


def kernel_dir() -> Path:
    """Where built kernels are kept: ``$HRJAX_KERNEL_DIR``, else ``~/.cache/hrjax/kernels``."""
    env = os.environ.get(ENV_KERNEL_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hrjax" / "kernels"


def compiler() -> str | None:
    """The C++ compiler to build with: ``$CXX`` if set (None when it is not found), else the first of
    ``c++``, ``g++``, ``clang++`` on PATH."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    return next((found for name in ("c++", "g++", "clang++") if (found := shutil.which(name))), None)


def _cpu_flags() -> str:
    # -march=native code may not run on another CPU model: the library's name depends on what this one has
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def library_path(cxx: str) -> Path:
    """The built library's path for this source, compiler, jaxlib and CPU."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = "\n".join([SOURCE.read_text(), cxx, version, " ".join(FLAGS), jax.__version__, platform.machine(),
                     _cpu_flags()])
    return kernel_dir() / f"grouped_conv-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"


def build(cxx: str, out: Path, source: Path = SOURCE) -> None:
    """Compile ``source`` to ``out``. The library appears whole or not at all (written beside, then renamed), so
    processes building at once cannot load half a file. Raises RuntimeError with the compiler's output."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.stem, suffix=".tmp")
    os.close(fd)
    try:
        cmd = [cxx, *FLAGS, f"-I{jax.ffi.include_dir()}", str(source), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"building {source.name} failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


def library() -> Path | None:
    """The kernel's library, built now if need be and registered with XLA:CPU; None when there is no compiler or
    the build fails (after one warning): callers then use XLA's convolution."""
    with _BUILD_LOCK:
        return _build_and_register()


def available() -> bool:
    """Whether the kernel can run here (:func:`library` built and registered it)."""
    return library() is not None


@functools.cache  # decided once per process: XLA's registry of FFI targets is the process's
def _build_and_register() -> Path | None:
    cxx = compiler()
    if cxx is None:
        warnings.warn("no C++ compiler found ($CXX, c++, g++, clang++): grouped convolutions run on XLA:CPU's "
                      "slower kernel", RuntimeWarning, stacklevel=5)
        return None
    try:
        path = library_path(cxx)
        if not path.exists():
            build(cxx, path)
        lib = ctypes.cdll.LoadLibrary(str(path))
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.HrjaxGroupedConv), platform="cpu")
    except (OSError, RuntimeError) as e:
        warnings.warn(f"hrjax's grouped convolution is not available, XLA:CPU's slower one runs instead: {e}",
                      RuntimeWarning, stacklevel=5)
        return None
    return path


def supported(x: jax.Array, w: jax.Array, groups: int) -> bool:
    """Whether :func:`grouped_conv` handles this convolution (float32, groups of 8-64 channels in and out)."""
    cg, cout = w.shape[2], w.shape[3]
    return (groups > 1 and x.dtype == jnp.float32 and w.dtype == jnp.float32 and cg * groups == x.shape[-1]
            and cout == cg * groups and cg in GROUP_WIDTHS)


def _forward(x: jax.Array, w: jax.Array, stride: int, padding: int, groups: int) -> jax.Array:
    if w.shape[2] < COPY_WIDTH:  # narrow groups read their input in place: pad it here (grouped_conv.cc, Rows)
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
        padding = 0
    n, h, wd, _ = x.shape
    kh, kw, _, cout = w.shape
    out = jax.ShapeDtypeStruct((n, (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1,
                                cout), jnp.float32)
    return jax.ffi.ffi_call(TARGET, out, vmap_method="sequential")(
        x, w, stride=np.int64(stride), padding=np.int64(padding), groups=np.int64(groups))


def _xla(x: jax.Array, w: jax.Array, stride: int, padding: int, groups: int) -> jax.Array:
    return jax.lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding), (padding, padding)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
                                        precision=jax.lax.Precision.HIGHEST)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def grouped_conv(x: jax.Array, w: jax.Array, stride: int, padding: int, groups: int) -> jax.Array:
    """PyTorch's ``F.conv2d(x, w, stride=stride, padding=padding, groups=groups)`` on NHWC ``x`` with an HWIO
    kernel, float32, on the CPU: call only where :func:`available` and :func:`supported` hold."""
    return _forward(x, w, stride, padding, groups)


def _fwd(x, w, stride, padding, groups):
    return _forward(x, w, stride, padding, groups), (x, w)


def _bwd(stride, padding, groups, res, g):
    x, w = res
    return jax.vjp(lambda a, b: _xla(a, b, stride, padding, groups), x, w)[1](g)


grouped_conv.defvjp(_fwd, _bwd)
