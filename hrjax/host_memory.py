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

M_ARENA_MAX = -8      # glibc's mallopt parameter numbers
M_MMAP_THRESHOLD = -3


def limit_malloc_arenas(n: int = 2, mmap_threshold: int = 4 << 20) -> bool:
    """Cap glibc's malloc arenas at ``n`` and serve every block of ``mmap_threshold`` bytes or more with its own
    mapping (unless MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_ are set); False where not glibc.

    The fixed mmap threshold matters as much as the arena cap: glibc otherwise raises the threshold to 32 MB
    after the first large free, so the patch canvases and network buffers (1-50 MB each) land in the heap,
    where fragmentation keeps them resident; a mapping goes back to the OS when freed."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = True
        if "MALLOC_ARENA_MAX" not in os.environ:
            ok = bool(libc.mallopt(M_ARENA_MAX, int(n))) and ok
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            ok = bool(libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and ok
        return ok
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return False
