"""The persistent JAX compilation cache, on by default so a second run does not recompile."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE_DIR = "HRJAX_CACHE_DIR"


def cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hrjax" / "jax-compilation-cache"


def enable(path: Path | None = None) -> Path:
    """Point JAX's persistent cache at ``path`` (default: ``cache_dir()``); caches every compilation."""
    import jax

    path = Path(path) if path is not None else cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
