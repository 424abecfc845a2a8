"""Host memory hygiene for long runs on CPU.

XLA:CPU runs every kernel on a pool of threads, and glibc gives each thread its own malloc arena; memory freed
in one arena is not reused by another, so a Final run's resident set grows with every stage. Measured on the
lunch_640 Final run (15 patches): peak RSS 10.9 GB with glibc's default (8 arenas per core), 5.7 GB with two
arenas, at the same speed. ``limit_malloc_arenas`` sets that limit from inside the process (``mallopt``), which
covers the arenas of threads started afterwards, i.e. every JAX thread when it runs before JAX initialises its
backend. The CLI and the benchmarks call it first; library users can do the same, or set MALLOC_ARENA_MAX=2.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``n`` (unless MALLOC_ARENA_MAX is set); False where not glibc.

    (Fixing the mmap threshold as well, so that every large buffer is its own mapping, was tried: it made the
    photo benchmark 28 % slower from page faults, since XLA:CPU allocates its buffers anew on every call.)"""
    if "MALLOC_ARENA_MAX" in os.environ:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, int(n)))
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return False
