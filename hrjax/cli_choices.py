"""The command line's choice types, one per option with a fixed set of values (jax-free), shared by the commands
that offer the option (``hrjax boost``, ``predict``, ``merge``, ``serve``)."""

from __future__ import annotations

from enum import Enum

from hrjax.bases import BASES
from hrjax.models.precision import GROUPED_IMPLS, PRECISIONS
from hrjax.pipeline.config import MODES, OUTPUT_RESOLUTIONS


def choices(name: str, values) -> type[Enum]:
    """A Typer choice type whose values are the library's own tuple (one definition of each option's values)."""
    return Enum(name, {v: v for v in values}, type=str)


Mode = choices("Mode", MODES)
OutputResolution = choices("OutputResolution", OUTPUT_RESOLUTIONS)
BaseModel = choices("BaseModel", tuple(BASES))
Platform = choices("Platform", ("cpu", "gpu", "tpu"))
Precision = choices("Precision", PRECISIONS)
GroupedConv = choices("GroupedConv", GROUPED_IMPLS)
