"""Host memory hygiene for long runs on CPU.

XLA:CPU runs every kernel on a pool of threads, and glibc gives each thread its own malloc arena; memory freed
in one arena is not reused by another, so a Final run's resident set grows with every stage. Measured on the
lunch_640 Final run (15 patches): peak RSS 10.9 GB with glibc's default (8 arenas per core), 5.7 GB with two
arenas, at the same speed. ``limit_malloc_arenas`` sets that limit from inside the process (``mallopt``), which
covers the arenas of threads started afterwards, i.e. every JAX thread when it runs before JAX initialises its
backend. The CLI and the benchmarks call it first (in :func:`reuse_freed_buffers`); library users can do the
same, or set MALLOC_ARENA_MAX=2.

Even with two arenas the heap fragments: XLA:CPU allocates and frees its per-call buffers (up to glibc's 32 MB
mmap threshold they come from the heap) in an order that leaves most of a grown heap free but not returned.
Measured after 16 MiDaS patch passes of a 65-patch run: heap 3.3 GB of which 2.3 GB free, RSS 4.1 GB;
``malloc_trim(0)`` gave the free pages back (RSS 1.5 GB) in milliseconds. :func:`release_free_memory` does that;
the folder run (``hrjax boost``, :func:`hrjax.run.folder.run`) keeps a :class:`FreeMemoryReleaser` thread
calling it every few seconds, so the resident set tracks the live data (a process policy: the library call
``hrjax.boost`` starts no thread; user code that wants the same wraps its calls in one).

The larger buffers (above 32 MB: MiDaS's activations at 768^2, the merge net's at 1024^2) glibc maps afresh
for every call and unmaps on free, so the kernel zeroes them again page by page: an 800x450 Final run took
~9 M minor page faults and 16-20 s of system time on 2 cores. :func:`reuse_freed_buffers` (the CLI's policy)
keeps them: no mmap, freed heap kept up to 1 GiB at its top (and the two arenas above); the folder run then
gives free pages back between images, and during one only once more than that much is free. Measured with the
CLI, alternated, warm cache, 800x450 Final, max_res 2400: 1.1-1.4 M faults instead of 9.2-10.3 M, system time
3.5-3.7 s instead of 17-19 s, wall 132.1 / 132.2 s instead of 139.9 / 140.9 s, peak RSS 3.1-3.2 GB instead of
2.1-2.2 GB (the reference's: 3.3-3.4 GB). One arena instead of two kept even the thread arena's largest buffers
(which it still maps when they do not fit its 64 MB heaps) but made compiling 14-27 % slower (lock contention).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

# glibc's mallopt parameter numbers
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
# free heap that stays resident for the next call's buffers (reuse_freed_buffers, FreeMemoryReleaser)
KEEP_FREE_BYTES = 1 << 30


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover - no C library to load
        return None


_LIBC = _libc()
_MALLOC_TRIM = getattr(_LIBC, "malloc_trim", None)  # glibc only
_MALLOPT = getattr(_LIBC, "mallopt", None)


class _MallInfo2(ctypes.Structure):  # glibc >= 2.33
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]


_MALLINFO2 = getattr(_LIBC, "mallinfo2", None)
if _MALLINFO2 is not None:
    _MALLINFO2.restype = _MallInfo2


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``n`` (unless MALLOC_ARENA_MAX is set); False where not glibc.

    (Fixing the mmap threshold as well, so that every large buffer is its own mapping, was tried: it made the
    photo benchmark 28 % slower from page faults, since XLA:CPU allocates its buffers anew on every call.)"""
    return _mallopt("MALLOC_ARENA_MAX", M_ARENA_MAX, n)


def _mallopt(env_name: str, param: int, value: int) -> bool:
    """``mallopt(param, value)`` unless the user set the same through ``env_name``; False where not glibc."""
    if _MALLOPT is None:  # not glibc (macOS, musl) or no libc: nothing to do
        return False
    return env_name in os.environ or bool(_MALLOPT(param, int(value)))


def reuse_freed_buffers(keep_free_bytes: int = KEEP_FREE_BYTES) -> bool:
    """Keep freed buffers in the heap for the next call instead of unmapping them (module docstring): two malloc
    arenas (:func:`limit_malloc_arenas`), no mmap, trim the heap's top only beyond ``keep_free_bytes``. Each
    setting the user made through glibc's environment variables (MALLOC_ARENA_MAX, MALLOC_MMAP_MAX_,
    MALLOC_TRIM_THRESHOLD_) is kept. Call it before JAX starts its threads; False where not glibc.

    Pair it with a :class:`FreeMemoryReleaser` given the same ``keep_free_bytes`` (and a release between
    images): trimming every few seconds regardless would return the kept buffers (measured 7 % slower)."""
    ok = limit_malloc_arenas()
    ok = _mallopt("MALLOC_MMAP_MAX_", M_MMAP_MAX, 0) and ok
    return _mallopt("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, keep_free_bytes) and ok


def free_heap_bytes() -> int | None:
    """Bytes free in the malloc arenas, resident or not (glibc ``mallinfo2().fordblks``); None where unknown."""
    if _MALLINFO2 is None:
        return None
    return int(_MALLINFO2().fordblks)


def release_free_memory() -> bool:
    """Return the free pages of every malloc arena to the OS (glibc ``malloc_trim(0)``); False where not glibc.

    Cheap (it walks the free lists and ``madvise``s whole free pages) and safe to call at any time from any
    thread; it changes no data, only which pages stay resident."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class FreeMemoryReleaser:
    """``with FreeMemoryReleaser(interval, keep_free_bytes):`` calls :func:`release_free_memory` every
    ``interval`` seconds on a daemon thread while the block runs, whenever more than ``keep_free_bytes`` of the
    heap is free (0: every time; where that is unknown, every time too), and once at the block's end.

    A thread rather than calls between pipeline stages because JAX dispatches asynchronously: the host loop
    that queues a stage's batches is not where its buffers are freed. ``interval <= 0`` does nothing."""

    def __init__(self, interval: float, keep_free_bytes: int = 0):
        self.interval = float(interval)
        self.keep_free_bytes = int(keep_free_bytes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            free = free_heap_bytes() if self.keep_free_bytes > 0 else None
            if free is None or free > self.keep_free_bytes:
                release_free_memory()

    def __enter__(self) -> "FreeMemoryReleaser":
        if self.interval > 0 and _MALLOC_TRIM is not None:
            self._thread = threading.Thread(target=self._run, name="hrjax-release-free-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            release_free_memory()
