"""Configuration of ``hrjax serve`` (built once by its command line) and of one job (built from a request)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from hrjax.io import DEFAULT_MAX_PIXELS
from hrjax.pointcloud import PlyOptions


@dataclass(frozen=True)
class ServeConfig:
    weights_dir: Path
    host: str = "127.0.0.1"                     # loopback only unless told otherwise: there is no login
    port: int = 7860                            # Gradio's usual port; 0 = any free one
    models: tuple[str, ...] = ("midas_v21",)    # the bases offered: those installed (hrjax.serve.cli)
    max_upload_bytes: int = 64 << 20            # a request body larger than this is refused unread
    max_pixels: int = DEFAULT_MAX_PIXELS        # checked from the header, then after decoding (hrjax.io)
    queue_size: int = 8                         # queued + running jobs; more uploads get 503
    keep_jobs: int = 16                         # finished jobs whose files are kept (oldest dropped first)
    merge_weights_dir: Path | None = None
    device: str | None = None                   # JAX platform (None: JAX's choice)
    cache_dir: Path | None | bool = None        # compilation cache: None default folder, False none
    work_dir: Path | None = None                # where job folders go (None: the system's temp folder)
    ply: PlyOptions = field(default_factory=PlyOptions)
    grouped_impl: str = "auto"                  # grouped-conv formulation (hrjax boost --grouped-conv)


@dataclass(frozen=True)
class JobOptions:
    """The choices of one upload; checked against what the server offers by :func:`job_options`."""

    model: str = "midas_v21"
    mode: str = "final"
    max_res: float | None = None
    precision: str = "float32"


def job_options(query: dict[str, str], config: ServeConfig) -> JobOptions:
    """A request's query parameters -> JobOptions; ValueError naming the bad one."""
    from hrjax.models.precision import PRECISIONS
    from hrjax.pipeline.config import MODES

    model = query.get("model", config.models[0])
    mode = query.get("mode", MODES[0])
    precision = query.get("precision", PRECISIONS[0])
    if model not in config.models:
        raise ValueError(f"model must be one of {', '.join(config.models)} (installed), got {model!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    raw = query.get("max_res", "").strip()
    max_res = None
    if raw:
        try:
            max_res = float(raw)
        except ValueError:
            raise ValueError(f"max_res must be a number, got {raw!r}") from None
        if not (max_res > 0 and math.isfinite(max_res)):
            raise ValueError(f"max_res must be positive, got {raw!r}")
    return JobOptions(model, mode, max_res, precision)
