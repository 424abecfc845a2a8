"""Host memory hygiene (hrjax.host_memory): free heap pages really go back to the OS, the releaser thread
starts and stops, and loaded weights live on the device (numpy weights were copied anew by every queued call)."""

import platform
import time

import jax
import numpy as np
import pytest

from hrjax.host_memory import FreeMemoryReleaser, release_free_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_release_returns_the_holes_of_a_fragmented_heap():
    # 64 KB blocks stay below glibc's mmap threshold, so they come from the heap; freeing every other one
    # leaves 64 MB of holes that free() alone never returns (the kept blocks pin the heap's top).
    blocks = [np.ones(16 * 1024, np.float32) for _ in range(2048)]
    del blocks[::2]
    before = rss()
    assert release_free_memory()
    after = rss()
    assert before - after > 32 * 2 ** 20, (before, after)
    assert all(float(b[0]) == 1.0 for b in blocks)  # the live blocks are untouched


def test_releaser_thread_runs_and_stops(monkeypatch):
    """The thread calls the release repeatedly while the block runs and never after it. No wall-time bound: the
    test waits (up to a minute, for a loaded machine) for the third call instead of counting calls in a slot."""
    import threading

    import hrjax.host_memory as hm

    calls, third = [], threading.Event()

    def fake_release():
        calls.append(time.perf_counter())
        if len(calls) >= 3:
            third.set()
        return True

    monkeypatch.setattr(hm, "release_free_memory", fake_release)
    with FreeMemoryReleaser(0.01) as r:
        if GLIBC:
            assert third.wait(60), f"only {len(calls)} release calls in 60 s"
        assert (r._thread is not None and r._thread.is_alive()) if GLIBC else r._thread is None
    assert r._thread is None  # joined on exit
    n = len(calls)
    assert (n >= 3) if GLIBC else (n == 0)
    time.sleep(0.05)
    assert len(calls) == n, "the thread kept running after the block"
    with FreeMemoryReleaser(0) as off:
        assert off._thread is None


def test_loaded_weights_are_device_arrays(models):
    """Weights are put on the device once at load (numpy state would be copied by every jitted call)."""
    leaves = jax.tree.leaves((models.base_state, models.merge_state))
    assert leaves and all(isinstance(x, jax.Array) for x in leaves)
