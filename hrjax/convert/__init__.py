"""PyTorch -> hrjax checkpoint converters.

Each official checkpoint is a PyTorch state_dict (plain, or wrapped as the catalogue says: LeReS keeps it
under ``checkpoint["depth_model"]``). The key table of every model is derived from its
hrjax module tree (``hrjax.weights.keys.key_table``), whose attribute paths mirror the PyTorch ones, so
conversion is: read tensors, check the table strictly, transpose layouts, store.
"""

from hrjax.convert.checkpoint import (UnknownCheckpoint, convert_checkpoint, read_torch_state_dict,
                                      unwrap_state_dict)
from hrjax.convert.install import download_and_convert
from hrjax.weights.store import sha256_of

__all__ = ["UnknownCheckpoint", "convert_checkpoint", "download_and_convert", "read_torch_state_dict", "sha256_of",
           "unwrap_state_dict"]
