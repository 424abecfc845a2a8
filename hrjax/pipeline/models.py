"""The two networks of the method, split once into (graphdef, state) and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flax import nnx

from hrjax.weights.load import load_model


@dataclass(frozen=True, eq=False)
class Models:
    midas_graphdef: nnx.GraphDef
    midas_state: nnx.State
    merge_graphdef: nnx.GraphDef
    merge_state: nnx.State


def load_models(weights_dir: Path | None = None, *, base_model: str = "midas_v21",
                merge_model: str = "mergenet") -> Models:
    """Load the base depth network and the merge network from the converted-weights store."""
    mg, ms = load_model(base_model, weights_dir)
    gg, gs = load_model(merge_model, weights_dir)
    return Models(mg, ms, gg, gs)
