"""``hrjax weights download``: fetch an official checkpoint (:mod:`hrjax.weights.download`) and convert it
(:mod:`hrjax.convert.checkpoint`). Lives here, above both, so that the weights layer never imports the
converters."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from hrjax.convert.checkpoint import TORCH_HINT, TorchMissing, convert_checkpoint, torch_available
from hrjax.weights import catalog
from hrjax.weights.download import DOWNLOADS, DownloadError, fetch, manual_instructions


def download_and_convert(model: str, weights_dir: Path, *, keep_source: bool = False,
                         progress: Callable[[str], object] | None = None,
                         log: Callable[[str], None] = lambda _: None,
                         entry: catalog.ModelEntry | None = None) -> Path:
    """Fetch, verify and convert ``model`` into ``weights_dir``.

    Args:
      model: a catalogue name (:data:`hrjax.weights.catalog.MODELS`).
      weights_dir: the converted-weights store to install into.
      keep_source: keep the downloaded PyTorch file (default: deleted after conversion).
      progress: ``progress(what)`` returns a pooch progress bar for one download.
      log: receives one line per step.
      entry: the catalogue entry to use instead of ``model``'s (tests point it at a local server).

    Returns:
      The converted model's folder.

    Raises :class:`hrjax.convert.checkpoint.TorchMissing` before downloading anything when torch (needed to
    read the checkpoint) is not installed: the files are hundreds of MB."""
    if not torch_available():
        raise TorchMissing(TORCH_HINT)
    entry = entry or catalog.get(model)
    downloads = Path(weights_dir) / DOWNLOADS
    try:
        source = fetch(entry, downloads, progress=progress, log=log)
    except DownloadError as e:
        raise DownloadError(f"{e}\n{manual_instructions(entry, weights_dir)}") from None
    log(f"converting {source.name}")
    out = convert_checkpoint(model, source, weights_dir, expected_sha256=entry.checkpoint.sha256)
    if not keep_source:
        source.unlink()
        if downloads.is_dir() and not any(downloads.iterdir()):
            shutil.rmtree(downloads, ignore_errors=True)
    return out
