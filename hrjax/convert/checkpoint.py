"""Read an official PyTorch checkpoint safely and convert it into the hrjax weights store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrjax.weights import catalog, store
from hrjax.weights.keys import key_table, match_state_dict
from hrjax.weights.store import sha256_of


# hrjax is installed from its checkout (no package index), so the fix is the extra of the editable install.
TORCH_HINT = ('reading the official PyTorch checkpoints needs torch (the "convert" extra); in the hrjax '
              'checkout run:  pip install -e ".[convert]"')


class TorchMissing(RuntimeError):
    """torch is not installed: checkpoints cannot be read (TORCH_HINT says how to fix it)."""


def torch_available() -> bool:
    import importlib.util
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or blocked torch entry in sys.modules
        return False


def require_torch():
    """The torch module, or :class:`TorchMissing` naming the install command."""
    try:
        import torch
    except ImportError as e:
        raise TorchMissing(TORCH_HINT) from e
    return torch


def read_torch_state_dict(path: Path, *, state_dict_entry: str | None = None,
                          optional_prefix: str | None = None) -> dict[str, np.ndarray]:
    """Tensors of a PyTorch checkpoint as numpy arrays.

    ``torch.load(weights_only=True)`` never unpickles arbitrary objects. Where the state_dict sits in the file
    is :func:`unwrap_state_dict`'s business (``state_dict_entry``, ``optional_prefix``: the catalogue's).
    """
    torch = require_torch()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {type(e).__name__}: {e}") from e
    obj = unwrap_state_dict(obj, str(path), state_dict_entry=state_dict_entry, optional_prefix=optional_prefix)
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry '{key}' is a {type(value).__name__}, not a tensor")
        out[key] = value.detach().cpu().numpy()
    return out


def unwrap_state_dict(obj, what: str, *, state_dict_entry: str | None = None,
                      optional_prefix: str | None = None) -> dict:
    """The state_dict inside a loaded checkpoint object (values untouched: tensors or arrays).

    - ``state_dict_entry`` None: ``obj`` is the state_dict, or a ``{"model": ..., "optimizer": ...}`` wrapper,
      unwrapped like MidasNet.load does (SPEC 6.1). Else ``obj[state_dict_entry]`` (LeReS:
      ``checkpoint["depth_model"]``, SPEC 7); a file without that entry is refused by name.
    - ``optional_prefix``: removed when every key carries it (the official ``strip_prefix_if_present``); a
      state_dict where only some keys carry it is returned as is, so the strict key check names them.
    """
    if state_dict_entry is not None:
        if not isinstance(obj, dict) or state_dict_entry not in obj:
            found = ", ".join(repr(k) for k in list(obj)[:8]) if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"{what} has no '{state_dict_entry}' entry, where the official checkpoint keeps the "
                             f"network's state_dict (found: {found})")
        obj = obj[state_dict_entry]
    elif isinstance(obj, dict) and "optimizer" in obj and "model" in obj:
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise ValueError(f"{what} does not hold a state_dict (a mapping of names to tensors)")
    if optional_prefix and obj and all(k.startswith(optional_prefix) for k in obj):
        obj = {k[len(optional_prefix):]: v for k, v in obj.items()}
    return dict(obj)


class UnknownCheckpoint(ValueError):
    """The source file's sha256 is not the catalogue's: a wrong, corrupt or modified file (or a fine-tuned
    checkpoint, converted only with ``allow_unknown``)."""


def convert_checkpoint(model: str, source: Path, weights_dir: Path | None = None, *, allow_unknown: bool = False,
                       expected_sha256: str | None = None) -> Path:
    """Convert ``source`` (an official checkpoint of ``model``) into ``<weights_dir>/<model>``; returns that dir.

    The source's sha256 must be the catalogue's (SPEC 12; ``expected_sha256`` overrides it) before anything is
    read: a mismatch raises :class:`UnknownCheckpoint` unless ``allow_unknown``. hrjax.json records which
    (``source_check``: "official" or "allow-unknown")."""
    entry = catalog.get(model)
    source = Path(source)
    require_torch()  # first: without torch nothing can be converted, whatever the file (its fix comes first)
    if not source.is_file():
        raise FileNotFoundError(f"checkpoint not found: {source}")
    digest = sha256_of(source)
    expected = expected_sha256 or entry.checkpoint.sha256
    if digest != expected and not allow_unknown:
        raise UnknownCheckpoint(
            f"{source} has sha256 {digest}, not that of the official {model} checkpoint "
            f"{entry.checkpoint.file_name} ({expected}): a wrong, incomplete or modified file. Download it again "
            f"(hrjax weights download --model {model}), or, for a fine-tuned checkpoint of the same architecture, "
            f"convert it with --allow-unknown")
    tensors = read_torch_state_dict(source, state_dict_entry=entry.checkpoint.state_dict_entry,
                                    optional_prefix=entry.checkpoint.optional_prefix)
    return store_state_dict(model, tensors, weights_dir, source_name=source.name, source_sha256=digest,
                            source_check="official" if digest == expected else "allow-unknown",
                            what=f"checkpoint {source}")


def store_state_dict(model: str, tensors: dict[str, np.ndarray], weights_dir: Path | None = None, *,
                     source_name: str, source_sha256: str, source_check: str, what: str | None = None) -> Path:
    """The converter's second half: a PyTorch-layout state_dict (numpy arrays, keys as the official module
    names them) checked strictly against ``model``'s key table, transposed and stored; returns the model's
    store dir. :func:`convert_checkpoint` feeds it a checkpoint file's tensors; the synthetic weights
    (:mod:`hrjax.convert.synthetic`) feed it in-memory arrays when torch is not installed."""
    entry = catalog.get(model)
    matched = match_state_dict(key_table(entry.build()), tensors, what=what or f"{model} state_dict",
                               from_torch=True)
    info = store.WeightsInfo(
        model=model, source_name=source_name, source_sha256=source_sha256,
        converter_version=store.CONVERTER_VERSION, n_tensors=len(matched),
        n_values=int(sum(v.size for v in matched.values())), created=store.now_iso(), source_check=source_check)
    return store.save(weights_dir if weights_dir is not None else store.default_weights_dir(), info, matched)
