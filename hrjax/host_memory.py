"""Host memory hygiene for long runs on CPU.

XLA:CPU runs every kernel on a pool of threads, and glibc gives each thread its own malloc arena; memory freed
in one arena is not reused by another, so a Final run's resident set grows with every stage. Measured on the
lunch_640 Final run (15 patches): peak RSS 10.9 GB with glibc's default (8 arenas per core), 5.7 GB with two
arenas, at the same speed. ``limit_malloc_arenas`` sets that limit from inside the process (``mallopt``), which
covers the arenas of threads started afterwards, i.e. every JAX thread when it runs before JAX initialises its
backend. The CLI and the benchmarks call it first; library users can do the same, or set MALLOC_ARENA_MAX=2.

Even with two arenas the heap fragments: XLA:CPU allocates and frees its per-call buffers (up to glibc's 32 MB
mmap threshold they come from the heap) in an order that leaves most of a grown heap free but not returned.
Measured after 16 MiDaS patch passes of a 65-patch run: heap 3.3 GB of which 2.3 GB free, RSS 4.1 GB;
``malloc_trim(0)`` gave the free pages back (RSS 1.5 GB) in milliseconds. :func:`release_free_memory` does that;
the folder run (``hrjax boost``, :func:`hrjax.run.folder.run`) keeps a :class:`FreeMemoryReleaser` thread
calling it every few seconds, so the resident set tracks the live data (a process policy: the library call
``hrjax.boost`` starts no thread; user code that wants the same wraps its calls in one).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover - no C library to load
        return None


_LIBC = _libc()
_MALLOC_TRIM = getattr(_LIBC, "malloc_trim", None)  # glibc only


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``n`` (unless MALLOC_ARENA_MAX is set); False where not glibc.

    (Fixing the mmap threshold as well, so that every large buffer is its own mapping, was tried: it made the
    photo benchmark 28 % slower from page faults, since XLA:CPU allocates its buffers anew on every call.)"""
    if "MALLOC_ARENA_MAX" in os.environ:
        return True
    try:
        return bool(_LIBC.mallopt(M_ARENA_MAX, int(n)))
    except AttributeError:  # not glibc (macOS, musl) or no libc: nothing to do
        return False


def release_free_memory() -> bool:
    """Return the free pages of every malloc arena to the OS (glibc ``malloc_trim(0)``); False where not glibc.

    Cheap (it walks the free lists and ``madvise``s whole free pages) and safe to call at any time from any
    thread; it changes no data, only which pages stay resident."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class FreeMemoryReleaser:
    """``with FreeMemoryReleaser(interval):`` calls :func:`release_free_memory` every ``interval`` seconds on a
    daemon thread while the block runs (and once at its end).

    A thread rather than calls between pipeline stages because JAX dispatches asynchronously: the host loop
    that queues a stage's batches is not where its buffers are freed. ``interval <= 0`` does nothing."""

    def __init__(self, interval: float):
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
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
