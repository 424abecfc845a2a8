"""XLA:CPU settings hrjax runs with: convolutions on XLA's own kernels rather than YNNPACK's.

jaxlib 0.10 hands every convolution on CPU to YNNPACK (the XLA flag
``--xla_cpu_experimental_ynn_fusion_type`` includes "individual_convolution" by default). On this project's
2-core x86 machine that is the slower choice for both networks measured (MiDaS, the merge net), and it makes
XLA's native grouped convolution so slow that hrjax had to unroll ResNeXt's 32 groups ("split"), which costs
~20 s of compiling per MiDaS input shape. With YNNPACK kept for matrix products only (``individual_dot``) the
convolutions run on XLA's Eigen kernels (measured 2026-12-07, jitted MiDaS v2.1 forward, one image, best of
two warm calls / compile; docs/benchmarks.md, "CPU convolutions"):

  =============  =====================  =====================  =====================  ====================
  input          split, YNNPACK convs   native, YNNPACK convs  split, XLA convs       native, XLA convs
  =============  =====================  =====================  =====================  ====================
  384 x 384      2.01 s / 19.2 s        2.55 s / 2.4 s         1.57 s / 15.1 s        1.66 s / 2.6 s
  768 x 768      7.93 s / 16.5 s        11.88 s / 2.7 s        6.94 s / 17.4 s        6.77 s / 3.0 s
  768 x 1344     13.19 s / 20.7 s       22.60 s / 2.9 s        11.02 s / 16.8 s       11.96 s / 2.6 s
  =============  =====================  =====================  =====================  ====================

and the merge network at 1024^2 1.97 -> 1.65 s; a program's first call also loses most of its extra second
(YNNPACK builds its kernels on a program's first run). The results differ from YNNPACK's in float32 rounding only
(MiDaS output: 3e-6 of its range; every golden passes either way). So the command line, the benchmarks and the
tests call :func:`use_xla_convolutions` before JAX starts. ResNeXt's grouped convolutions run on neither: "auto"
is hrjax's own kernel on a CPU (hrjax.ops.grouped_conv). Where that cannot be built (no C++ compiler), "auto"
picks "packed" when the flag is in effect (:func:`xla_convolutions`): "native" with ResNeXt's narrow early groups
merged, faster than "split" at the compile time of "native" (hrjax.models.precision).

Library users get the same by calling :func:`use_xla_convolutions` before their first JAX call (or by setting the
flag in XLA_FLAGS themselves); without it the dense convolutions stay on YNNPACK and the kernel-less fallback of
"auto" is "split", the faster formulation under YNNPACK. A flag the user already set in XLA_FLAGS is never
overridden. Accelerators are unaffected (the flag is XLA:CPU's).
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# YNNPACK keeps the single matrix products it has by default (resize operators' einsums, the ViT's dots)
XLA_CONVOLUTIONS = f"{YNN_FLAG}=individual_dot"


def _ynn_setting(flags: str) -> str | None:
    """The value of the last ``--xla_cpu_experimental_ynn_fusion_type`` in ``flags`` (None: not set)."""
    found = re.findall(re.escape(YNN_FLAG) + r"=(\S*)", flags)
    return found[-1] if found else None


def use_xla_convolutions(env: MutableMapping[str, str] = os.environ) -> bool:
    """Add ``--xla_cpu_experimental_ynn_fusion_type=individual_dot`` to XLA_FLAGS unless that flag is set already.

    Takes effect only if it runs before JAX initialises its CPU backend (XLA reads XLA_FLAGS once, then).
    Returns whether convolutions run on XLA's kernels now (see :func:`xla_convolutions`)."""
    flags = env.get("XLA_FLAGS", "")
    if _ynn_setting(flags) is None:
        env["XLA_FLAGS"] = f"{flags} {XLA_CONVOLUTIONS}".strip()
    return xla_convolutions(env)


def xla_convolutions(env: MutableMapping[str, str] = os.environ) -> bool:
    """Whether XLA_FLAGS keeps convolutions off YNNPACK (the flag is set and names no convolution fusion)."""
    setting = _ynn_setting(env.get("XLA_FLAGS", ""))
    return setting is not None and "convolution" not in setting
