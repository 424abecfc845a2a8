"""The models hrjax knows: how to build each one and where its official checkpoint comes from (SPEC 12).

Imports neither jax nor flax (the models are named by string and imported by :meth:`ModelEntry.build`), so the
command line can check the weights and print the fix-it commands before anything heavy is loaded.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type hint only
    from flax import nnx


@dataclass(frozen=True)
class OfficialCheckpoint:
    file_name: str                 # the name hrjax downloads to
    aliases: tuple[str, ...]       # other names of the very same file
    sha256: str
    size: int | None               # bytes, where known
    urls: tuple[str, ...]          # official first, then mirrors
    licence: str


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: str                   # "module:callable" returning an un-loaded nnx.Module
    checkpoint: OfficialCheckpoint
    description: str

    def build(self) -> nnx.Module:
        module, attr = self.builder.split(":")
        return getattr(importlib.import_module(module), attr)()


MODELS: dict[str, ModelEntry] = {
    "midas_v21": ModelEntry(
        name="midas_v21",
        builder="hrjax.models.midas_v21:MidasNet",
        description="MiDaS v2.1 large (ResNeXt-101 32x8d WSL encoder), the base depth network",
        checkpoint=OfficialCheckpoint(
            file_name="midas_v21-f6b98070.pt",
            aliases=("midas_v21_384.pt", "model-f6b98070.pt", "model.pt"),
            sha256="f6b980704cfd7259c7cc2b058c2f160159c55e84b3b6c08331b4156a84629f70",
            size=422_509_849,
            urls=(
                "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21_384.pt",
                "https://github.com/isl-org/MiDaS/releases/download/v2_1/midas_v21-f6b98070.pt",
                "https://github.com/intel-isl/MiDaS/releases/download/v2_1/model-f6b98070.pt",
                "https://github.com/AlexeyAB/MiDaS/releases/download/midas_dpt/midas_v21-f6b98070.pt",
            ),
            licence="MIT",
        ),
    ),
    "mergenet": ModelEntry(
        name="mergenet",
        builder="hrjax.models.mergenet:UnetGenerator",
        description="pix2pix U-Net 'unet_1024' merge network of Boosting Monocular Depth",
        checkpoint=OfficialCheckpoint(
            file_name="latest_net_G.pth",
            aliases=(),
            sha256="50ec735d74ed6499562d898f41b49343e521808b8dae589aa3c2f5c9ac9f7462",
            size=None,
            urls=(
                "https://sfu.ca/~yagiz/CVPR21/latest_net_G.pth",
                "https://huggingface.co/lllyasviel/Annotators/resolve/9a7d84251d487d11/latest_net_G.pth",
            ),
            licence="research only (no commercial use), per the Boosting Monocular Depth authors",
        ),
    ),
}


def fix_it_commands(model: str, weights_dir: Path | None = None) -> str:
    """The commands that install ``model`` into ``weights_dir`` (None: the default folder), for error messages."""
    file_name = get(model).checkpoint.file_name
    wd = f" --weights-dir {weights_dir}" if weights_dir is not None else ""
    return (f"  hrjax weights download --model {model}{wd}\n"
            f"or, with a manually downloaded {file_name}:\n"
            f"  hrjax weights convert --model {model} --source PATH/TO/{file_name}{wd}")


def get(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model '{name}'; known: {', '.join(MODELS)}") from None
