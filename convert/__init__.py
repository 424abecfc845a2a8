"""PyTorch -> hrjax checkpoint converters, as named at the checkout's top level: a re-export of
:mod:`hrjax.convert` (where the code lives, so that the installed wheel holds the ``hrjax`` package only).
Not installed."""

from hrjax.convert import (UnknownCheckpoint, convert_checkpoint, download_and_convert, read_torch_state_dict,
                           sha256_of, unwrap_state_dict)

__all__ = ["UnknownCheckpoint", "convert_checkpoint", "download_and_convert", "read_torch_state_dict", "sha256_of",
           "unwrap_state_dict"]
