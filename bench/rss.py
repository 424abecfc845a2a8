"""Resident-set sampling for the benchmarks: the peak host memory of each pipeline stage.

``VmHWM`` gives only the process's all-time peak; to know *which* stage sets it, a thread reads
``/proc/self/statm`` every few milliseconds and files each sample under the label of the stage that is
running (the labels come from the pipeline's progress callback). Linux only; elsewhere the table is empty.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATM = Path("/proc/self/statm")


def rss_bytes() -> int | None:
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class RssSampler:
    """``with RssSampler() as s: ... s.label("stage") ...``; ``s.peaks`` maps each label to its peak RSS (bytes),
    in the order the labels first appeared; ``s.timeline`` holds (seconds, bytes, label) at most every
    ``interval`` seconds, kept when the label changes or the RSS moved by ``step`` bytes."""

    def __init__(self, interval: float = 0.02, step: int = 64 * 2 ** 20):
        self.interval = interval
        self.step = step
        self.peaks: dict[str, int] = {}
        self.timeline: list[tuple[float, int, str]] = []
        self._label = "start"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def label(self, name: str) -> None:
        self._sample()  # close the previous stage with a fresh reading
        self._label = name

    def progress(self, stage: str, done: int, total: int) -> None:
        """A :data:`hrjax.pipeline.boost.Progress` callback: one label per stage."""
        if stage != self._label:
            self.label(stage)

    def _sample(self) -> None:
        rss = rss_bytes()
        if rss is None:
            return
        label = self._label
        if rss > self.peaks.get(label, -1):
            self.peaks[label] = rss
        last = self.timeline[-1] if self.timeline else None
        if last is None or last[2] != label or abs(rss - last[1]) >= self.step:
            self.timeline.append((round(time.perf_counter() - self._t0, 2), rss, label))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
