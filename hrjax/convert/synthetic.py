"""Weights stores of the golden fixtures' synthetic weights (golden README 2), for the tests and the device check.

The real checkpoints are not needed to check parity: the goldens were made with numpy-generated weights
(``synth_weights.py`` beside them), so a store converted from those reproduces the reference's numbers. Two
ways in, same store:

- with torch installed, the synthetic state_dict is written as an official-layout checkpoint and goes through
  :func:`hrjax.convert.convert_checkpoint`, file reading included (what the test session does);
- without torch (a bare accelerator machine), the in-memory arrays go straight to the converter's second half,
  :func:`hrjax.convert.checkpoint.store_state_dict` (same strict key check and layout transposes).
"""

from __future__ import annotations

import hashlib
import importlib.util
import tempfile
from pathlib import Path

import numpy as np

from hrjax.convert.checkpoint import convert_checkpoint, store_state_dict, torch_available
from hrjax.weights import catalog

SESSION_MODELS = ("midas_v21", "mergenet")  # what boost needs with the default base


def synth_module(golden: Path):
    """The golden folder's ``synth_weights`` module (numpy only; imported from its file, it is no package)."""
    spec = importlib.util.spec_from_file_location("synth_weights", Path(golden) / "synth_weights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def synth_state_dict(golden: Path, model: str, seed: int = 0, synth=None) -> dict[str, np.ndarray]:
    """``{key: array}`` of ``model``'s synthetic weights from its manifest (golden README 2 and 3)."""
    synth = synth or synth_module(golden)
    return synth.synth_state_dict(synth.load_manifest(Path(golden) / "manifests" / f"{model}.json"), seed=seed)


def converted_store(weights_dir: Path, checkpoints: dict[str, Path]) -> Path:
    """``weights_dir`` holding each ``{model: official-layout checkpoint}``, through hrjax's own converter
    (sha256 not the official one: ``allow_unknown``)."""
    for model, checkpoint in checkpoints.items():
        convert_checkpoint(model, checkpoint, weights_dir, allow_unknown=True)
    return Path(weights_dir)


def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        h.update(key.encode())
        h.update(np.ascontiguousarray(tensors[key]).tobytes())
    return h.hexdigest()


def synthetic_store(golden: Path, weights_dir: Path, models=SESSION_MODELS, *, via_torch: bool | None = None,
                    seed: int = 0) -> Path:
    """``weights_dir`` holding the synthetic weights of ``models`` (default: MiDaS v2.1 and the merge net).

    ``via_torch`` None: through a checkpoint file when torch is installed, else from memory (module docstring).
    Returns ``weights_dir``.
    """
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    synth = synth_module(golden)
    via_torch = torch_available() if via_torch is None else via_torch
    for model in models:
        sd = synth_state_dict(golden, model, seed, synth)
        if via_torch and catalog.get(model).checkpoint.state_dict_entry is None:  # plain layouts only (not LeReS)
            with tempfile.TemporaryDirectory(prefix="hrjax-synth-") as tmp:
                path = Path(tmp) / catalog.get(model).checkpoint.file_name
                synth.save_torch(sd, path)
                converted_store(weights_dir, {model: path})
        else:
            store_state_dict(model, sd, weights_dir, source_name=f"synthetic seed {seed} (golden README 2)",
                             source_sha256=_digest(sd), source_check="allow-unknown",
                             what=f"synthetic {model} weights")
    return weights_dir
