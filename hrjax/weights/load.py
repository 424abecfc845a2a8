"""Load a converted model from the store as (graphdef, state), strictly checked against the model."""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from hrjax.weights import catalog, store
from hrjax.weights.catalog import fix_it_commands
from hrjax.weights.keys import CheckpointMismatch, fill_state, key_table, match_state_dict


def load_model(model: str, weights_dir: Path | None = None) -> tuple[nnx.GraphDef, nnx.State]:
    """Build ``model``, fill it from ``<weights_dir>/<model>`` and split it once into (graphdef, state)."""
    wd = Path(weights_dir) if weights_dir is not None else store.default_weights_dir()
    entry = catalog.get(model)
    try:
        flat, info = store.load_flat(wd, model)
    except store.WeightsError as e:
        raise store.WeightsError(f"{e}\nTo install it:\n{fix_it_commands(model, weights_dir)}") from e
    architecture = info.architecture or {}
    # abstract: building the network with its random initialisation would hold a second copy of the weights
    try:
        net = nnx.eval_shape(lambda: entry.build(**architecture))
    except (TypeError, ValueError) as e:
        raise store.WeightsError(f"{wd / model}: the stored architecture {architecture} does not build a "
                                 f"{model}: {e}") from e
    try:
        matched = match_state_dict(key_table(net), flat, what=f"stored weights {wd / model}", from_torch=False)
    except CheckpointMismatch as e:
        raise store.WeightsError(f"{e}\nConvert the checkpoint again:\n{fix_it_commands(model, weights_dir)}") from e
    graphdef, _ = nnx.split(net)
    return graphdef, fill_state(net, matched)


def state_from_torch_tensors(model: str, tensors) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, state) straight from an in-memory PyTorch-layout state_dict (numpy arrays); for tests/tools."""
    net = nnx.eval_shape(catalog.get(model).build)
    matched = match_state_dict(key_table(net), tensors, what=f"state_dict for {model}", from_torch=True)
    graphdef, _ = nnx.split(net)
    return graphdef, fill_state(net, matched)
