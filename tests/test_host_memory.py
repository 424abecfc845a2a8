"""Host memory hygiene (hrjax.host_memory): free heap pages really go back to the OS, freed large buffers are
reused without new page faults under the CLI's policy, the releaser thread starts, spares the kept free heap and
stops, and loaded weights live on the device (numpy weights were copied anew by every queued call)."""

import platform
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from hrjax.host_memory import FreeMemoryReleaser, free_heap_bytes, release_free_memory

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


# Touches a freed 64 MB block's size again and prints the page faults of that second touch. Above glibc's
# largest mmap threshold (32 MB) such a block is mapped afresh by default, so every page faults again.
SECOND_TOUCH = """
import ctypes, resource, sys
from hrjax.host_memory import reuse_freed_buffers
if sys.argv[1] == "reuse":
    assert reuse_freed_buffers()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
n = 64 << 20
def touch():
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    return p
libc.free(touch())
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
libc.free(touch())
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_reuse_freed_buffers_spares_the_page_faults_of_a_large_buffer():
    """Each in a fresh process (the setting is the process's). 16384 pages of 4 KB: the default faults on most of
    them again; with the CLI's policy the block comes back from the heap, already mapped."""
    root = Path(__file__).resolve().parents[1]

    def faults(mode: str) -> int:
        p = subprocess.run([sys.executable, "-c", SECOND_TOUCH, mode], capture_output=True, text=True, cwd=root,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        return int(p.stdout.split()[-1])

    default, reused = faults("default"), faults("reuse")
    assert default > 8192, default
    assert reused < 1024, reused


def test_glibc_settings_made_through_the_environment_are_kept(monkeypatch):
    import hrjax.host_memory as hm

    calls = []
    monkeypatch.setattr(hm, "_MALLOPT", lambda param, value: calls.append((param, value)) or 1)
    monkeypatch.setenv("MALLOC_MMAP_MAX_", "65536")
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert hm.reuse_freed_buffers(keep_free_bytes=123)
    assert calls == [(hm.M_ARENA_MAX, 2), (hm.M_TRIM_THRESHOLD, 123)]  # no M_MMAP_MAX: the user's stands


def test_releaser_spares_the_kept_free_heap(monkeypatch):
    """With ``keep_free_bytes`` the thread gives pages back only while more than that is free."""
    import threading

    import hrjax.host_memory as hm

    if not GLIBC:
        pytest.skip("no releaser thread without glibc's malloc_trim")
    assert isinstance(free_heap_bytes(), int)  # glibc >= 2.33's mallinfo2
    free, looked, released = [100], threading.Event(), []
    looks = []

    def fake_free():
        looks.append(free[0])
        if len(looks) >= 3:
            looked.set()
        return free[0]

    monkeypatch.setattr(hm, "free_heap_bytes", fake_free)
    monkeypatch.setattr(hm, "release_free_memory", lambda: released.append(free[0]) or True)
    with FreeMemoryReleaser(0.01, keep_free_bytes=1000):
        assert looked.wait(60), "the thread never looked at the free heap"
        assert released == []  # 100 of 1000 free: kept
        free[0] = 5000
        deadline = time.monotonic() + 60
        while not released and time.monotonic() < deadline:
            time.sleep(0.01)
        assert released and released[0] == 5000


def test_loaded_weights_are_device_arrays(models):
    """Weights are put on the device once at load (numpy state would be copied by every jitted call)."""
    leaves = jax.tree.leaves((models.base_state, models.merge_state))
    assert leaves and all(isinstance(x, jax.Array) for x in leaves)
