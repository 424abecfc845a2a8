"""Download an official checkpoint (hash-checked, mirror fall-backs) and convert it into the store.

pooch does the HTTP work: it streams into a temporary file beside the destination, checks the sha256 and only
then renames it into place, so a failed, truncated or wrong download never leaves a file that looks complete.
"""

from __future__ import annotations

import shutil
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


def fetch(entry: catalog.ModelEntry, dest_dir: Path, *, progressbar=False,
          log: Callable[[str], None] = lambda _: None, timeout: float = 30.0) -> Path:
    """Download ``entry``'s checkpoint into ``dest_dir`` trying each URL in turn; returns the verified file."""
    import pooch
    import requests

    ck = entry.checkpoint
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / ck.file_name
    errors = []
    for url in ck.urls:
        log(f"downloading {ck.file_name} from {url}")
        try:
            path = pooch.retrieve(url, known_hash=f"sha256:{ck.sha256}", fname=ck.file_name, path=dest_dir,
                                  downloader=pooch.HTTPDownloader(progressbar=progressbar, timeout=timeout))
            return Path(path)
        except ValueError as e:  # pooch: hash mismatch (the bad file is already deleted)
            errors.append(f"{url}: wrong sha256 ({str(e).splitlines()[0]})")
        except (requests.RequestException, OSError) as e:
            errors.append(f"{url}: {type(e).__name__}: {e}")
        finally:
            if target.exists() and not _hash_ok(target, ck.sha256):
                target.unlink()  # belt and braces: never keep an unverified file under the final name
    raise DownloadError(f"could not download {ck.file_name}:\n" + "\n".join(f"  {e}" for e in errors))


def _hash_ok(path: Path, sha256: str) -> bool:
    from convert.checkpoint import sha256_of
    return sha256_of(path) == sha256


def download_and_convert(model: str, weights_dir: Path, *, keep_source: bool = False, progressbar=False,
                         log: Callable[[str], None] = lambda _: None,
                         entry: catalog.ModelEntry | None = None) -> Path:
    """Fetch, verify and convert ``model`` into ``weights_dir``; returns the converted model's folder."""
    from convert.checkpoint import convert_checkpoint

    entry = entry or catalog.get(model)
    downloads = Path(weights_dir) / DOWNLOADS
    try:
        source = fetch(entry, downloads, progressbar=progressbar, log=log)
    except DownloadError as e:
        raise DownloadError(f"{e}\n{manual_instructions(entry, weights_dir)}") from None
    log(f"converting {source.name}")
    out = convert_checkpoint(model, source, weights_dir, expected_sha256=entry.checkpoint.sha256)
    if not keep_source:
        source.unlink()
        if downloads.is_dir() and not any(downloads.iterdir()):
            shutil.rmtree(downloads, ignore_errors=True)
    return out
