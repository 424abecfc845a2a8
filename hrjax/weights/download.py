"""Download an official checkpoint (hash-checked, mirror fall-backs); ``hrjax.convert.install`` converts it.

pooch does the HTTP work: it streams into a temporary file beside the destination, checks the sha256 and only
then renames it into place, so a failed, truncated or wrong download never leaves a file that looks complete.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from hrjax.weights import catalog, store

DOWNLOADS = ".downloads"  # inside the weights dir; hidden, so `weights list` ignores it


class DownloadError(RuntimeError):
    pass


def manual_instructions(entry: catalog.ModelEntry, weights_dir: Path) -> str:
    ck = entry.checkpoint
    return (f"Download {ck.file_name} yourself (sha256 {ck.sha256}) from one of:\n"
            + "".join(f"  {u}\n" for u in ck.urls)
            + f"then convert it with:\n"
              f"  hrjax weights convert --model {entry.name} --source PATH/TO/{ck.file_name} "
              f"--weights-dir {weights_dir}")


class RichBar:
    """A download bar drawn by rich (a dependency), in pooch's progress-bar protocol (``total`` set by pooch,
    ``update``, ``reset``, ``close``): pooch's own bar needs tqdm, which hrjax does not depend on."""

    def __init__(self, console, description: str):
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)
        self.total = None
        # transient: a failed mirror leaves no empty bar behind; fetch logs the outcome of each try
        self._progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task(description, total=None)

    def update(self, n: int) -> None:
        self._progress.update(self._task, total=self.total or None, advance=n)

    def reset(self) -> None:
        self._progress.reset(self._task, total=self.total or None)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class PlainProgress:
    """The same protocol without a terminal (nohup, CI, ``| tee``): one line at most every ``every`` seconds
    and one at the end, so a log shows that a long download is moving without a line per chunk."""

    def __init__(self, log: Callable[[str], None], every: float = 10.0, clock=time.monotonic):
        self.total = None
        self._log, self._every, self._clock = log, every, clock
        self._t0 = self._last = clock()
        self._done = 0
        self._closed = False

    def update(self, n: int) -> None:
        self._done += n
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            rate = self._done / max(now - self._t0, 1e-9)
            of = f" of {_mb(self.total)} ({min(self._done / self.total, 1):.0%})" if self.total else ""
            self._log(f"  {_mb(self._done)}{of}, {_mb(rate)}/s")

    def reset(self) -> None:
        self._done = 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._log(f"  {_mb(self.total or self._done)} in {self._clock() - self._t0:.0f} s")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _reason(e: Exception) -> str:
    """One line saying why a mirror failed (pooch reports a hash mismatch as a ValueError). For a connection
    error, urllib3's innermost reason ("Failed to resolve 'sfu.ca' (...)") without the pool and retry text."""
    first = (str(e).splitlines() or [""])[0]
    if isinstance(e, ValueError) and "hash" in first.lower():
        return f"wrong sha256 ({first})"
    cause = e.args[0] if e.args else None
    inner = getattr(cause, "reason", None)  # requests.ConnectionError(urllib3 MaxRetryError(reason=...))
    if inner is not None:
        text = str(inner)
        first = text.split("): ", 1)[1] if "): " in text else text
    return f"{type(e).__name__}: {first}"


def fetch(entry: catalog.ModelEntry, dest_dir: Path, *, progress: Callable[[str], object] | None = None,
          log: Callable[[str], None] = lambda _: None, timeout: float = 30.0) -> Path:
    """Download ``entry``'s checkpoint into ``dest_dir`` trying each URL in turn; returns the verified file.

    ``progress(description)`` makes a fresh bar for each try (:class:`RichBar`, :class:`PlainProgress`, or
    anything with pooch's protocol); ``log`` gets one line per mirror tried and one per failure. pooch's own
    logger is silenced while this runs: its lines would repeat ours (and tear a live bar).
    """
    import logging

    import pooch
    import requests

    ck = entry.checkpoint
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / ck.file_name
    errors = []
    pooch_log = pooch.get_logger()
    level = pooch_log.level
    pooch_log.setLevel(logging.WARNING)
    try:
        for i, url in enumerate(ck.urls):
            where = f"mirror {i + 1} of {len(ck.urls)}" if len(ck.urls) > 1 else "one source"
            log(f"downloading {ck.file_name} ({where}): {url}")
            bar = progress(ck.file_name) if progress is not None else False
            try:
                path = pooch.retrieve(url, known_hash=f"sha256:{ck.sha256}", fname=ck.file_name, path=dest_dir,
                                      downloader=pooch.HTTPDownloader(progressbar=bar, timeout=timeout))
                log(f"  got {ck.file_name}: {_mb(Path(path).stat().st_size)}, sha256 verified")
                return Path(path)
            except (ValueError, requests.RequestException, OSError) as e:
                # ValueError: pooch's hash mismatch (the bad file is already deleted)
                errors.append(f"{url}: {_reason(e)}")
                log(f"  failed: {_reason(e)}" + ("; trying the next mirror" if i + 1 < len(ck.urls) else ""))
            finally:
                if bar:
                    bar.close()  # pooch closes it only after a complete transfer
                if target.exists() and not _hash_ok(target, ck.sha256):
                    target.unlink()  # belt and braces: never keep an unverified file under the final name
    finally:
        pooch_log.setLevel(level)
    raise DownloadError(f"could not download {ck.file_name}:\n" + "\n".join(f"  {e}" for e in errors))


def _hash_ok(path: Path, sha256: str) -> bool:
    return store.sha256_of(path) == sha256
