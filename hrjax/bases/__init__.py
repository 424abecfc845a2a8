"""The base depth networks the pipeline can boost, by catalogue name (see :mod:`hrjax.bases.base`).

A new base is one module here holding its :class:`BaseNetwork` value and one line in :data:`BASES`; the value is
imported only when the base is asked for (its model module stays unimported otherwise).
"""

from __future__ import annotations

import importlib

from hrjax.bases.base import BaseNetwork, Normalisation

# name -> "module:attribute" of its BaseNetwork
BASES: dict[str, str] = {
    "midas_v21": "hrjax.bases.midas:MIDAS_V21",
    "leres_res101": "hrjax.bases.leres:LERES_RES101",
    "dav2_vits": "hrjax.bases.dav2:DAV2_VITS",
    "dav2_vitb": "hrjax.bases.dav2:DAV2_VITB",
    "dav2_vitl": "hrjax.bases.dav2:DAV2_VITL",
}
DEFAULT_BASE = "midas_v21"

__all__ = ["BASES", "DEFAULT_BASE", "BaseNetwork", "Normalisation", "get_base"]


def get_base(name: str) -> BaseNetwork:
    """The :class:`BaseNetwork` registered as ``name``; a ValueError naming the known ones otherwise."""
    if name not in BASES:
        raise ValueError(f"unknown base network {name!r}; known: {', '.join(BASES)}")
    module, attr = BASES[name].split(":")
    base = getattr(importlib.import_module(module), attr)
    assert base.name == name, (name, base.name)
    return base
